import { HttpApiBuilder, HttpRouter, HttpServerRequest, HttpServerResponse, Socket } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import type { Duplex } from "node:stream"
import { Effect, Either, Queue, Redacted, Schema } from "effect"
import { GatewayConfig } from "../../config/GatewayConfig.js"
import { InvalidRequest, RouteNotFound, Unauthorized } from "../../domain/errors.js"
import { callerOf, REFUSED } from "../../http/auth.js"
import { errorResponse } from "../../http/errors.js"
import { offeredKey } from "../../http/request.js"
import { ModelCatalog } from "../../services/ModelCatalog.js"
import { type Delivery, type SessionEvent, Sessions } from "../../services/Sessions.js"
import { ClientMessageJson, ErrorEvent, ServerMessage } from "./Messages.js"
import { sessionErrorResponse } from "./Http.js"

/**
 * GET /v1/sessions/{id}/ws: a session's WebSocket. Authenticated by the API key headers, or by a
 * single-use ticket in the query (browsers cannot set headers on a WebSocket); `after=N` replays
 * the events after seq N. Every check is made before the upgrade, so a refusal is an HTTP status.
 */

const SOCKET_PATH = /^\/v1\/sessions\/[^/]+\/ws$/

/** A socket request that brings a ticket instead of a key: the route checks the ticket (the server's key check lets it pass). */
export const bringsTicket = (path: string, url: string): boolean =>
  SOCKET_PATH.test(path) && new URLSearchParams(url.split("?")[1] ?? "").has("ticket")

const encodeServer = Schema.encodeSync(ServerMessage)

/** Client frames waiting to be handled; one more closes the socket (1008). */
const INBOUND_FRAMES = 64

/** The Node socket under a WebSocket request (undefined on another platform: then no pacing). */
const outgoingOf = (request: HttpServerRequest.HttpServerRequest): Duplex | undefined => {
  try {
    return NodeHttpServerRequest.toIncomingMessage(request).socket
  } catch {
    return undefined
  }
}

/** Waits until the socket has taken what was written before (its buffer drained), or closed. */
const drained = (wire: Duplex | undefined): Effect.Effect<void> =>
  wire === undefined || !wire.writableNeedDrain || wire.destroyed
    ? Effect.void
    : Effect.async<void>((resume) => {
      const done = () => {
        wire.off("drain", done)
        wire.off("close", done)
        resume(Effect.void)
      }
      wire.on("drain", done)
      wire.on("close", done)
      return Effect.sync(() => {
        wire.off("drain", done)
        wire.off("close", done)
      })
    })
const decodeClient = Schema.decodeUnknownEither(ClientMessageJson)
const text = new TextDecoder()

