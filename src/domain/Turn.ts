import { Data, Schema } from "effect"

/**
 * The dialect-neutral middle of the data path: every API dialect translates its request into a
 * TurnRequest and renders the TurnEvent stream back in its own shape.
 */

export const ImageMediaType = Schema.Literal("image/png", "image/jpeg", "image/gif", "image/webp")

/** One block of the user's input, in the CLI's (and Anthropic's) content shape. */
export const InputBlock = Schema.Union(
  Schema.Struct({ type: Schema.Literal("text"), text: Schema.String }),
  Schema.Struct({
    type: Schema.Literal("image"),
    source: Schema.Struct({ type: Schema.Literal("base64"), media_type: ImageMediaType, data: Schema.String })
  })
)
export type InputBlock = typeof InputBlock.Type

/** How the CLI names a client tool (`mcp__<server>__<name>`): the in-process MCP server is called "client". */
export const CLIENT_TOOL_SERVER = "client"
export const TOOL_PREFIX = `mcp__${CLIENT_TOOL_SERVER}__`

/** Everything that changes the CLI's argv or environment (the pool's key). */
export interface LaunchOptions {
  readonly model: string
  readonly systemPrompt: string | undefined
  /** `--effort` (low, medium, high, xhigh, max). */
  readonly effort?: string | undefined
  /** Upstream max_tokens per API call (CLAUDE_CODE_MAX_OUTPUT_TOKENS). */
  readonly maxOutputTokens?: number | undefined
  /** JSON Schema (as JSON text) the answer must match: the CLI's structured output (`--json-schema`). */
  readonly jsonSchema?: string | undefined
  /** The client's functions, offered to the model through the CLI's in-process MCP server. */
  readonly tools?: ReadonlyArray<ClientTool> | undefined
  /** How the model is told to use the tools (tool_choice, parallel_tool_calls): `--append-system-prompt`. */
  readonly toolInstruction?: string | undefined
  /** Working directory (absolute), when not `claude.workspace`. */
  readonly cwd?: string | undefined
  /** A CLI session to continue (`--resume`): never a pool standby. */
  readonly resume?: string | undefined
  /** Interactive sessions: instead of config's `claude.permission_mode` (never wider: checked by the caller). */
  readonly permissionMode?: string | undefined
  /** Interactive sessions: the CLI asks the gateway before a tool runs (`--permission-prompt-tool stdio`). */
  readonly permissionPrompts?: boolean | undefined
  /** Interactive sessions: instead of config's `claude.allowed_tools` / `disallowed_tools` / `max_budget_usd`. */
  readonly allowedTools?: ReadonlyArray<string> | undefined
  readonly disallowedTools?: ReadonlyArray<string> | undefined
  readonly maxBudgetUsd?: number | undefined
}

/** A client function as the CLI sees it. */
export interface ClientTool {
  /** The MCP tool name (the client's name, or a reversible stand-in when MCP cannot carry it). */
  readonly name: string
  /** The name the client gave the function. */
  readonly clientName: string
  readonly description: string | undefined
  /** JSON Schema of the arguments (an object schema). */
  readonly parameters: Readonly<Record<string, unknown>>
}

/** A call of a client function the model made. */
export interface ToolCall {
  /** The CLI's tool_use id: the OpenAI tool_call_id. */
  readonly id: string
  /** The client's function name. */
  readonly name: string
  /** The arguments as JSON text. */
  readonly arguments: string
}

/** The client's answer to one tool call. */
export interface ToolResult {
  readonly id: string
  readonly content: string
}

export interface TurnRequest {
  readonly launch: LaunchOptions
  readonly input: ReadonlyArray<InputBlock>
  /** Stop sequences: the answer ends before the first one found, and the CLI turn is ended. */
  readonly stop?: ReadonlyArray<string> | undefined
  /**
   * The request ends with the client's results for earlier tool calls: they answer a parked turn
   * when one waits for exactly these ids; otherwise `input` (the history as a transcript) starts a
   * new turn.
   */
  readonly toolResults?: ReadonlyArray<ToolResult> | undefined
  /** Where in `input` the request's new part starts: a CLI session that holds the history gets only that. */
  readonly newInputFrom?: number | undefined
  /** What conversations need; absent: the turn belongs to none (e.g. one of `n` runs). */
  readonly conversation?: ConversationRef | undefined
}

/** One message as the client sent or received it, in the form conversations record and match. */
export interface HistoryMessage {
  readonly role: string
  readonly content: string | null
  readonly tool_calls?: ReadonlyArray<ToolCall>
  readonly tool_call_id?: string
}

export const historyMessage = (
  role: string,
  text: string,
  toolCalls: ReadonlyArray<ToolCall> = [],
  toolCallId?: string
): HistoryMessage => ({
  role,
  content: text === "" ? null : text,
  ...(toolCalls.length > 0 ? { tool_calls: toolCalls.map(({ arguments: args, id, name }) => ({ id, name, arguments: args })) } : {}),
  ...(toolCallId !== undefined ? { tool_call_id: toolCallId } : {})
})

export interface ConversationRef {
  /** The client named the conversation (`conversation_id`); else it is found by its history, or new. */
  readonly id: string | undefined
  /** Whose conversations the request may continue (see ConversationStore). */
  readonly owner: string
  /** The client's messages before the new ones. */
  readonly history: ReadonlyArray<HistoryMessage>
  /** The messages this request adds (a user message, or tool results). */
  readonly added: ReadonlyArray<HistoryMessage>
}

export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter"

export interface TurnUsage {
  readonly inputTokens: number
  readonly outputTokens: number
  readonly cacheReadTokens: number
  readonly cacheCreationTokens: number
}

export type TurnEvent = Data.TaggedEnum<{
  /** The turn has started upstream: resolved model id and CLI session. */
  Started: { readonly model: string; readonly sessionId: string }
  TextDelta: { readonly text: string }
  /** Running usage of the turn so far (the final figures come with Finished). */
  Usage: { readonly usage: TurnUsage }
  ThinkingDelta: { readonly text: string }
  /** The model started a call of a client function (index: its position in this answer). */
  ToolCallStarted: { readonly index: number; readonly id: string; readonly name: string }
  /** A piece of that call's arguments (JSON text), as the model produces it. */
  ToolCallDelta: { readonly index: number; readonly arguments: string }
  Finished: {
    readonly reason: FinishReason
    readonly usage: TurnUsage
    readonly costUsd: number | undefined
    readonly sessionId: string
    /** The validated structured output, when the launch asked for a JSON schema. */
    readonly structuredOutput?: unknown
    /** With reason "tool_calls": the calls the client is to answer (the turn is parked meanwhile). */
    readonly toolCalls?: ReadonlyArray<ToolCall>
    /** With reason "stop": the stop sequence that ended the answer (dialects that report it). */
    readonly stopSequence?: string
  }
}>
export const TurnEvent = Data.taggedEnum<TurnEvent>()

/** An upstream API error the CLI reported (after its own retries). */
export class UpstreamError extends Schema.TaggedError<UpstreamError>()("UpstreamError", {
  /** HTTP status the upstream answered, null for timeouts and malformed streams. */
  status: Schema.NullOr(Schema.Number),
  /** Anthropic error type (`overloaded_error`, …) or the CLI's error kind. */
  errorType: Schema.NullOr(Schema.String),
  message: Schema.String
}) {}

/** The CLI ended the turn with an error of its own (max turns, budget, structured output, …). */
export class TurnFailed extends Schema.TaggedError<TurnFailed>()("TurnFailed", {
  subtype: Schema.String,
  message: Schema.String
}) {}
