import { type Headers, Socket } from "@effect/platform"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import type { RpcGroup } from "@effect/rpc"
import { Channel, Context, Effect, Layer, Mailbox, Scope, Stream } from "effect"
import { WebSocket } from "ws"
import { GatewayRpcs } from "./protocols/rpc/Api.js"
import { directStream } from "./protocols/rpc/DirectStream.js"
import { fastChatEvent } from "./protocols/rpc/fastDecode.js"
import * as NodeHttpProtocol from "./protocols/rpc/NodeHttpProtocol.js"
import * as SocketClient from "./protocols/rpc/SocketClient.js"

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
const websocketLayer = (options: GatewayClientOptions) => {
  const headers = options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }
  const constructor = Layer.succeed(
    Socket.WebSocketConstructor,
    (url, protocols) => new WebSocket(url, protocols, { headers }) as unknown as globalThis.WebSocket
  )
  return Layer.merge(Layer.provide(Socket.layerWebSocket(rpcUrl(options.url, true)), constructor), RpcSerialization.layerJson)
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

/** A streaming method whose plain calls are `direct`'s; asked for a mailbox or a buffer size (only RpcClient has them): RpcClient's. */
const withDirect = <F extends StreamCall>(call: F, direct: (payload: never, options?: { readonly headers?: Headers.Input | undefined }) => unknown): F => {
  const wrapped = (payload: never, options?: StreamCallOptions & { readonly headers?: Headers.Input | undefined }) =>
    options?.asMailbox === true || options?.streamBufferSize !== undefined || options?.context !== undefined
      ? cheapStream(call)(payload, options)
      : direct(payload, options)
  return wrapped as F
}

const chatRpc = GatewayRpcs.requests.get("Chat")!

/**
 * WebSocket (one connection for every call; calls fail at once while the gateway cannot be reached
 * or refuses the key, and the socket reconnects by itself): RpcClient for the plain calls and
 * SessionEvents (read as a `mailboxStream`; the server acks its chunks), Chat read straight from
 * its responses on the socket (`DirectStream`).
 */
const websocketClient = Effect.gen(function*() {
  const socket = yield* SocketClient.make
  const client = yield* RpcClient.make(GatewayRpcs, { generateRequestId: socket.nextId }).pipe(
    Effect.provideService(RpcClient.Protocol, socket.protocol)
  )
  const chat = directStream(socket.start, chatRpc, { requestId: () => String(socket.nextId()), fast: fastChatEvent })
  return {
    ...client,
    Chat: withDirect(client.Chat, chat),
    SessionEvents: cheapStream(client.SessionEvents)
  } satisfies GatewayClientService
})

/**
 * HTTP (NDJSON, so that a streamed call's events arrive as the server writes them): RpcClient over
 * node:http for the plain calls, and the streaming calls read straight from their response
 * (`DirectStream`).
 */
const httpClient = (options: GatewayClientOptions) =>
  Effect.gen(function*() {
    const transport = yield* NodeHttpProtocol.makeTransport({ url: rpcUrl(options.url, false), apiKey: options.apiKey })
    const client = yield* RpcClient.make(GatewayRpcs).pipe(Effect.provideServiceEffect(RpcClient.Protocol, NodeHttpProtocol.make(transport)))
    return {
      ...client,
      Chat: withDirect(client.Chat, directStream(transport.call, chatRpc, { fast: fastChatEvent })),
      SessionEvents: withDirect(client.SessionEvents, directStream(transport.call, GatewayRpcs.requests.get("SessionEvents")!))
    } satisfies GatewayClientService
  })

export class GatewayClient extends Context.Tag("claude-code-api/GatewayClient")<GatewayClient, GatewayClientService>() {
  /** A client for the layer's lifetime; its transport is closed with it. */
  static layer = (options: GatewayClientOptions): Layer.Layer<GatewayClient> =>
    options.transport === "websocket"
      ? Layer.scoped(GatewayClient, websocketClient).pipe(Layer.provide(websocketLayer(options)))
      : Layer.scoped(GatewayClient, httpClient(options))
}
