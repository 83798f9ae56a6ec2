import { Schema } from "effect"

/**
 * OpenAI wire shapes (openai-node 6.49 types / openai-openapi). Requests are decoded in two steps
 * (envelope, then each message by role) so that errors can name the exact field.
 */

const Opt = <A, I>(schema: Schema.Schema<A, I>) => Schema.optional(Schema.NullOr(schema))

export const ChatRequest = Schema.Struct({
  model: Schema.String.pipe(Schema.minLength(1)),
  messages: Schema.Array(Schema.Unknown).pipe(Schema.minItems(1)),
  stream: Opt(Schema.Boolean),
  stream_options: Opt(Schema.Struct({ include_usage: Opt(Schema.Boolean), include_obfuscation: Opt(Schema.Boolean) })),
  // Sampling knobs clients send by default: accepted, not applied (the CLI has no such flags).
  temperature: Opt(Schema.Number),
  top_p: Opt(Schema.Number),
  presence_penalty: Opt(Schema.Number),
  frequency_penalty: Opt(Schema.Number),
  seed: Opt(Schema.Number),
  logit_bias: Opt(Schema.Record({ key: Schema.String, value: Schema.Number })),
  user: Opt(Schema.String),
  metadata: Opt(Schema.Record({ key: Schema.String, value: Schema.String })),
  store: Opt(Schema.Boolean),
  service_tier: Opt(Schema.String),
  safety_identifier: Opt(Schema.String),
  prompt_cache_key: Opt(Schema.String),
  // Fields whose meaning the gateway cannot honour yet are checked in translate.ts.
  n: Opt(Schema.Number),
  logprobs: Opt(Schema.Boolean),
  top_logprobs: Opt(Schema.Number),
  max_tokens: Opt(Schema.Number),
  max_completion_tokens: Opt(Schema.Number),
  stop: Opt(Schema.Union(Schema.String, Schema.Array(Schema.String))),
  tools: Opt(Schema.Array(Schema.Unknown)),
  tool_choice: Opt(Schema.Unknown),
  parallel_tool_calls: Opt(Schema.Boolean),
  functions: Opt(Schema.Array(Schema.Unknown)),
  function_call: Opt(Schema.Unknown),
  response_format: Opt(Schema.Struct({
    type: Schema.String,
    json_schema: Schema.optional(Schema.Struct({
      name: Schema.optional(Schema.String),
      description: Schema.optional(Schema.String),
      schema: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
      strict: Opt(Schema.Boolean)
    }))
  })),
  reasoning_effort: Opt(Schema.String),
  modalities: Opt(Schema.Array(Schema.String)),
  audio: Opt(Schema.Unknown),
  prediction: Opt(Schema.Unknown),
  web_search_options: Opt(Schema.Unknown),
  verbosity: Opt(Schema.String),
  /** Extension: the conversation to continue (also the `x-conversation-id` header). */
  conversation_id: Opt(Schema.String)
})
export type ChatRequest = typeof ChatRequest.Type

const TextPart = Schema.Struct({ type: Schema.Literal("text"), text: Schema.String })
const ImagePart = Schema.Struct({
  type: Schema.Literal("image_url"),
  image_url: Schema.Struct({ url: Schema.String, detail: Opt(Schema.String) })
})
export const UserPart = Schema.Union(TextPart, ImagePart)
export type UserPart = typeof UserPart.Type

const TextOrParts = Schema.Union(Schema.String, Schema.Array(TextPart))

