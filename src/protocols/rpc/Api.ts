import { Rpc, RpcGroup, RpcMiddleware } from "@effect/rpc"
import { Context, Schema } from "effect"
import { Health } from "../../http/Api.js"
import { InputBlock } from "../../domain/Turn.js"
import { Stats } from "../../http/TelemetryApi.js"
import { CreateSession as CreateSessionPayload, Hello, PermissionMode, SessionEventMessage, SessionObject } from "../sessions/Messages.js"

/**
 * The gateway's typed RPC surface (served at /rpc, HTTP NDJSON and WebSocket). One module for the
 * server and the client: `GatewayRpcs` is the single definition both are checked against.
 * Imports only schemas, so that the client entry stays free of server code.
 */

// ---------------------------------------------------------------------------------------- errors

/** The request is malformed or asks for something the gateway cannot honour; `param` names the field. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String,
  param: Schema.NullOr(Schema.String),
  code: Schema.NullOr(Schema.String)
}) {}

/** No API key, or an unknown one (when the gateway has `server.api_keys`). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", { message: Schema.String }) {}

export class ModelNotFound extends Schema.TaggedError<ModelNotFound>()("ModelNotFound", {
  model: Schema.String,
  available: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/** Unknown, or another API key's. */
export class ConversationNotFound extends Schema.TaggedError<ConversationNotFound>()("ConversationNotFound", {
  id: Schema.String,
  message: Schema.String
}) {}

/** Every session slot is busy and the queue is full (or waited too long), or the gateway is shutting down. */
export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", {
  reason: Schema.Literal("queue_full", "queue_timeout", "shutting_down"),
  retryAfterSeconds: Schema.Number,
  message: Schema.String
}) {}

/** The upstream API failed the turn (after the CLI's own retries). */
export class UpstreamError extends Schema.TaggedError<UpstreamError>()("UpstreamError", {
  /** HTTP status upstream answered; null for timeouts and malformed streams. */
  status: Schema.NullOr(Schema.Number),
  /** Anthropic error type (`overloaded_error`, …) or the CLI's error kind. */
  errorType: Schema.NullOr(Schema.String),
  /** Set when a later retry can succeed (429, 503, 529). */
  retryAfterSeconds: Schema.NullOr(Schema.Number),
  message: Schema.String
}) {}

/** The turn did not finish within `claude.timeout_seconds`. */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  seconds: Schema.Number,
  message: Schema.String
}) {}

/** The Claude Code CLI cannot be started (not installed, not executable). */
export class CliUnavailable extends Schema.TaggedError<CliUnavailable>()("CliUnavailable", { message: Schema.String }) {}

/** The CLI failed the turn on its own (exited early, spoke garbage, ended the turn with an error). */
export class TurnFailed extends Schema.TaggedError<TurnFailed>()("TurnFailed", {
  /** `cli_exited`, `cli_protocol_error`, or the CLI's own result subtype (`error_max_turns`, …). */
  code: Schema.String,
  message: Schema.String
}) {}

/** Unknown, ended and deleted, or another API key's. */
export class SessionNotFound extends Schema.TaggedError<SessionNotFound>()("SessionNotFound", {
  id: Schema.String,
  message: Schema.String
}) {}

/** `sessions.max_per_key` (end one of yours first) or `sessions.max_total` (retry after `retryAfterSeconds`). */
export class SessionLimitReached extends Schema.TaggedError<SessionLimitReached>()("SessionLimitReached", {
  scope: Schema.Literal("key", "total"),
  limit: Schema.Number,
  /** Null for the per-key cap: waiting does not lift it. */
  retryAfterSeconds: Schema.NullOr(Schema.Number),
  message: Schema.String
}) {}

/**
 * The session cannot take the message now: `session_ended`, `not_running` (an interrupt with no
 * turn running), `cli_error` (the CLI refused a switch), `inbox_full` (sessions.max_queued_messages
 * messages already wait); or a `SessionEvents` stream that fell behind: `too_slow`.
 */
export class SessionRefused extends Schema.TaggedError<SessionRefused>()("SessionRefused", {
  code: Schema.String,
  message: Schema.String
}) {}

export const ChatError = Schema.Union(
  InvalidRequest,
  ModelNotFound,
  ConversationNotFound,
  Overloaded,
  UpstreamError,
  Timeout,
  CliUnavailable,
  TurnFailed
)
export type ChatError = typeof ChatError.Type

// ---------------------------------------------------------------------------------------- auth

/** Whose conversations a call may see (derived from its verified API key). */
export class Caller extends Context.Tag("claude-code-api/rpc/Caller")<Caller, { readonly owner: string }>() {}

/** Every RPC checks the API key like the HTTP routes do; a failure arrives as `Unauthorized`. */
export class Authentication extends RpcMiddleware.Tag<Authentication>()("claude-code-api/rpc/Authentication", {
  provides: Caller,
  failure: Unauthorized
}) {}

