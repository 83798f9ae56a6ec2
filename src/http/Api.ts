import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { ConversationsApi } from "../protocols/conversations/Api.js"
import { OpenAIApi } from "../protocols/openai/Api.js"
import { completeOpenApi } from "./openapi.js"

export const Health = Schema.Struct({
  status: Schema.Literal("ok", "degraded"),
  cli: Schema.Struct({
    command: Schema.String,
    version: Schema.NullOr(Schema.String),
    error: Schema.NullOr(Schema.String)
  }),
  sessions: Schema.Struct({ running: Schema.Number, queued: Schema.Number, limit: Schema.Number }),
  pool: Schema.Struct({
    enabled: Schema.Boolean,
    processes: Schema.Number,
    leased: Schema.Number,
    hits: Schema.Number,
    misses: Schema.Number,
    spawned: Schema.Number,
    signatures: Schema.Array(Schema.Struct({
      model: Schema.String,
      systemPrompt: Schema.Boolean,
      standby: Schema.Number,
      spawning: Schema.Number
    }))
  }),
  /** Turns waiting for the client's tool results. */
  tools: Schema.Struct({ parked: Schema.Number }),
  /** Conversations whose CLI is kept running between turns. */
  conversations: Schema.Struct({ live: Schema.Number })
})

export class SystemApi extends HttpApiGroup.make("system")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(Health))
{}

/** Every endpoint the gateway serves, one group per dialect. */
export class GatewayApi extends HttpApi.make("claude-code-api")
  .add(SystemApi)
  .add(OpenAIApi)
  .add(ConversationsApi)
  .annotate(OpenApi.Title, "claude-code-api")
  .annotate(OpenApi.Version, "0.1.0")
  .annotate(OpenApi.Description, "OpenAI-compatible gateway in front of the Claude Code CLI")
  .annotate(OpenApi.Transform, completeOpenApi)
{}
