import { FetchHttpClient, HttpClient, HttpClientRequest, Socket } from "@effect/platform"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import type { RpcGroup } from "@effect/rpc"
import { Context, Effect, Layer } from "effect"
import { WebSocket } from "ws"
import { GatewayRpcs } from "./protocols/rpc/Api.js"

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

/** HTTP transport: NDJSON, so that a streamed call's events arrive as the server writes them. */
const httpProtocol = (options: GatewayClientOptions) => {
  const { apiKey } = options
  // A refused call (401, 413, …) has no NDJSON body: without the status check it would wait forever.
  const client = Layer.effect(
    HttpClient.HttpClient,
    Effect.map(HttpClient.HttpClient, (client) =>
      HttpClient.filterStatusOk(apiKey === undefined ? client : HttpClient.mapRequest(client, HttpClientRequest.bearerToken(apiKey))))
  ).pipe(Layer.provide(FetchHttpClient.layer))
  return RpcClient.layerProtocolHttp({ url: rpcUrl(options.url, false) }).pipe(
    Layer.provide([RpcSerialization.layerNdjson, client])
  )
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

export class GatewayClient extends Context.Tag("claude-code-api/GatewayClient")<GatewayClient, GatewayClientService>() {
  /** A client for the layer's lifetime; its transport is closed with it. */
  static layer = (options: GatewayClientOptions): Layer.Layer<GatewayClient> =>
    Layer.scoped(GatewayClient, RpcClient.make(GatewayRpcs)).pipe(
      Layer.provide(options.transport === "websocket" ? websocketProtocol(options) : httpProtocol(options))
    )
}
