import type { RpcGroup } from "@effect/rpc"
import { Effect, Stream } from "effect"
import { GatewayConfig } from "../../config/GatewayConfig.js"
import { ModelCatalog } from "../../services/ModelCatalog.js"
import {
  type SessionEvent as DomainSessionEvent,
  SessionLimitReached as DomainSessionLimitReached,
  SessionNotFound as DomainSessionNotFound,
  Sessions
} from "../../services/Sessions.js"
import { Telemetry } from "../../services/Telemetry.js"
import {
  type ClientMessage,
  type ErrorEvent,
  Interrupt,
  PermissionDecision,
  SetModel,
  SetPermissionMode,
  UserMessage
} from "../sessions/Messages.js"
import { SESSION_RETRY_AFTER_SECONDS, sessionSettings } from "../sessions/settings.js"
import { Caller, type GatewayRpcs, InvalidRequest, SessionLimitReached, SessionNotFound, SessionRefused, type SessionEvent } from "./Api.js"
import { toWireError } from "./translate.js"

/**
 * The RPC handlers for stats and sessions: the same service calls, checks and owner rules as
 * GET /stats and /v1/sessions (with its WebSocket), the refusals as typed errors.
 */

const limitError = (error: DomainSessionLimitReached) =>
  new SessionLimitReached({
    scope: error.scope,
    limit: error.limit,
    retryAfterSeconds: error.scope === "total" ? SESSION_RETRY_AFTER_SECONDS : null,
    message: error.message
  })

const notFound = (error: DomainSessionNotFound) => new SessionNotFound({ id: error.id, message: error.message })

/** What a socket client would get as an `error` frame, as the call's failure. */
const refusalError = (refusal: ErrorEvent) => {
  switch (refusal.code) {
    case "unknown_request":
      return new InvalidRequest({ message: refusal.message, param: "request_id", code: refusal.code })
    case "not_allowed":
      return new InvalidRequest({ message: refusal.message, param: "mode", code: refusal.code })
    default:
      return new SessionRefused({ code: refusal.code, message: refusal.message })
  }
}

type Calls = "GetStats" | "CreateSession" | "ListSessions" | "GetSession" | "DeleteSession" | "SessionEvents" | "SessionSend" | "SessionInterrupt" | "SessionPermission" | "SessionSetModel" | "SessionSetPermissionMode"
type Handlers = Pick<RpcGroup.HandlersFrom<RpcGroup.Rpcs<typeof GatewayRpcs>>, Calls>

const isEnd = (event: DomainSessionEvent) => event.type === "state" && event.state === "ended"

export const sessionHandlers = Effect.gen(function*() {
  const sessions = yield* Sessions
  const telemetry = yield* Telemetry
  const catalog = yield* ModelCatalog
  const { config } = yield* GatewayConfig

  /** `sessions.enabled` off: the calls are refused (the HTTP routes answer 404). */
  const enabled = config.sessions.enabled
    ? Effect.void
    : Effect.fail(new InvalidRequest({ message: "Sessions are disabled on this gateway (sessions.enabled).", param: null, code: "sessions_disabled" }))

  /** The caller's owner, once sessions are known to be on. */
  const owner = Effect.zipRight(enabled, Effect.map(Caller, (caller) => caller.owner))

  const deliver = (id: string, message: ClientMessage) =>
    Effect.gen(function*() {
      const refusal = yield* sessions.send(id, yield* owner, message).pipe(Effect.mapError(notFound))
      if (refusal !== undefined) return yield* refusalError(refusal)
    })

  return {
    GetStats: () => telemetry.stats,

    CreateSession: (payload) =>
      Effect.gen(function*() {
        const caller = yield* owner
        const settings = yield* sessionSettings(payload, config, catalog).pipe(Effect.mapError(toWireError))
        return yield* sessions.create({ owner: caller, settings }).pipe(Effect.mapError(limitError))
      }),

    ListSessions: () => Effect.flatMap(owner, sessions.list),

    GetSession: ({ id }) => Effect.flatMap(owner, (caller) => Effect.mapError(sessions.get(id, caller), notFound)),

    DeleteSession: ({ id }) => Effect.flatMap(owner, (caller) => Effect.mapError(sessions.remove(id, caller), notFound)),

    // The attachment (a subscriber queue) lives as long as the call's stream: cancelling the call
    // detaches this client, as closing a socket does; the session and its turn go on.
    SessionEvents: ({ after, id }) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const caller = yield* owner
        if (after !== undefined && !(Number.isSafeInteger(after) && after >= 0)) {
          return yield* new InvalidRequest({ message: "Invalid value for 'after': expected a non-negative integer (a seq).", param: "after", code: "invalid_value" })
        }
        const attachment = yield* sessions.attach(id, caller, after).pipe(Effect.mapError(notFound))
        const head = Stream.fromIterable<SessionEvent>([attachment.hello, ...attachment.replay])
        if (attachment.events === undefined) return head
        // Until the session ends (its `ended` state is the last event) or the gateway shuts down (null).
        // A caller that reads too slowly is detached (as a socket client is closed with 1008).
        const tooSlow = Effect.zipRight(
          attachment.behind,
          Effect.suspend(() =>
            new SessionRefused({
              code: "too_slow",
              message: `This stream fell ${config.sessions.replay_buffer} events behind (sessions.replay_buffer): call SessionEvents again with after = the last seq received.`
            })
          )
        )
        const live = Stream.fromQueue(attachment.events).pipe(
          Stream.takeWhile((delivery): delivery is DomainSessionEvent => delivery !== null),
          Stream.takeUntil(isEnd),
          Stream.interruptWhen(tooSlow)
        )
        const endedInReplay = attachment.replay.some(isEnd)
        return endedInReplay ? head : Stream.concat(head, live)
      })),

    SessionSend: ({ client_id, content, id }) =>
      deliver(id, new UserMessage({ type: "user_message", content, ...(client_id === undefined ? {} : { client_id }) })),

    SessionInterrupt: ({ id }) => deliver(id, new Interrupt({ type: "interrupt" })),

    SessionPermission: ({ decision, id, message, request_id, updated_input }) =>
      deliver(id, new PermissionDecision({
        type: "permission_decision",
        request_id,
        decision,
        ...(updated_input === undefined ? {} : { updated_input }),
        ...(message === undefined ? {} : { message })
      })),

    SessionSetModel: ({ id, model }) =>
      Effect.gen(function*() {
        yield* enabled
        // Checked like the socket's set_model: an unknown model never reaches the CLI.
        const resolved = yield* catalog.resolve(model).pipe(Effect.mapError(toWireError))
        yield* deliver(id, new SetModel({ type: "set_model", model: resolved }))
      }),

    SessionSetPermissionMode: ({ id, mode }) => deliver(id, new SetPermissionMode({ type: "set_permission_mode", mode }))
  } satisfies Handlers
})
