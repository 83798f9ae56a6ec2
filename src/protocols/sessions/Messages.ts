import { Schema } from "effect"
import { InputBlock } from "../../domain/Turn.js"

/**
 * The sessions protocol: the HTTP shapes of /v1/sessions and every WebSocket message, client → server
 * and server → client. Each WebSocket frame is one JSON object with a `type` discriminator; every
 * server event carries `seq` (1, 2, 3… per session) so that a client that reconnects with
 * `?after=N` gets what it missed. See docs/api/sessions.md.
 */

const Opt = <A, I>(schema: Schema.Schema<A, I>) => Schema.optional(Schema.NullOr(schema))

/** The CLI's permission modes (`--permission-mode`); config says which a session may use. */
export const PermissionMode = Schema.Literal("default", "acceptEdits", "plan", "dontAsk", "auto", "bypassPermissions")
export type PermissionMode = typeof PermissionMode.Type

export const SessionState = Schema.Literal("starting", "idle", "running", "waiting_for_permission", "ended")
export type SessionState = typeof SessionState.Type

// ---------------------------------------------------------------------------------------------
// HTTP

/** `POST /v1/sessions` body. Every field is optional; nothing here can widen what config allows. */
export const CreateSession = Schema.Struct({
  model: Opt(Schema.String),
  system_prompt: Opt(Schema.String),
  /** Relative to the workspace, or absolute inside it; created if missing. */
  working_directory: Opt(Schema.String),
  /** One of `sessions.permission_modes` (default: the first of them). */
  permission_mode: Opt(PermissionMode),
  /** Tools that run without a prompt (`--allowedTools`): a subset of `claude.allowed_tools` (default: all of them). */
  allowed_tools: Opt(Schema.Array(Schema.String)),
  /** Added to `claude.disallowed_tools` (never removes one). */
  disallowed_tools: Opt(Schema.Array(Schema.String)),
  /** `--max-budget-usd`, at most `claude.max_budget_usd` when that is set. */
  max_budget_usd: Opt(Schema.Number)
})
export type CreateSession = typeof CreateSession.Type

export const SessionUsage = Schema.Struct({
  input_tokens: Schema.Number,
  output_tokens: Schema.Number,
  cache_read_input_tokens: Schema.Number,
  cache_creation_input_tokens: Schema.Number
})
export type SessionUsage = typeof SessionUsage.Type

export const SessionObject = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("session"),
  created_at: Schema.Number,
  updated_at: Schema.Number,
  state: SessionState,
  model: Schema.String,
  system_prompt: Schema.NullOr(Schema.String),
  working_directory: Schema.String,
  permission_mode: PermissionMode,
  allowed_tools: Schema.Array(Schema.String),
  disallowed_tools: Schema.Array(Schema.String),
  max_budget_usd: Schema.NullOr(Schema.Number),
  /** The CLI's own session id (what `--resume` continues), once the CLI reported it. */
  cli_session_id: Schema.NullOr(Schema.String),
  /** Sum over the session's turns. */
  usage: SessionUsage,
  cost_usd: Schema.Number,
  turns: Schema.Number,
  /** The last event's sequence number. */
  last_seq: Schema.Number,
  /** Path (relative to the gateway's origin) of the session's WebSocket. */
  websocket_url: Schema.String
})
export type SessionObject = typeof SessionObject.Type

export const SessionList = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(SessionObject)
})

export const SessionDeleted = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("session.deleted"),
  deleted: Schema.Literal(true)
})

/** `POST /v1/sessions/{id}/ticket` → a single-use token for `GET /v1/sessions/{id}/ws?ticket=…`. */
export const SessionTicket = Schema.Struct({
  object: Schema.Literal("session.ticket"),
  ticket: Schema.String,
  /** Unix seconds. */
  expires_at: Schema.Number,
  /** The WebSocket path with the ticket in its query. */
  websocket_url: Schema.String
})

// ---------------------------------------------------------------------------------------------
// WebSocket, client → server

