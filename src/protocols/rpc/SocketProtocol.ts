import { HttpServerRequest, HttpServerResponse, Socket } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { RpcSerialization, RpcServer } from "@effect/rpc"
import { ResponseDefectEncoded } from "@effect/rpc/RpcMessage"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import { Effect, Fiber, Mailbox, Option, Predicate, Scope } from "effect"
import type { DirectCall } from "./HttpProtocol.js"

/**
 * The RPC server's WebSocket transport (JSON frames): `RpcServer.makeProtocolWithHttpAppWebsocket`,
 * except that the calls `direct` takes are answered without the RPC server. Those are not acked
 * chunk by chunk: RpcServer waits for the client's Ack of each chunk before it reads the next one,
 * a round trip per chunk and one more before the call's Exit (bench/README.md, RPC rows). Their
 * chunks say so (`ack: false`), and this package's client sends no Ack for them; the Acks of an
 * older client, and the interrupts of a direct call, are handled here. Its fiber ends with the socket.
 */
export const make = (direct: DirectCall): Effect.Effect<{
  readonly protocol: RpcServer.Protocol["Type"]
  readonly httpApp: HttpApp.Default<never, Scope.Scope>
}> => Effect.gen(function*() {
  const serialization = RpcSerialization.json
  const disconnects = yield* Mailbox.make<number>()
  let writeRequest!: (clientId: number, message: FromClientEncoded) => Effect.Effect<void>
  let clientId = 0
  const clients = new Map<number, (response: FromServerEncoded) => Effect.Effect<void>>()
  const clientIds = new Set<number>()

  const onSocket = (socket: Socket.Socket, headers: ReadonlyArray<[string, string]>) =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const parser = serialization.unsafeMake()
      const id = clientId++
      yield* Scope.addFinalizer(scope, Effect.suspend(() => {
        clientIds.delete(id)
        clients.delete(id)
        return disconnects.offer(id)
      }))
      const writeRaw = yield* socket.writer
      const write = (response: FromServerEncoded) => {
        try {
          const encoded = parser.encode(response)
          return encoded === undefined ? Effect.void : Effect.orDie(writeRaw(encoded))
        } catch (cause) {
          return Effect.orDie(writeRaw(parser.encode(ResponseDefectEncoded(cause))!))
        }
      }
      clientIds.add(id)
      clients.set(id, write)
      // The direct calls running on this socket, by request id (interrupted with the socket's scope).
      const calls = new Map<string, Fiber.RuntimeFiber<void>>()

      const handle = (message: FromClientEncoded): Effect.Effect<void> => {
        switch (message._tag) {
          case "Request": {
            const request = { ...message, headers: headers.concat(message.headers) }
            const call = direct(request, write)
            if (call === undefined) return writeRequest(id, request)
            return Effect.map(
              Effect.forkIn(Effect.ensuring(call, Effect.sync(() => calls.delete(message.id))), scope),
              (fiber) => {
                calls.set(message.id, fiber)
              }
            )
          }
          case "Ack":
            return calls.has(message.requestId) ? Effect.void : writeRequest(id, message)
          case "Interrupt": {
            const fiber = calls.get(message.requestId)
            return fiber === undefined ? writeRequest(id, message) : Fiber.interruptFork(fiber)
          }
          default:
            return writeRequest(id, message)
        }
      }

      yield* socket.runRaw((data) => {
        try {
          const decoded = parser.decode(data) as ReadonlyArray<FromClientEncoded>
          return decoded.length === 1 ? handle(decoded[0]!) : Effect.forEach(decoded, handle, { discard: true })
        } catch (cause) {
          if (Predicate.isTagged(cause, "RpcSerializationError")) {
            return writeRaw(new Socket.CloseEvent(1009, (cause as RpcSerialization.RpcSerializationError).message))
          }
          return writeRaw(parser.encode(ResponseDefectEncoded(cause))!)
        }
      }).pipe(
        Effect.interruptible,
        Effect.catchIf((error) => error.reason === "Close", () => Effect.void),
        Effect.orDie,
        Effect.withUnhandledErrorLogLevel(Option.none())
      )
    })

  const httpApp: HttpApp.Default<never, Scope.Scope> = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const socket = yield* Effect.orDie(request.upgrade)
    yield* onSocket(socket, Object.entries(request.headers))
    return HttpServerResponse.empty()
  })

  const protocol = yield* RpcServer.Protocol.make((writeRequest_) => {
    writeRequest = writeRequest_
    return Effect.succeed({
      disconnects,
      send: (id, response) => clients.get(id)?.(response) ?? Effect.void,
      end: () => Effect.void,
      clientIds: Effect.sync(() => clientIds),
      initialMessage: Effect.succeedNone,
      supportsAck: true,
      supportsTransferables: false,
      supportsSpanPropagation: true
    })
  })
  return { protocol, httpApp } as const
})
