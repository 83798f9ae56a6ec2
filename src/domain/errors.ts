import { Schema } from "effect"

/** Request-level failures, independent of the dialect that reports them; Schema-tagged so they can cross a wire. */

/** The request is malformed or asks for something the gateway cannot honour. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String,
  /** The offending field, as a path: `messages[2].content[0].type`. */
  param: Schema.NullOr(Schema.String),
  code: Schema.NullOr(Schema.String)
}) {}

export class ModelNotFound extends Schema.TaggedError<ModelNotFound>()("ModelNotFound", { model: Schema.String, available: Schema.Array(Schema.String) }) {
  override get message() {
    return `The model '${this.model}' does not exist. Available models: ${this.available.join(", ")}`
  }
}

export class ConversationNotFound extends Schema.TaggedError<ConversationNotFound>()("ConversationNotFound", { id: Schema.String }) {
  override get message() {
    return `No conversation with id '${this.id}'.`
  }
}

/** A Responses API object that does not exist (or is not the caller's); `param` names where the id came from. */
export class ResponseNotFound extends Schema.TaggedError<ResponseNotFound>()("ResponseNotFound", { id: Schema.String, param: Schema.NullOr(Schema.String) }) {
  override get message() {
    return `Response with id '${this.id}' not found.`
  }
}

export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()("RouteNotFound", { method: Schema.String, path: Schema.String }) {
  override get message() {
    return `Unknown endpoint: ${this.method} ${this.path}`
  }
}

export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", { message: Schema.String }) {}

/** The request body is larger than `server.max_body_bytes` (413; the rest of it is not read). */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", { limit: Schema.Number }) {
  override get message() {
    return `The request body is larger than the gateway's limit of ${this.limit} bytes (server.max_body_bytes).`
  }
}

export type RequestError =
  | InvalidRequest
  | ModelNotFound
  | ConversationNotFound
  | ResponseNotFound
  | RouteNotFound
  | Unauthorized
  | PayloadTooLarge

/** No session slot: the queue is full or the wait ran out (429 with Retry-After), or the gateway is shutting down. */
export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", {
  reason: Schema.Literal("queue_full", "queue_timeout", "shutting_down"),
  retryAfterSeconds: Schema.Number
}) {
  override get message() {
    switch (this.reason) {
      case "queue_full":
        return "Too many requests are waiting for a Claude Code session; retry later."
      case "queue_timeout":
        return "No Claude Code session became free in time; retry later."
      case "shutting_down":
        return "The gateway is shutting down."
    }
  }
}
