import { Schema } from "effect"

/**
 * OpenAI Responses API wire shapes (openai-node 6.49 `resources/responses`). The request envelope is
 * decoded first; input items and tools one by one (translate.ts), so that errors name the exact field.
 * Fields a client may send that the gateway does not act on are accepted here and listed in
 * docs/api/responses.md.
 */

const Opt = <A, I>(schema: Schema.Schema<A, I>) => Schema.optional(Schema.NullOr(schema))

export const TextFormat = Schema.Struct({
  type: Schema.String,
  name: Schema.optional(Schema.String),
  description: Opt(Schema.String),
  schema: Opt(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  strict: Opt(Schema.Boolean)
})

export const ResponsesRequest = Schema.Struct({
  model: Schema.String.pipe(Schema.minLength(1)),
  input: Schema.Union(Schema.String, Schema.Array(Schema.Unknown)),
  instructions: Opt(Schema.String),
  stream: Opt(Schema.Boolean),
  stream_options: Opt(Schema.Struct({ include_obfuscation: Opt(Schema.Boolean) })),
  tools: Opt(Schema.Array(Schema.Unknown)),
  tool_choice: Opt(Schema.Unknown),
  parallel_tool_calls: Opt(Schema.Boolean),
  max_output_tokens: Opt(Schema.Number),
  max_tool_calls: Opt(Schema.Number),
  text: Opt(Schema.Struct({ format: Opt(TextFormat), verbosity: Opt(Schema.String) })),
  reasoning: Opt(Schema.Struct({
    effort: Opt(Schema.String),
    summary: Opt(Schema.String),
    generate_summary: Opt(Schema.String)
  })),
  previous_response_id: Opt(Schema.String),
  /** The gateway's own conversation (`conv_…` of /v1/conversations), by id or as `{ id }`. */
  conversation: Opt(Schema.Union(Schema.String, Schema.Struct({ id: Schema.String }))),
  store: Opt(Schema.Boolean),
  metadata: Opt(Schema.Record({ key: Schema.String, value: Schema.String })),
  include: Opt(Schema.Array(Schema.String)),
  background: Opt(Schema.Boolean),
  prompt: Opt(Schema.Unknown),
  // Accepted, not applied (the CLI has no such knobs): see docs/api/responses.md.
  temperature: Opt(Schema.Number),
  top_p: Opt(Schema.Number),
  top_logprobs: Opt(Schema.Number),
  truncation: Opt(Schema.Literal("auto", "disabled")),
  user: Opt(Schema.String),
  safety_identifier: Opt(Schema.String),
  prompt_cache_key: Opt(Schema.String),
  prompt_cache_retention: Opt(Schema.String),
  service_tier: Opt(Schema.String)
})
export type ResponsesRequest = typeof ResponsesRequest.Type

// ---------------------------------------------------------------------------------------------
// Input items

export const InputText = Schema.Struct({ type: Schema.Literal("input_text"), text: Schema.String })
export const InputImage = Schema.Struct({
  type: Schema.Literal("input_image"),
  image_url: Opt(Schema.String),
  file_id: Opt(Schema.String),
  detail: Opt(Schema.String)
})
export const OutputText = Schema.Struct({ type: Schema.Literal("output_text"), text: Schema.String })
export const Refusal = Schema.Struct({ type: Schema.Literal("refusal"), refusal: Schema.String })

export const MessageItem = Schema.Struct({
  type: Schema.optional(Schema.Literal("message")),
  id: Schema.optional(Schema.String),
  role: Schema.Literal("user", "assistant", "system", "developer"),
  content: Schema.Union(Schema.String, Schema.Array(Schema.Unknown)),
  status: Schema.optional(Schema.String)
})

export const FunctionCallItem = Schema.Struct({
  type: Schema.Literal("function_call"),
  id: Schema.optional(Schema.String),
  call_id: Schema.String.pipe(Schema.minLength(1)),
  name: Schema.String,
  arguments: Schema.String,
  status: Schema.optional(Schema.String)
})

export const FunctionCallOutputItem = Schema.Struct({
  type: Schema.Literal("function_call_output"),
  id: Opt(Schema.String),
  call_id: Schema.String.pipe(Schema.minLength(1)),
  output: Schema.Union(Schema.String, Schema.Array(Schema.Unknown)),
  status: Opt(Schema.String)
})

export const FunctionTool = Schema.Struct({
  type: Schema.Literal("function"),
  name: Schema.String,
  description: Opt(Schema.String),
  parameters: Opt(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  strict: Opt(Schema.Boolean)
})

export const ToolChoice = Schema.Union(
  Schema.Literal("none", "auto", "required"),
  Schema.Struct({ type: Schema.Literal("function"), name: Schema.String })
)

// ---------------------------------------------------------------------------------------------
// Output

export interface OutputMessage {
  readonly type: "message"
  readonly id: string
  readonly role: "assistant"
  status: "in_progress" | "completed" | "incomplete"
  content: Array<{ readonly type: "output_text"; text: string; readonly annotations: Array<never>; readonly logprobs: Array<never> }>
}

export interface OutputFunctionCall {
  readonly type: "function_call"
  readonly id: string
  readonly call_id: string
  readonly name: string
  arguments: string
  status: "in_progress" | "completed" | "incomplete"
}

export interface OutputReasoning {
  readonly type: "reasoning"
  readonly id: string
  summary: Array<{ readonly type: "summary_text"; text: string }>
  status?: "in_progress" | "completed" | "incomplete"
}

export type OutputItem = OutputMessage | OutputFunctionCall | OutputReasoning

export interface ResponseUsage {
  readonly input_tokens: number
  readonly input_tokens_details: { readonly cached_tokens: number }
  readonly output_tokens: number
  readonly output_tokens_details: { readonly reasoning_tokens: number }
  readonly total_tokens: number
}

/** Something of the request the gateway left out rather than failing it (extension field `ignored`). */
export interface Ignored {
  readonly param: string
  readonly reason: string
}

/** The response object (`object: "response"`). */
export interface ResponseObject {
  readonly id: string
  readonly object: "response"
  readonly created_at: number
  status: "in_progress" | "completed" | "incomplete" | "failed"
  error: { readonly code: string; readonly message: string } | null
  incomplete_details: { readonly reason: "max_output_tokens" } | null
  readonly instructions: string | null
  readonly max_output_tokens: number | null
  model: string
  output: Array<OutputItem>
  readonly parallel_tool_calls: boolean
  readonly previous_response_id: string | null
  readonly reasoning: { readonly effort: string | null; readonly summary: string | null }
  readonly store: boolean
  readonly temperature: number | null
  readonly text: { readonly format: unknown }
  readonly tool_choice: unknown
  readonly tools: ReadonlyArray<unknown>
  readonly top_p: number | null
  readonly truncation: "auto" | "disabled"
  usage: ResponseUsage | null
  readonly user: string | null
  readonly metadata: Readonly<Record<string, string>>
  /** Extension: the gateway conversation the response belongs to. */
  conversation_id?: string
  /** Extension: tools and include values left out of the request (see docs/api/responses.md). */
  readonly ignored?: ReadonlyArray<Ignored>
}

// HttpApi documentation shapes (the handlers answer raw responses).

export const ResponseObjectSchema = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("response"),
  created_at: Schema.Number,
  status: Schema.String,
  model: Schema.String,
  output: Schema.Array(Schema.Unknown),
  usage: Schema.NullOr(Schema.Unknown)
})

export const ResponseDeleted = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("response.deleted"),
  deleted: Schema.Literal(true)
})

export const InputItemList = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(Schema.Unknown),
  first_id: Schema.NullOr(Schema.String),
  last_id: Schema.NullOr(Schema.String),
  has_more: Schema.Boolean
})
