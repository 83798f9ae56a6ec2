import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { Authorization } from "../../http/auth.js"
import { InputItemList, ResponseDeleted, ResponseObjectSchema, ResponsesRequest } from "./Schema.js"

/** The OpenAI Responses dialect's endpoints (handlers in Http.ts; the request body is decoded there). */

const IdPath = Schema.Struct({ id: Schema.String })

export class ResponsesApi extends HttpApiGroup.make("responses")
  .add(
    HttpApiEndpoint.post("createResponse", "/v1/responses")
      // Documents the body (handleRaw decodes it in Http.ts, so that errors name the Responses field).
      .setPayload(ResponsesRequest)
      .addSuccess(ResponseObjectSchema)
      .addSuccess(Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/event-stream" })))
  )
  .add(HttpApiEndpoint.get("retrieveResponse", "/v1/responses/:id").setPath(IdPath).addSuccess(ResponseObjectSchema))
  .add(HttpApiEndpoint.del("deleteResponse", "/v1/responses/:id").setPath(IdPath).addSuccess(ResponseDeleted))
  .add(
    HttpApiEndpoint.get("listInputItems", "/v1/responses/:id/input_items")
      .setPath(IdPath)
      .setUrlParams(Schema.Struct({
        limit: Schema.optional(Schema.String),
        after: Schema.optional(Schema.String),
        order: Schema.optional(Schema.String)
      }))
      .addSuccess(InputItemList)
  )
  .middleware(Authorization)
{}
