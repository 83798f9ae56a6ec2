import { Schema } from "effect"

/**
 * Anthropic Messages wire shapes (@anthropic-ai/sdk 1.15 types, reference §2.4). Requests are
 * decoded in steps (envelope, each message, each content block) so that errors name the exact field.
 */

const Int = Schema.Number.pipe(Schema.int())

export const MessagesRequest = Schema.Struct({
  model: Schema.String.pipe(Schema.minLength(1)),
  max_tokens: Int.pipe(Schema.greaterThanOrEqualTo(1)),
  messages: Schema.Array(Schema.Unknown).pipe(Schema.minItems(1)),
  system: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.Unknown))),
  stop_sequences: Schema.optional(Schema.Array(Schema.String.pipe(Schema.minLength(1)))),
  stream: Schema.optional(Schema.Boolean),
  metadata: Schema.optional(Schema.Struct({ user_id: Schema.optional(Schema.NullOr(Schema.String)) })),
  tools: Schema.optional(Schema.Array(Schema.Unknown)),
  tool_choice: Schema.optional(Schema.Unknown),
  thinking: Schema.optional(Schema.Unknown),
  output_config: Schema.optional(Schema.Struct({
    effort: Schema.optional(Schema.NullOr(Schema.String)),
    format: Schema.optional(Schema.NullOr(Schema.Struct({
      type: Schema.Literal("json_schema"),
      schema: Schema.Record({ key: Schema.String, value: Schema.Unknown })
    })))
  })),
  // Sampling knobs: accepted, not applied (the CLI has no such flags).
  temperature: Schema.optional(Schema.Number),
  top_p: Schema.optional(Schema.Number),
  top_k: Schema.optional(Schema.Number),
  // Routing and billing fields of Anthropic's own platform: accepted, meaningless here.
  service_tier: Schema.optional(Schema.String),
  container: Schema.optional(Schema.NullOr(Schema.Unknown)),
  inference_geo: Schema.optional(Schema.NullOr(Schema.String))
})
export type MessagesRequest = typeof MessagesRequest.Type

/** count_tokens takes the same request without the answer's knobs. */
export const CountTokensRequest = Schema.Struct({
  model: MessagesRequest.fields.model,
  messages: MessagesRequest.fields.messages,
  system: MessagesRequest.fields.system,
  tools: MessagesRequest.fields.tools,
  tool_choice: MessagesRequest.fields.tool_choice,
  thinking: MessagesRequest.fields.thinking
})
export type CountTokensRequest = typeof CountTokensRequest.Type

export const Role = Schema.Literal("user", "assistant", "system")
export const Message = Schema.Struct({
  role: Role,
  content: Schema.Union(Schema.String, Schema.Array(Schema.Unknown))
})

export const TextBlock = Schema.Struct({ type: Schema.Literal("text"), text: Schema.String })
export const ImageBlock = Schema.Struct({
  type: Schema.Literal("image"),
  source: Schema.Union(
    Schema.Struct({ type: Schema.Literal("base64"), media_type: Schema.String, data: Schema.String }),
    Schema.Struct({ type: Schema.Literal("url"), url: Schema.String })
  )
})
export const ToolUseBlock = Schema.Struct({
  type: Schema.Literal("tool_use"),
  id: Schema.String.pipe(Schema.minLength(1)),
  name: Schema.String,
  input: Schema.Unknown
})
export const ToolResultBlock = Schema.Struct({
  type: Schema.Literal("tool_result"),
  tool_use_id: Schema.String.pipe(Schema.minLength(1)),
  content: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.Unknown))),
  is_error: Schema.optional(Schema.Boolean)
})

/** A client tool (`type` absent or "custom"); Anthropic's server tools have other types. */
export const CustomTool = Schema.Struct({
  type: Schema.optional(Schema.Literal("custom")),
  name: Schema.String,
  description: Schema.optional(Schema.String),
  input_schema: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})

export const ToolChoice = Schema.Union(
  Schema.Struct({ type: Schema.Literal("auto", "any", "none"), disable_parallel_tool_use: Schema.optional(Schema.Boolean) }),
  Schema.Struct({ type: Schema.Literal("tool"), name: Schema.String, disable_parallel_tool_use: Schema.optional(Schema.Boolean) })
)

export const Thinking = Schema.Union(
  Schema.Struct({ type: Schema.Literal("enabled"), budget_tokens: Int.pipe(Schema.greaterThanOrEqualTo(1)) }),
  Schema.Struct({ type: Schema.Literal("disabled", "adaptive") })
)

// ---------------------------------------------------------------------------------------------
// Responses

export const Usage = Schema.Struct({
  input_tokens: Schema.Number,
  output_tokens: Schema.Number,
  cache_creation_input_tokens: Schema.Number,
  cache_read_input_tokens: Schema.Number
})
export type Usage = typeof Usage.Type

export const ContentBlock = Schema.Union(
  Schema.Struct({ type: Schema.Literal("text"), text: Schema.String }),
  Schema.Struct({ type: Schema.Literal("thinking"), thinking: Schema.String, signature: Schema.String }),
  Schema.Struct({
    type: Schema.Literal("tool_use"),
    id: Schema.String,
    name: Schema.String,
    input: Schema.Unknown
  })
)
export type ContentBlock = typeof ContentBlock.Type

export const StopReason = Schema.Literal("end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal")
export type StopReason = typeof StopReason.Type

export const MessageResponse = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("message"),
  role: Schema.Literal("assistant"),
  model: Schema.String,
  content: Schema.Array(ContentBlock),
  stop_reason: Schema.NullOr(StopReason),
  stop_sequence: Schema.NullOr(Schema.String),
  usage: Usage
})
export type MessageResponse = typeof MessageResponse.Type

export const TokenCount = Schema.Struct({ input_tokens: Schema.Number })

export const ModelInfo = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("model"),
  display_name: Schema.String,
  created_at: Schema.String
})
export type ModelInfo = typeof ModelInfo.Type

export const ModelInfoList = Schema.Struct({
  data: Schema.Array(ModelInfo),
  has_more: Schema.Boolean,
  first_id: Schema.NullOr(Schema.String),
  last_id: Schema.NullOr(Schema.String)
})
export type ModelInfoList = typeof ModelInfoList.Type
