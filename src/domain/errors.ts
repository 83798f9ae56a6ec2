import { Data } from "effect"

/** Request-level failures, independent of the dialect that reports them. */

/** The request is malformed or asks for something the gateway cannot honour. */
export class InvalidRequest extends Data.TaggedError("InvalidRequest")<{
  readonly message: string
  /** The offending field, as a path: `messages[2].content[0].type`. */
  readonly param: string | null
  readonly code: string | null
}> {}

export class ModelNotFound extends Data.TaggedError("ModelNotFound")<{
  readonly model: string
  readonly available: ReadonlyArray<string>
}> {
  override get message() {
    return `The model '${this.model}' does not exist. Available models: ${this.available.join(", ")}`
  }
}

export class ConversationNotFound extends Data.TaggedError("ConversationNotFound")<{ readonly id: string }> {
  override get message() {
    return `No conversation with id '${this.id}'.`
  }
}

export class RouteNotFound extends Data.TaggedError("RouteNotFound")<{
  readonly method: string
  readonly path: string
}> {
  override get message() {
    return `Unknown endpoint: ${this.method} ${this.path}`
  }
}

export class Unauthorized extends Data.TaggedError("Unauthorized")<{ readonly message: string }> {}

/** The request body is larger than `server.max_body_bytes` (413; the rest of it is not read). */
export class PayloadTooLarge extends Data.TaggedError("PayloadTooLarge")<{ readonly limit: number }> {
  override get message() {
    return `The request body is larger than the gateway's limit of ${this.limit} bytes (server.max_body_bytes).`
  }
}

export type RequestError = InvalidRequest | ModelNotFound | ConversationNotFound | RouteNotFound | Unauthorized | PayloadTooLarge
