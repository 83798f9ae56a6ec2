import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { OpenAIApi } from "../openai/Api.js"

export const Health = Schema.Struct({
  status: Schema.Literal("ok", "degraded"),
  cli: Schema.Struct({
    command: Schema.String,
    version: Schema.NullOr(Schema.String),
    error: Schema.NullOr(Schema.String)
  })
})

export class SystemApi extends HttpApiGroup.make("system")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(Health))
{}

/** Every endpoint the gateway serves, one group per dialect. */
export class GatewayApi extends HttpApi.make("claude-code-api")
  .add(SystemApi)
  .add(OpenAIApi)
  .annotate(OpenApi.Title, "claude-code-api")
  .annotate(OpenApi.Description, "OpenAI-compatible gateway in front of the Claude Code CLI")
{}
