import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Either } from "effect"
import { GatewayConfig } from "../../config/GatewayConfig.js"
import { RouteNotFound } from "../../domain/errors.js"
import { GatewayApi } from "../../http/Api.js"
import { Caller } from "../../http/auth.js"
import { errorResponse, recover } from "../../http/errors.js"
import { decodeBody, readJson } from "../../http/request.js"
import { ModelCatalog } from "../../services/ModelCatalog.js"
import { SessionLimitReached, SessionNotFound, Sessions } from "../../services/Sessions.js"
import { CreateSession } from "./Messages.js"
import { SESSION_RETRY_AFTER_SECONDS, sessionSettings } from "./settings.js"

const noRetry = { "x-should-retry": "false" }

/** Session errors in the OpenAI envelope: another key's session is as unknown as a missing one (404, never 403). */
export const sessionErrorResponse = (error: SessionNotFound | SessionLimitReached) =>
  error._tag === "SessionNotFound"
    ? HttpServerResponse.unsafeJson(
      { error: { message: error.message, type: "invalid_request_error", param: "id", code: "session_not_found" } },
      { status: 404, headers: noRetry }
    )
    : HttpServerResponse.unsafeJson(
      { error: { message: error.message, type: "rate_limit_error", param: null, code: "too_many_sessions" } },
      { status: 429, headers: error.scope === "total" ? { "retry-after": String(SESSION_RETRY_AFTER_SECONDS) } : noRetry }
    )

export const SessionsHttp = HttpApiBuilder.group(GatewayApi, "sessions", (handlers) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions
    const catalog = yield* ModelCatalog
    const { config } = yield* GatewayConfig
    const limits = config.sessions

    /** Everything a session may do stays within config: mode, tools, budget, directory. */
    const settingsOf = (body: typeof CreateSession.Type) => sessionSettings(body, config, catalog)

    /** Off: the routes do not exist. */
    const enabled = <A, E, R>(method: string, path: string, effect: Effect.Effect<A, E, R>) =>
      limits.enabled ? effect : Effect.succeed(errorResponse(new RouteNotFound({ method, path })))

    const answer = <E, R>(effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E | SessionNotFound | SessionLimitReached, R>) =>
      Effect.catchIf(
        effect,
        (error): error is SessionNotFound | SessionLimitReached =>
          error instanceof SessionNotFound || error instanceof SessionLimitReached,
        (error) => Effect.succeed(sessionErrorResponse(error))
      ) as Effect.Effect<HttpServerResponse.HttpServerResponse, Exclude<E, SessionNotFound | SessionLimitReached>, R>

    return handlers
      .handleRaw("createSession", ({ request }) =>
        enabled("POST", "/v1/sessions", recover(answer(Effect.gen(function*() {
          const body = yield* Either.match(decodeBody(CreateSession, yield* readJson(request, config.server.max_body_bytes)), {
            onLeft: Effect.fail,
            onRight: Effect.succeed
          })
          const settings = yield* settingsOf(body)
          const session = yield* sessions.create({ owner: (yield* Caller).owner, settings })
          return HttpServerResponse.unsafeJson(session, { status: 201 })
        })))))
      .handle("listSessions", () =>
        enabled("GET", "/v1/sessions", Effect.gen(function*() {
          const data = yield* sessions.list((yield* Caller).owner)
          return HttpServerResponse.unsafeJson({ object: "list", data })
        })))
      .handle("retrieveSession", ({ path: { id } }) =>
        enabled("GET", `/v1/sessions/${id}`, answer(Effect.gen(function*() {
          return HttpServerResponse.unsafeJson(yield* sessions.get(id, (yield* Caller).owner))
        }))))
      .handle("deleteSession", ({ path: { id } }) =>
        enabled("DELETE", `/v1/sessions/${id}`, answer(Effect.gen(function*() {
          yield* sessions.remove(id, (yield* Caller).owner)
          return HttpServerResponse.unsafeJson({ id, object: "session.deleted", deleted: true })
        }))))
      .handle("createSessionTicket", ({ path: { id } }) =>
        enabled("POST", `/v1/sessions/${id}/ticket`, answer(Effect.gen(function*() {
          const { expiresAt, ticket } = yield* sessions.ticket(id, (yield* Caller).owner)
          return HttpServerResponse.unsafeJson({
            object: "session.ticket",
            ticket,
            expires_at: expiresAt,
            websocket_url: `/v1/sessions/${id}/ws?ticket=${ticket}`
          }, { status: 201 })
        }))))
  }))