export const SessionSocketLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions
    const catalog = yield* ModelCatalog
    const { config } = yield* GatewayConfig
    const keys = config.server.api_keys.map((key) => Redacted.make(key))

    yield* router.get(
      "/v1/sessions/:id/ws",
      Effect.scoped(Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const path = request.url.split("?")[0] ?? request.url
        if (!config.sessions.enabled) return errorResponse(new RouteNotFound({ method: "GET", path }))
        const id = (yield* HttpRouter.params).id ?? ""
        const query = new URLSearchParams(request.url.split("?")[1] ?? "")
        const ticket = query.get("ticket")
        // The request is checked before a single-use ticket is spent on it.
        const afterParam = query.get("after")
        const after = afterParam === null ? undefined : Number(afterParam)
        if (after !== undefined && !(Number.isSafeInteger(after) && after >= 0)) {
          return errorResponse(new InvalidRequest({ message: "Invalid value for 'after': expected a non-negative integer (a seq).", param: "after", code: "invalid_value" }))
        }
        if ((request.headers["upgrade"] ?? "").toLowerCase() !== "websocket") {
          return errorResponse(new InvalidRequest({ message: "This endpoint is a WebSocket: send an upgrade request.", param: null, code: "websocket_required" }))
        }
        const owner = ticket !== null ? yield* sessions.redeem(id, ticket) : callerOf(keys, offeredKey(request.headers))?.owner
        if (owner === undefined) return errorResponse(new Unauthorized({ message: ticket !== null ? "The ticket is unknown, used or expired: get a new one with POST /v1/sessions/{id}/ticket." : REFUSED }))
        const attached = yield* Effect.either(sessions.attach(id, owner, after))
        if (Either.isLeft(attached)) return sessionErrorResponse(attached.left)
        const attachment = attached.right

        const socket = yield* Effect.orDie(request.upgrade)
        const scope = yield* Effect.scope
        const write = yield* socket.writer
        const send = (message: ServerMessage) => Effect.ignore(write(JSON.stringify(encodeServer(message))))
        const closeWith = (code: number, reason: string) => Effect.ignore(write(new Socket.CloseEvent(code, reason)))
        const ended = (delivery: SessionEvent) => delivery.type === "state" && delivery.state === "ended"
        // The connection under the WebSocket: what it holds unsent is what the client has not read.
        const wire = outgoingOf(request)

        // Live events until the session ends (then the socket closes) or the gateway shuts down.
        let lastSeq = attachment.hello.replay_from
        const deliver = (event: SessionEvent) =>
          Effect.zipRight(drained(wire), Effect.suspend(() => {
            lastSeq = event.seq ?? lastSeq
            return send(event)
          }))
        const forward = (delivery: Delivery): Effect.Effect<boolean> =>
          delivery === null
            ? Effect.as(closeWith(1001, "gateway shutting down"), false)
            : Effect.as(Effect.zipRight(deliver(delivery), ended(delivery) ? closeWith(1000, "session ended") : Effect.void), !ended(delivery))

        // A client that stops reading: events wait (the session holds them, up to its replay buffer),
        // not the socket; past that it is closed (1008) and may come back for what it missed.
        const tooSlow = Effect.suspend(() =>
          closeWith(1008, `${config.sessions.replay_buffer} events behind (sessions.replay_buffer): reconnect with ?after=${lastSeq}`)
        )

        // Writes wait for the socket to open, which running it does: hello, replay and live events start then.
        const onOpen = Effect.gen(function*() {
          yield* send(attachment.hello)
          const events = attachment.events
          if (events === undefined) return yield* closeWith(1000, "session ended")
          yield* Effect.forEach(attachment.replay, deliver, { discard: true }).pipe(
            Effect.zipRight(Queue.take(events).pipe(Effect.flatMap(forward), Effect.repeat({ while: (more) => more }))),
            Effect.raceFirst(Effect.zipRight(attachment.behind, tooSlow)),
            Effect.forkIn(scope)
          )
        })

        // Frames are handled one at a time, in order (the socket would run a fiber per frame), each
        // once the replies to the earlier ones are out; a client that sends without reading fills
        // the few places and is closed.
        const inbound = yield* Queue.bounded<string>(INBOUND_FRAMES)
        yield* Queue.take(inbound).pipe(
          Effect.zipLeft(drained(wire)),
          Effect.flatMap((frame) => {
            // Checked on receipt: the platform's WebSocket server takes no maxPayload (its ws default, 100 MiB, applies first).
            if (Buffer.byteLength(frame, "utf8") > config.server.max_body_bytes) {
              return send(new ErrorEvent({ type: "error", code: "invalid_message", message: `The message is larger than server.max_body_bytes (${config.server.max_body_bytes} bytes).` }))
            }
            const decoded = decodeClient(frame)
            if (Either.isLeft(decoded)) {
              return send(new ErrorEvent({ type: "error", code: "invalid_message", message: `Invalid message: ${decoded.left.message}` }))
            }
            const message = decoded.right
            if (message.type === "set_model") {
              return catalog.resolve(message.model).pipe(
                Effect.flatMap((model) => attachment.send({ ...message, model }, send)),
                Effect.catchAll((error) => send(new ErrorEvent({ type: "error", code: "invalid_message", message: error.message })))
              )
            }
            return attachment.send(message, send)
          }),
          Effect.forever,
          Effect.forkScoped
        )
        yield* socket.runRaw((data) => {
          if (!Queue.unsafeOffer(inbound, typeof data === "string" ? data : text.decode(data))) {
            return closeWith(1008, `more than ${INBOUND_FRAMES} messages waiting: read the replies`)
          }
        }, { onOpen }).pipe(Effect.ignore)
        return HttpServerResponse.empty()
      }))
    )
  })
)
