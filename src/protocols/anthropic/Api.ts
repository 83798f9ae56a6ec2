import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { Authorization } from "../../http/auth.js"
import { CountTokensRequest, MessageResponse, MessagesRequest, TokenCount } from "./Schema.js"

/**
 * The Anthropic dialect's endpoints (handlers in Http.ts). `GET /v1/models` is shared with the
 * OpenAI group and answers in Anthropic's shape when the request carries `anthropic-version`.
 */
export class AnthropicApi extends HttpApiGroup.make("anthropic")
  .add(
    HttpApiEndpoint.post("messages", "/v1/messages")
      .setPayload(MessagesRequest)
      .addSuccess(MessageResponse)
      .addSuccess(
        Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/event-stream" }))
      )
  )
  .add(
    HttpApiEndpoint.post("countTokens", "/v1/messages/count_tokens")
      .setPayload(CountTokensRequest)
      .addSuccess(TokenCount)
  )
  .middleware(Authorization)
{}