/** A user message: text, or content blocks (text and base64 images). Queued while a turn runs. */
export class UserMessage extends Schema.Class<UserMessage>("UserMessage")({
  type: Schema.Literal("user_message"),
  /** Echoed in `turn_started` so a client can match its message to the turn. */
  client_id: Schema.optional(Schema.String),
  content: Schema.Union(Schema.String, Schema.Array(InputBlock))
}) {}

/** Stop the running turn (the CLI keeps the partial answer in its history). */
export class Interrupt extends Schema.Class<Interrupt>("Interrupt")({
  type: Schema.Literal("interrupt")
}) {}

/** The answer to a `permission_request`. */
export class PermissionDecision extends Schema.Class<PermissionDecision>("PermissionDecision")({
  type: Schema.Literal("permission_decision"),
  request_id: Schema.String,
  decision: Schema.Literal("allow", "deny"),
  /** With allow: run the tool with this input instead (e.g. an edited command). */
  updated_input: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  /** With deny: what the model is told. */
  message: Schema.optional(Schema.String)
}) {}

export class SetModel extends Schema.Class<SetModel>("SetModel")({
  type: Schema.Literal("set_model"),
  model: Schema.String
}) {}

/** Must be one of `sessions.permission_modes`. */
export class SetPermissionMode extends Schema.Class<SetPermissionMode>("SetPermissionMode")({
  type: Schema.Literal("set_permission_mode"),
  mode: PermissionMode
}) {}

/** Answered with `pong` (not sequenced): a keep-alive for proxies. */
export class Ping extends Schema.Class<Ping>("Ping")({
  type: Schema.Literal("ping")
}) {}

export const ClientMessage = Schema.Union(UserMessage, Interrupt, PermissionDecision, SetModel, SetPermissionMode, Ping)
export type ClientMessage = typeof ClientMessage.Type
export const ClientMessageJson = Schema.parseJson(ClientMessage)

// ---------------------------------------------------------------------------------------------
// WebSocket, server → client. Every event but `pong` and `hello` carries `seq`.

const Seq = { seq: Schema.Number }

/** First frame on every connection (not sequenced): the session as it is, and where replay starts. */
export class Hello extends Schema.Class<Hello>("Hello")({
  type: Schema.Literal("hello"),
  session: SessionObject,
  /** Replay starts after this seq (the `after` asked for, or the oldest still buffered − 1). */
  replay_from: Schema.Number,
  /** True when events the client asked for were already dropped from the buffer. */
  truncated: Schema.Boolean
}) {}

export class Pong extends Schema.Class<Pong>("Pong")({
  type: Schema.Literal("pong")
}) {}

export class StateChanged extends Schema.Class<StateChanged>("StateChanged")({
  type: Schema.Literal("state"),
  ...Seq,
  state: SessionState,
  /** With `ended`: why (deleted, idle_timeout, cli_exited, shutdown). */
  reason: Schema.optional(Schema.String)
}) {}

/** A user message was taken: the turn begins. */
export class TurnStarted extends Schema.Class<TurnStarted>("TurnStarted")({
  type: Schema.Literal("turn_started"),
  ...Seq,
  turn: Schema.Number,
  client_id: Schema.NullOr(Schema.String),
  content: Schema.Array(InputBlock)
}) {}

export class TextDelta extends Schema.Class<TextDelta>("TextDelta")({
  type: Schema.Literal("text_delta"),
  ...Seq,
  text: Schema.String
}) {}

export class ThinkingDelta extends Schema.Class<ThinkingDelta>("ThinkingDelta")({
  type: Schema.Literal("thinking_delta"),
  ...Seq,
  text: Schema.String
}) {}

/** The model called a tool (the complete input, once the model finished writing it). */
export class ToolUse extends Schema.Class<ToolUse>("ToolUse")({
  type: Schema.Literal("tool_use"),
  ...Seq,
  id: Schema.String,
  name: Schema.String,
  input: Schema.Unknown,
  /** Set when a subagent made the call. */
  parent_tool_use_id: Schema.NullOr(Schema.String)
}) {}

