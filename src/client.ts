import { type Headers, Socket } from "@effect/platform"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import type { RpcGroup } from "@effect/rpc"
import { Channel, Context, Effect, Layer, Mailbox, Scope, Stream } from "effect"
import { WebSocket } from "ws"
import { GatewayRpcs } from "./protocols/rpc/Api.js"
import * as NodeHttpProtocol from "./protocols/rpc/NodeHttpProtocol.js"

/**
 * The typed client of the gateway's RPC surface (package entry `claude-code-api/client`):
 *
 *     const program = Effect.gen(function*() {
 *       const gateway = yield* GatewayClient
 *       yield* gateway.Chat({ input: "Hello" }).pipe(Stream.runForEach(Console.log))
 *     })
 *     program.pipe(Effect.provide(GatewayClient.layer({ url: "http://127.0.0.1:8080" })), Effect.runPromise)
 *
 * Requests, streamed events and errors are the server's own schemas (one shared module).
 */

export * from "./protocols/rpc/Api.js"

export interface GatewayClientOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:8080` (the client talks to `<url>/rpc`). */
  readonly url: string
  /** Sent as `Authorization: Bearer <key>` when the gateway has `server.api_keys`. */
  readonly apiKey?: string | undefined
  /**
   * `http` (default): one streamed HTTP request per call, NDJSON. `websocket`: one connection for
   * every call of the layer's lifetime (reconnected when it drops).
   */
  readonly transport?: "http" | "websocket" | undefined
}

export type GatewayClientService = RpcClient.RpcClient<RpcGroup.Rpcs<typeof GatewayRpcs>, RpcClientError>

const rpcUrl = (base: string, websocket: boolean) => {
  const url = new URL("rpc", base.endsWith("/") ? base : `${base}/`)
  if (websocket) url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
  return url.toString()
}

/** WebSocket transport; `ws` rather than the global WebSocket, because only it can send the API key header. */
const websocketProtocol = (options: GatewayClientOptions) => {
  const headers = options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }
  const constructor = Layer.succeed(
    Socket.WebSocketConstructor,
    (url, protocols) => new WebSocket(url, protocols, { headers }) as unknown as globalThis.WebSocket
  )
  // Calls fail at once while the gateway cannot be reached (or refuses the key); the socket reconnects by itself.
  return RpcClient.layerProtocolSocket().pipe(
    Layer.provide(Socket.layerWebSocket(rpcUrl(options.url, true))),
    Layer.provide([RpcSerialization.layerJson, constructor])
  )
}

type StreamCallOptions = {
  readonly asMailbox?: boolean | undefined
  readonly streamBufferSize?: number | undefined
  readonly context?: Context.Context<never> | undefined
}
type StreamCall = (payload: never, options?: StreamCallOptions) => unknown

/**
 * The Stream of a streaming call, over its mailbox as one channel (acquire in a fresh scope, read,
 * close the scope with the stream's exit) instead of RpcClient's `Stream.unwrapScoped` (scoped +
 * flatten, a concatMap layer per call): ~150 fewer run-loop steps per call (bench/rpccpu.mjs STEPS=1).
 * Ending the stream early still closes the call's scope, which interrupts the call on the server.
 */
const mailboxStream = <A, E>(acquire: Effect.Effect<Mailbox.ReadonlyMailbox<A, E>, never, Scope.Scope>): Stream.Stream<A, E> =>
  Stream.fromChannel(Channel.flatMap(Channel.fromEffect(Scope.make()), (scope) =>
    Channel.ensuringWith(
      Channel.flatMap(Channel.fromEffect(Scope.extend(acquire, scope)), Mailbox.toChannel),
      (exit) => Scope.close(scope, exit)
    )))

/** A streaming RPC method with the same signature, whose Stream is `mailboxStream`'s. */
const cheapStream = <F extends StreamCall>(call: F): F => {
  const wrapped = (payload: never, options?: StreamCallOptions) =>
    options?.asMailbox === true
      ? call(payload, options)
      : mailboxStream(call(payload, { ...options, asMailbox: true }) as Effect.Effect<Mailbox.ReadonlyMailbox<unknown, unknown>, never, Scope.Scope>)
  return wrapped as F
}

/** WebSocket: RpcClient over the socket, its streams read as `mailboxStream`s. */
const websocketClient = Effect.map(RpcClient.make(GatewayRpcs), (client): GatewayClientService => ({
  ...client,
  Chat: cheapStream(client.Chat),
  SessionEvents: cheapStream(client.SessionEvents)
}))

/**
 * HTTP (NDJSON, so that a streamed call's events arrive as the server writes them): RpcClient over
 * node:http for the plain calls, and the streaming calls read straight from their response
 * (`directStream`) unless asked for a mailbox or a buffer size, which only RpcClient's have.
 */
const httpClient = (options: GatewayClientOptions) =>
  Effect.gen(function*() {
    const transport = yield* NodeHttpProtocol.makeTransport({ url: rpcUrl(options.url, false), apiKey: options.apiKey })
    const client = yield* RpcClient.make(GatewayRpcs).pipe(Effect.provideServiceEffect(RpcClient.Protocol, NodeHttpProtocol.make(transport)))
    const direct = <F extends StreamCall>(call: F, tag: "Chat" | "SessionEvents"): F => {
      const stream = NodeHttpProtocol.directStream(transport, GatewayRpcs.requests.get(tag)!)
      const wrapped = (payload: never, options?: StreamCallOptions & { readonly headers?: Headers.Input | undefined }) =>
        options?.asMailbox === true || options?.streamBufferSize !== undefined || options?.context !== undefined
          ? cheapStream(call)(payload, options)
          : stream(payload, options)
      return wrapped as F
    }
    return {
      ...client,
      Chat: direct(client.Chat, "Chat"),
      SessionEvents: direct(client.SessionEvents, "SessionEvents")
    } satisfies GatewayClientService
  })

export class GatewayClient extends Context.Tag("claude-code-api/GatewayClient")<GatewayClient, GatewayClientService>() {
  /** A client for the layer's lifetime; its transport is closed with it. */
  static layer = (options: GatewayClientOptions): Layer.Layer<GatewayClient> =>
    options.transport === "websocket"
      ? Layer.scoped(GatewayClient, websocketClient).pipe(Layer.provide(websocketProtocol(options)))
      : Layer.scoped(GatewayClient, httpClient(options))
}