export const SystemMessage = Schema.Struct({
  role: Schema.Literal("system", "developer"),
  content: TextOrParts,
  name: Opt(Schema.String)
})
export const UserMessage = Schema.Struct({
  role: Schema.Literal("user"),
  content: Schema.Union(Schema.String, Schema.Array(Schema.Unknown)),
  name: Opt(Schema.String)
})
export const AssistantMessage = Schema.Struct({
  role: Schema.Literal("assistant"),
  // Clients send back the gateway's own message, nulls included (the Agents SDK: `refusal: null` in a text part).
  content: Opt(Schema.Union(Schema.String, Schema.Array(Schema.Struct({ type: Schema.String, text: Opt(Schema.String), refusal: Opt(Schema.String) })))),
  tool_calls: Opt(Schema.Array(Schema.Unknown)),
  refusal: Opt(Schema.String),
  name: Opt(Schema.String)
})
export const AssistantToolCall = Schema.Struct({
  id: Schema.String.pipe(Schema.minLength(1)),
  type: Schema.Literal("function"),
  function: Schema.Struct({ name: Schema.String, arguments: Schema.String })
})
export const ToolMessage = Schema.Struct({
  role: Schema.Literal("tool"),
  tool_call_id: Schema.String,
  content: TextOrParts
})
export const MessageRole = Schema.Literal("system", "developer", "user", "assistant", "tool")

// ---------------------------------------------------------------------------
// Responses

export const CompletionUsage = Schema.Struct({
  prompt_tokens: Schema.Number,
  completion_tokens: Schema.Number,
  total_tokens: Schema.Number,
  prompt_tokens_details: Schema.Struct({ cached_tokens: Schema.Number }),
  completion_tokens_details: Schema.Struct({ reasoning_tokens: Schema.Number })
})
export type CompletionUsage = typeof CompletionUsage.Type

const FinishReason = Schema.Literal("stop", "length", "tool_calls", "content_filter", "function_call")

/** The fields every completion object and chunk starts with. */
const completionHead = <O extends string>(object: O) => ({
  id: Schema.String,
  object: Schema.Literal(object),
  created: Schema.Number,
  model: Schema.String,
  system_fingerprint: Schema.NullOr(Schema.String)
})

export const ChatCompletion = Schema.Struct({
  ...completionHead("chat.completion"),
  choices: Schema.Array(Schema.Struct({
    index: Schema.Number,
    message: Schema.Struct({
      role: Schema.Literal("assistant"),
      content: Schema.NullOr(Schema.String),
      refusal: Schema.NullOr(Schema.String),
      reasoning_content: Schema.optional(Schema.String),
      tool_calls: Schema.optional(Schema.Array(Schema.Struct({
        id: Schema.String,
        type: Schema.Literal("function"),
        function: Schema.Struct({ name: Schema.String, arguments: Schema.String })
      })))
    }),
    finish_reason: FinishReason,
    logprobs: Schema.Null
  })),
  usage: CompletionUsage
})
export type ChatCompletion = typeof ChatCompletion.Type

export const ChatCompletionChunk = Schema.Struct({
  ...completionHead("chat.completion.chunk"),
  choices: Schema.Array(Schema.Struct({
    index: Schema.Number,
    delta: Schema.Struct({
      role: Schema.optional(Schema.Literal("assistant")),
      content: Schema.optional(Schema.String),
      reasoning_content: Schema.optional(Schema.String),
      tool_calls: Schema.optional(Schema.Array(Schema.Struct({
        index: Schema.Number,
        id: Schema.optional(Schema.String),
        type: Schema.optional(Schema.Literal("function")),
        function: Schema.Struct({ name: Schema.optional(Schema.String), arguments: Schema.String })
      })))
    }),
    finish_reason: Schema.NullOr(FinishReason),
    logprobs: Schema.Null
  })),
  usage: Schema.optional(Schema.NullOr(CompletionUsage))
})
export type ChatCompletionChunk = typeof ChatCompletionChunk.Type

export const Model = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("model"),
  created: Schema.Number,
  owned_by: Schema.String
})
export type Model = typeof Model.Type

export const ModelList = Schema.Struct({ object: Schema.Literal("list"), data: Schema.Array(Model) })

export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    message: Schema.String,
    type: Schema.String,
    param: Schema.NullOr(Schema.String),
    code: Schema.NullOr(Schema.String)
  })
})
export type ErrorBody = typeof ErrorBody.Type