export class ToolResult extends Schema.Class<ToolResult>("ToolResult")({
  type: Schema.Literal("tool_result"),
  ...Seq,
  tool_use_id: Schema.String,
  /** The result as text (blocks other than text are summarised). */
  content: Schema.String,
  is_error: Schema.Boolean
}) {}

/** The CLI asks whether a tool may run. Answer with `permission_decision`; unanswered it is denied after `timeout_seconds`. */
export class PermissionRequest extends Schema.Class<PermissionRequest>("PermissionRequest")({
  type: Schema.Literal("permission_request"),
  ...Seq,
  request_id: Schema.String,
  tool_name: Schema.String,
  tool_use_id: Schema.NullOr(Schema.String),
  input: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  description: Schema.NullOr(Schema.String),
  decision_reason: Schema.NullOr(Schema.String),
  /** Unix milliseconds after which the gateway denies it. */
  expires_at: Schema.Number,
  timeout_seconds: Schema.Number
}) {}

/** A permission request was answered (by a client, or by the timeout): every watcher learns it. */
export class PermissionResolved extends Schema.Class<PermissionResolved>("PermissionResolved")({
  type: Schema.Literal("permission_resolved"),
  ...Seq,
  request_id: Schema.String,
  decision: Schema.Literal("allow", "deny"),
  /** client, timeout, interrupt, ended */
  by: Schema.String,
  message: Schema.optional(Schema.String)
}) {}

/** The turn ended: the CLI's result with the turn's usage and cost, and the session's totals. */
export class TurnResult extends Schema.Class<TurnResult>("TurnResult")({
  type: Schema.Literal("result"),
  ...Seq,
  turn: Schema.Number,
  /** success, error_during_execution (e.g. interrupted), error_max_budget_usd, … */
  subtype: Schema.String,
  is_error: Schema.Boolean,
  interrupted: Schema.Boolean,
  text: Schema.NullOr(Schema.String),
  usage: SessionUsage,
  cost_usd: Schema.Number,
  total_cost_usd: Schema.Number,
  cli_session_id: Schema.String,
  duration_ms: Schema.NullOr(Schema.Number)
}) {}

export class ModelChanged extends Schema.Class<ModelChanged>("ModelChanged")({
  type: Schema.Literal("model_changed"),
  ...Seq,
  model: Schema.String
}) {}

export class PermissionModeChanged extends Schema.Class<PermissionModeChanged>("PermissionModeChanged")({
  type: Schema.Literal("permission_mode_changed"),
  ...Seq,
  mode: PermissionMode
}) {}

/**
 * Something went wrong. Sequenced (every watcher gets it): cli_error. Unsequenced, to the sender
 * only: invalid_message (a frame the schema refuses, an unknown model, a frame too large),
 * not_allowed, unknown_request, not_running, session_ended.
 */
export class ErrorEvent extends Schema.Class<ErrorEvent>("ErrorEvent")({
  type: Schema.Literal("error"),
  seq: Schema.optional(Schema.Number),
  code: Schema.String,
  message: Schema.String
}) {}

/**
 * The sequenced events: what every watcher of a session gets (and a reconnect replays). The one
 * definition of them: the WebSocket's ServerMessage and the RPC's `SessionEvents` add to it.
 */
export const SessionEventMessage = Schema.Union(
  StateChanged,
  TurnStarted,
  TextDelta,
  ThinkingDelta,
  ToolUse,
  ToolResult,
  PermissionRequest,
  PermissionResolved,
  TurnResult,
  ModelChanged,
  PermissionModeChanged,
  ErrorEvent
)
export type SessionEventMessage = typeof SessionEventMessage.Type

export const ServerMessage = Schema.Union(Hello, Pong, ...SessionEventMessage.members)
export type ServerMessage = typeof ServerMessage.Type
