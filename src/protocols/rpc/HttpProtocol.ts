import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { RpcSerialization, RpcServer } from "@effect/rpc"
import { constEof, RequestId, ResponseDefectEncoded } from "@effect/rpc/RpcMessage"
import type { FromClientEncoded, FromServerEncoded, RequestEncoded } from "@effect/rpc/RpcMessage"
import { Effect, Mailbox, Option, Scope } from "effect"
import type { InvalidRequest } from "../../domain/errors.js"
import { readBody } from "../../http/request.js"
import { SseReadable } from "../../http/sse.js"

/**
 * The RPC server's HTTP transport (one POST per batch of calls, NDJSON answer). The same protocol
 * as `RpcServer.makeProtocolWithHttpApp` with NDJSON, but each response line goes straight into a
 * Node Readable the platform pipes to the socket, instead of a Mailbox read by a Stream body: the
 * Stream body cost a streamed later turn ~900 run-loop steps of channel machinery, and lines
 * written while the socket is not read are joined into one write (bench/README.md, RPC rows).
 */

/**
 * A call answered without the RPC server (undefined: not this one): it writes its responses (its
 * chunks, then its Exit or a Defect) and ends; it is interrupted if the client goes away first.
 * `request.headers` are the HTTP request's followed by the call's own.
 */
export type DirectCall = (
  request: RequestEncoded,
  write: (response: FromServerEncoded) => Effect.Effect<void>
) => Effect.Effect<void> | undefined

type Client = {
  readonly write: (response: FromServerEncoded) => Effect.Effect<void>
  readonly end: Effect.Effect<void>
}

export const make = (direct: DirectCall, body: {
  /** `server.max_body_bytes`: a larger request body is answered with `tooLarge`, unread. */
  readonly maxBytes: number
  readonly tooLarge: HttpServerResponse.HttpServerResponse
  /** The answer to a body that could not be read. */
  readonly unreadable: (error: InvalidRequest) => HttpServerResponse.HttpServerResponse
}): Effect.Effect<{
  readonly protocol: RpcServer.Protocol["Type"]
  readonly httpApp: HttpApp.Default<never, Scope.Scope>
}> => Effect.gen(function*() {
  const serialization = RpcSerialization.ndjson
  const disconnects = yield* Mailbox.make<number>()
  let writeRequest!: (clientId: number, message: FromClientEncoded) => Effect.Effect<void>
  let clientId = 0
  const clients = new Map<number, Client>()
  const clientIds = new Set<number>()

  /** The answer to one request's calls (the request's text read), on the request's fiber. */
  const answer = (requestHeaders: ReadonlyArray<[string, string]>, data: string, scope: Scope.Scope): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
    const parser = serialization.unsafeMake()
    const body = new SseReadable()
    let ended = false
    const send = (response: FromServerEncoded) => {
      let text: string | undefined
      try {
        text = parser.encode(response) as string | undefined
      } catch (cause) {
        text = parser.encode(ResponseDefectEncoded(cause)) as string
      }
      if (text !== undefined) body.send(text)
    }
    const write = (response: FromServerEncoded) => Effect.sync(() => send(response))
    const respond = HttpServerResponse.raw(body, { contentType: serialization.contentType })

    let decoded: ReadonlyArray<FromClientEncoded>
    try {
      decoded = parser.decode(data) as ReadonlyArray<FromClientEncoded>
    } catch (cause) {
      send(ResponseDefectEncoded(cause))
      body.close()
      return Effect.succeed(respond)
    }
    // One call alone in its request, which has a direct path: no RPC server client, fiber or routing.
    const only = decoded.length === 1 ? decoded[0]! : undefined
    if (only?._tag === "Request") {
      const call = direct({ ...only, headers: requestHeaders.concat(only.headers) }, write)
      if (call !== undefined) {
        // Forked in the request's scope: a client that goes away interrupts the call. The request's
        // fiber yields once, so that the call runs to its first wait (its input written to the CLI)
        // before the platform starts on the response (~0.3 ms of the turn's path, bench/README.md).
        return Effect.as(Effect.zipRight(Effect.forkIn(Effect.ensuring(call, Effect.sync(() => body.close())), scope), Effect.yieldNow()), respond)
      }
    }

    const id = clientId++
    const client: Client = {
      write,
      end: Effect.sync(() => {
        ended = true
        body.close()
      })
    }
    clientIds.add(id)
    clients.set(id, client)

    const requestIds: Array<RequestId> = []
    // The client went away before the answer's end: its calls are interrupted (their turns end).
    const finalizer = Scope.addFinalizer(scope, Effect.suspend(() => {
      clientIds.delete(id)
      clients.delete(id)
      disconnects.unsafeOffer(id)
      if (ended) return Effect.void
      body.destroy()
      return Effect.forEach(requestIds, (requestId) => writeRequest(id, { _tag: "Interrupt", requestId: String(requestId) }), { discard: true })
    }))
    const messages = Effect.forEach(decoded, (message) => {
      if (message._tag === "Request") {
        requestIds.push(RequestId(message.id))
        ;(message as { headers: ReadonlyArray<[string, string]> }).headers = requestHeaders.concat(message.headers)
      }
      return writeRequest(id, message)
    }, { discard: true })
    return Effect.zipRight(finalizer, Effect.zipRight(messages, Effect.as(writeRequest(id, constEof), respond)))
  }

  // The body is read like the chat routes' (at most maxBytes), not through `request.text` under
  // `withMaxBodySize`: ~25 fewer run-loop steps per call (two acquire/release regions and a `locally`).
  const httpApp: HttpApp.Default<never, Scope.Scope> = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.matchEffect(readBody(request, body.maxBytes), {
      onFailure: (error) => Effect.succeed(error._tag === "PayloadTooLarge" ? body.tooLarge : body.unreadable(error)),
      onSuccess: (bytes) => Effect.flatMap(Effect.scope, (scope) => answer(Object.entries(request.headers), bytes.toString("utf8"), scope))
    })).pipe(Effect.interruptible, Effect.withUnhandledErrorLogLevel(Option.none()))

  const protocol = yield* RpcServer.Protocol.make((writeRequest_) => {
    writeRequest = writeRequest_
    return Effect.succeed({
      disconnects,
      send: (id, response) => clients.get(id)?.write(response) ?? Effect.void,
      end: (id) => clients.get(id)?.end ?? Effect.void,
      clientIds: Effect.sync(() => clientIds),
      initialMessage: Effect.succeedNone,
      supportsAck: false,
      supportsTransferables: false,
      supportsSpanPropagation: false
    })
  })
  return { protocol, httpApp } as const
})
