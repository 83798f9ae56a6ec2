import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { Authorization } from "../../http/auth.js"
import { ChatCompletion, ChatRequest, Model, ModelList } from "./Schema.js"

/** The OpenAI dialect's endpoints (shared with typed clients; handlers live in Http.ts). */
export class OpenAIApi extends HttpApiGroup.make("openai")
  .add(HttpApiEndpoint.get("listModels", "/v1/models").addSuccess(ModelList))
  .add(
    HttpApiEndpoint.get("retrieveModel", "/v1/models/:id")
      .setPath(Schema.Struct({ id: Schema.String }))
      .addSuccess(Model)
  )
  .add(
    HttpApiEndpoint.post("chatCompletions", "/v1/chat/completions")
      .setPayload(ChatRequest)
      .addSuccess(ChatCompletion)
      .addSuccess(
        Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/event-stream" }))
      )
  )
  .middleware(Authorization)
{}
