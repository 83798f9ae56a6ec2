import { HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import type { Overloaded } from "../services/Admission.js"
import type { CliError } from "../cli/CliErrors.js"
import type { ControlRequestFailed } from "../cli/CliErrors.js"
import type { RequestError } from "../domain/errors.js"
import type { ErrorBody } from "../protocols/openai/Schema.js"
import type { TurnFailed, UpstreamError } from "../domain/Turn.js"

/**
 * The one place where gateway errors become HTTP statuses and OpenAI error envelopes
 * (`{"error":{"message","type","param","code"}}`). Upstream failures keep their meaning.
 */

export type GatewayError = RequestError | CliError | ControlRequestFailed | UpstreamError | TurnFailed | Overloaded

export interface HttpError {
  readonly status: number
  readonly body: ErrorBody
  readonly headers: Readonly<Record<string, string>>
}

const make = (
  status: number,
  type: string,
  code: string | null,
  message: string,
  options: { readonly param?: string | null; readonly headers?: Record<string, string> } = {}
): HttpError => ({
  status,
  body: { error: { message, type, param: options.param ?? null, code } },
  headers: options.headers ?? {}
})

// openai-node retries 408/409/429/5xx unless told otherwise: every error a retry cannot fix says so
// (SDKs and proxies that retry more than openai-node are told as well).
const noRetry = { "x-should-retry": "false" }

const upstream = (error: UpstreamError): HttpError => {
  const message = `Upstream error reported by the Claude Code CLI: ${error.message}`
  switch (error.status) {
    case 429:
      return make(429, "rate_limit_error", "rate_limit_exceeded", message, { headers: { "retry-after": "5" } })
    case 503:
    case 529:
      return make(503, "service_unavailable_error", "overloaded", message, { headers: { "retry-after": "5" } })
    case 401:
    case 403:
      return make(
        502,
        "upstream_authentication_error",
        "upstream_authentication_failed",
        `${message} (the CLI is not authenticated upstream: log it in with \`claude /login\` or set ANTHROPIC_API_KEY for the gateway)`,
        { headers: noRetry }
      )
    case 400:
    case 413:
      return make(400, "invalid_request_error", "upstream_rejected_request", message, { headers: noRetry })
    case 404:
      return make(404, "invalid_request_error", "model_not_found", message, { headers: noRetry })
    case null:
      return /timed out/i.test(error.message)
        ? make(504, "timeout_error", "upstream_timeout", message)
        : make(502, "upstream_error", "upstream_bad_response", message)
    default:
      return make(502, "upstream_error", error.errorType ?? "upstream_error", message)
  }
}

export const toHttpError = (error: GatewayError): HttpError => {
  switch (error._tag) {
    case "InvalidRequest":
      return make(400, "invalid_request_error", error.code, error.message, { param: error.param, headers: noRetry })
    case "ModelNotFound":
      return make(404, "invalid_request_error", "model_not_found", error.message, { param: "model", headers: noRetry })
    case "ConversationNotFound":
      return make(404, "invalid_request_error", "conversation_not_found", error.message, { param: "conversation_id", headers: noRetry })
    case "ResponseNotFound":
      return make(404, "invalid_request_error", "response_not_found", error.message, { param: error.param, headers: noRetry })
    case "RouteNotFound":
      return make(404, "invalid_request_error", "unknown_url", error.message, { headers: noRetry })
    case "Unauthorized":
      return make(401, "invalid_request_error", "invalid_api_key", error.message, { headers: noRetry })
    case "PayloadTooLarge":
      // The rest of the body is not read: the connection cannot serve another request.
      return make(413, "invalid_request_error", "request_too_large", error.message, { headers: { ...noRetry, connection: "close" } })
    case "UpstreamError":
      return upstream(error)
    case "Overloaded":
      return error.reason === "shutting_down"
        ? make(503, "service_unavailable_error", "shutting_down", error.message, {
          headers: { "retry-after": String(error.retryAfterSeconds) }
        })
        : make(429, "rate_limit_error", error.reason, error.message, {
          headers: { "retry-after": String(error.retryAfterSeconds) }
        })
    case "TurnFailed":
      // The CLI's own verdict on the turn (budget, turns, structured output): the same request ends the same way.
      return make(500, "server_error", error.subtype, `The Claude Code CLI ended the turn with an error: ${error.message}`, { headers: noRetry })
    case "CliNotFound":
    case "CliSpawnFailed":
      return make(503, "service_unavailable_error", "cli_unavailable", error.message, { headers: noRetry })
    case "CliExited":
      return make(502, "upstream_error", "cli_exited", error.message)
    case "CliProtocolError":
    case "ControlRequestFailed":
      return make(502, "upstream_error", "cli_protocol_error", error.message, { headers: noRetry })
    case "CliTimeout":
      return make(504, "timeout_error", "timeout", error.message, { headers: noRetry })
  }
}

export const errorResponse = (error: GatewayError): HttpServerResponse.HttpServerResponse => {
  const http = toHttpError(error)
  return HttpServerResponse.unsafeJson(http.body, { status: http.status, headers: http.headers })
}

/** Handlers answer their failures themselves, in the OpenAI envelope. */
export const recover = <A, R>(effect: Effect.Effect<A | HttpServerResponse.HttpServerResponse, GatewayError, R>) =>
  Effect.catchAll(effect, (error) => Effect.succeed(errorResponse(error)))

// ---------------------------------------------------------------------------------------------
// The Anthropic dialect: the same status decision (toHttpError), Anthropic's envelope and types.

export interface AnthropicErrorBody {
  readonly type: "error"
  readonly error: { readonly type: string; readonly message: string }
}

/** Anthropic's error type for a status (docs.claude.com/en/api/errors; the SDK's ErrorType). */
const anthropicType = (status: number): string => {
  switch (status) {
    case 400:
      return "invalid_request_error"
    case 401:
      return "authentication_error"
    case 403:
      return "permission_error"
    case 404:
      return "not_found_error"
    case 413:
      return "request_too_large"
    case 429:
      return "rate_limit_error"
    case 503:
    case 529:
      return "overloaded_error"
    case 504:
      return "timeout_error"
    default:
      return "api_error"
  }
}

export const toAnthropicError = (error: GatewayError): { readonly status: number; readonly body: AnthropicErrorBody; readonly headers: Readonly<Record<string, string>> } => {
  const http = toHttpError(error)
  return {
    status: http.status,
    body: { type: "error", error: { type: anthropicType(http.status), message: http.body.error.message } },
    headers: http.headers
  }
}

export const anthropicErrorResponse = (error: GatewayError): HttpServerResponse.HttpServerResponse => {
  const http = toAnthropicError(error)
  return HttpServerResponse.unsafeJson(http.body, { status: http.status, headers: http.headers })
}

/** Handlers of Anthropic routes answer their failures themselves, in Anthropic's envelope. */
export const recoverAnthropic = <A, R>(effect: Effect.Effect<A | HttpServerResponse.HttpServerResponse, GatewayError, R>) =>
  Effect.catchAll(effect, (error) => Effect.succeed(anthropicErrorResponse(error)))

/**
 * Which envelope a request's errors use when the router or middleware answers it: Anthropic's on
 * /v1/messages*, and on /v1/models* when the client speaks Anthropic (sends `anthropic-version`).
 */
export const speaksAnthropic = (path: string, headers: Readonly<Record<string, string | undefined>>): boolean =>
  path.startsWith("/v1/messages") || (path.startsWith("/v1/models") && headers["anthropic-version"] !== undefined)
