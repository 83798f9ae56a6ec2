import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { AnthropicApi } from "../protocols/anthropic/Api.js"
import { ConversationsApi } from "../protocols/conversations/Api.js"
import { OpenAIApi } from "../protocols/openai/Api.js"
import { ResponsesApi } from "../protocols/responses/Api.js"
import { SessionsApi } from "../protocols/sessions/Api.js"
import { completeOpenApi } from "./openapi.js"

export const Health = Schema.Struct({
  status: Schema.Literal("ok", "degraded"),
  cli: Schema.Struct({
    command: Schema.String,
    version: Schema.NullOr(Schema.String),
    error: Schema.NullOr(Schema.String),
    /** Whether the CLI can authenticate upstream (checked without a model call); null until it answered. */
    auth: Schema.NullOr(Schema.Struct({ logged_in: Schema.Boolean, method: Schema.String }))
  }),
  sessions: Schema.Struct({ running: Schema.Number, queued: Schema.Number, limit: Schema.Number }),
  pool: Schema.Struct({
    enabled: Schema.Boolean,
    processes: Schema.Number,
    leased: Schema.Number,
    hits: Schema.Number,
    misses: Schema.Number,
    spawned: Schema.Number,
    /** Processes reset to serve another conversation; resets that failed (process killed); processes retired. */
    reused: Schema.Number,
    resetFailed: Schema.Number,
    retired: Schema.Number,
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
  .add(AnthropicApi)
  .add(ResponsesApi)
  .add(SessionsApi)
  .annotate(OpenApi.Title, "claude-code-api")
  .annotate(OpenApi.Version, "0.1.0")
  .annotate(OpenApi.Description, "OpenAI-compatible gateway in front of the Claude Code CLI")
  .annotate(OpenApi.Transform, completeOpenApi)
{}