// ---------------------------------------------------------------------------------------- chat

/** A function the model may call; the client runs it and answers with `toolResults`. */
export const ClientTool = Schema.Struct({
  /** 1 to 64 letters, digits, underscores or dashes. */
  name: Schema.String,
  description: Schema.optional(Schema.String),
  /** JSON Schema of the arguments (an object schema); default: no arguments. */
  parameters: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
})

export const ToolResult = Schema.Struct({
  /** The `id` of the tool call this answers. */
  id: Schema.String,
  content: Schema.String
})

export const ChatRequest = Schema.Struct({
  /** Continue this conversation (its CLI session); absent: a new conversation, named in the `Accepted` event. */
  conversationId: Schema.optional(Schema.String),
  /** A model the gateway lists (`ListModels`); default `claude.default_model`. */
  model: Schema.optional(Schema.String),
  system: Schema.optional(Schema.String),
  /** The user's message. Exactly one of `input` and `toolResults`. */
  input: Schema.optional(Schema.Union(Schema.String, Schema.Array(InputBlock))),
  /** Results of the tool calls the previous turn finished with (same conversation, same `tools`). */
  toolResults: Schema.optional(Schema.Array(ToolResult)),
  tools: Schema.optional(Schema.Array(ClientTool)),
  toolChoice: Schema.optional(Schema.Union(Schema.Literal("auto", "none", "required"), Schema.Struct({ name: Schema.String }))),
  /** false: at most one tool call per answer. */
  parallelToolCalls: Schema.optional(Schema.Boolean),
  /** Upstream max_tokens per API call. */
  maxTokens: Schema.optional(Schema.Number),
  effort: Schema.optional(Schema.Literal("low", "medium", "high", "xhigh", "max")),
  /** Up to 4 sequences: the answer ends before the first one. */
  stop: Schema.optional(Schema.Array(Schema.String))
})
export type ChatRequest = typeof ChatRequest.Type

export const Usage = Schema.Struct({
  inputTokens: Schema.Number,
  outputTokens: Schema.Number,
  cacheReadTokens: Schema.Number,
  cacheCreationTokens: Schema.Number
})

export const ToolCall = Schema.Struct({
  id: Schema.String,
  /** The client's function name. */
  name: Schema.String,
  /** The arguments as JSON text. */
  arguments: Schema.String
})

/** The gateway's own turn events, as the dialect-neutral core produces them. */
export const ChatEvent = Schema.Union(
  /** First event: the conversation the turn belongs to (pass it as `conversationId` to continue). */
  Schema.TaggedStruct("Accepted", { conversationId: Schema.String }),
  /** The turn started upstream: resolved model and CLI session. */
  Schema.TaggedStruct("Started", { model: Schema.String, sessionId: Schema.String }),
  Schema.TaggedStruct("TextDelta", { text: Schema.String }),
  Schema.TaggedStruct("ThinkingDelta", { text: Schema.String }),
  /** Running usage so far (the final figures come with Finished). */
  Schema.TaggedStruct("Usage", { usage: Usage }),
  Schema.TaggedStruct("ToolCallStarted", { index: Schema.Number, id: Schema.String, name: Schema.String }),
  Schema.TaggedStruct("ToolCallDelta", { index: Schema.Number, arguments: Schema.String }),
  Schema.TaggedStruct("Finished", {
    reason: Schema.Literal("stop", "length", "tool_calls", "content_filter"),
    usage: Usage,
    costUsd: Schema.NullOr(Schema.Number),
    sessionId: Schema.String,
    /** With reason "tool_calls": answer each with `toolResults` (the turn waits for them). */
    toolCalls: Schema.Array(ToolCall)
  })
)
export type ChatEvent = typeof ChatEvent.Type

// ---------------------------------------------------------------------------------------- conversations

export const Conversation = Schema.Struct({
  id: Schema.String,
  /** Unix seconds. */
  createdAt: Schema.Number,
  updatedAt: Schema.Number,
  model: Schema.NullOr(Schema.String),
  system: Schema.NullOr(Schema.String),
  /** Absolute path of the conversation's CLI working directory (null: the workspace). */
  workingDirectory: Schema.NullOr(Schema.String),
  metadata: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** Its CLI is running (the next turn skips the resume). */
  live: Schema.Boolean,
  usage: Schema.Struct({ promptTokens: Schema.Number, completionTokens: Schema.Number }),
  costUsd: Schema.Number
})

export const Message = Schema.Struct({
  role: Schema.String,
  content: Schema.NullOr(Schema.String),
  toolCalls: Schema.Array(ToolCall),
  toolCallId: Schema.NullOr(Schema.String)
})

export const ConversationWithMessages = Schema.Struct({ ...Conversation.fields, messages: Schema.Array(Message) })

export const ConversationPage = Schema.Struct({
  data: Schema.Array(Conversation),
  hasMore: Schema.Boolean
})

export const Model = Schema.Struct({
  id: Schema.String,
  /** The model the CLI runs for it (an alias's target). */
  resolved: Schema.String
})

const IdPayload = { id: Schema.String }

// ---------------------------------------------------------------------------------------- sessions

/**
 * What `SessionEvents` yields: `Hello` first (the session now, where replay starts), the replayed
 * events, then every new one, each with its `seq`, until the session ends. The shapes are the
 * sessions WebSocket's (src/protocols/sessions/Messages.ts, docs/api/sessions.md).
 */
export const SessionEvent = Schema.Union(Hello, ...SessionEventMessage.members)
export type SessionEvent = typeof SessionEvent.Type

const SessionCallError = Schema.Union(SessionNotFound, SessionRefused, InvalidRequest)

export class GatewayRpcs extends RpcGroup.make(
  Rpc.make("Chat", { payload: ChatRequest, success: ChatEvent, error: ChatError, stream: true }),
  Rpc.make("CreateConversation", {
    payload: {
      model: Schema.optional(Schema.String),
      system: Schema.optional(Schema.String),
      /** Inside the gateway's workspace (relative to it, or absolute within it); created if missing. */
      workingDirectory: Schema.optional(Schema.String),
      metadata: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
    },
    success: Conversation,
    error: Schema.Union(InvalidRequest, ModelNotFound)
  }),
  Rpc.make("ListConversations", {
    payload: {
      /** 1 to 100, default 20. */
      limit: Schema.optional(Schema.Number),
      /** The last id of the previous page. */
      after: Schema.optional(Schema.String)
    },
    success: ConversationPage,
    error: Schema.Union(InvalidRequest, ConversationNotFound)
  }),
  Rpc.make("GetConversation", { payload: IdPayload, success: ConversationWithMessages, error: ConversationNotFound }),
  Rpc.make("DeleteConversation", { payload: IdPayload, error: Schema.Union(ConversationNotFound, Overloaded) }),
  Rpc.make("ListModels", { success: Schema.Array(Model) }),
  Rpc.make("Health", { success: Health }),
  /** The figures of GET /stats. */
  Rpc.make("GetStats", { success: Stats }),
  // Sessions (docs/api/sessions.md): the payloads and objects are the sessions protocol's (snake_case).
  Rpc.make("CreateSession", {
    payload: CreateSessionPayload,
    success: SessionObject,
    error: Schema.Union(InvalidRequest, ModelNotFound, SessionLimitReached)
  }),
  Rpc.make("ListSessions", { success: Schema.Array(SessionObject), error: InvalidRequest }),
  Rpc.make("GetSession", { payload: IdPayload, success: SessionObject, error: Schema.Union(SessionNotFound, InvalidRequest) }),
  /** Ends the session (its CLI is killed; `SessionEvents` streams get `state: ended` and end) and forgets it. */
  Rpc.make("DeleteSession", { payload: IdPayload, error: Schema.Union(SessionNotFound, InvalidRequest) }),
  /** Cancelling the stream detaches this client only: the session and its running turn go on. */
  Rpc.make("SessionEvents", {
    payload: {
      id: Schema.String,
      /** Replay the buffered events after this seq (absent: only new events). */
      after: Schema.optional(Schema.Number)
    },
    success: SessionEvent,
    /** SessionRefused `too_slow`: the caller fell `sessions.replay_buffer` events behind (call again with `after`). */
    error: Schema.Union(SessionNotFound, InvalidRequest, SessionRefused),
    stream: true
  }),
  /** Queue a user message (taken one turn at a time); its turn shows in `SessionEvents`. */
  Rpc.make("SessionSend", {
    payload: {
      id: Schema.String,
      content: Schema.Union(Schema.String, Schema.Array(InputBlock)),
      /** Echoed in the turn's `turn_started`. */
      client_id: Schema.optional(Schema.String)
    },
    error: SessionCallError
  }),
  Rpc.make("SessionInterrupt", { payload: IdPayload, error: SessionCallError }),
  /** The answer to a `permission_request`. */
  Rpc.make("SessionPermission", {
    payload: {
      id: Schema.String,
      request_id: Schema.String,
      decision: Schema.Literal("allow", "deny"),
      /** With allow: run the tool with this input instead. */
      updated_input: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
      /** With deny: what the model is told. */
      message: Schema.optional(Schema.String)
    },
    error: SessionCallError
  }),
  Rpc.make("SessionSetModel", {
    payload: { id: Schema.String, model: Schema.String },
    error: Schema.Union(SessionNotFound, SessionRefused, InvalidRequest, ModelNotFound)
  }),
  /** One of `sessions.permission_modes`. */
  Rpc.make("SessionSetPermissionMode", { payload: { id: Schema.String, mode: PermissionMode }, error: SessionCallError })
).middleware(Authentication) {}
