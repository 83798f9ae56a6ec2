import { HttpApiBuilder } from "@effect/platform"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { CliProcess } from "./cli/CliProcess.js"
import { GatewayConfig } from "./config/GatewayConfig.js"
import { GatewayApi } from "./http/Api.js"
import { AuthorizationLive } from "./http/auth.js"
import { serve, SystemHttp } from "./http/Server.js"
import { type DirectHandler, DirectRoutes } from "./http/direct.js"
import { AnthropicHttp, messages } from "./protocols/anthropic/Http.js"
import { ConversationsHttp } from "./protocols/conversations/Http.js"
import { chatCompletions, OpenAIHttp } from "./protocols/openai/Http.js"
import { createResponse, ResponsesHttp } from "./protocols/responses/Http.js"
import { RpcApps, RpcAppsLive, RpcLive } from "./protocols/rpc/Http.js"
import { SessionsHttp } from "./protocols/sessions/Http.js"
import { SessionSocketLive } from "./protocols/sessions/Socket.js"
import { Admission } from "./services/Admission.js"
import { Cache } from "./services/Cache.js"
import { ChatService } from "./services/ChatService.js"
import { Conversations } from "./services/Conversations.js"
import { ImageFetcher } from "./services/ImageFetcher.js"
import { ModelCatalog } from "./services/ModelCatalog.js"
import { Pool } from "./services/Pool.js"
import { Sessions } from "./services/Sessions.js"
import { ToolBridge } from "./services/ToolBridge.js"
import { ResponseStore } from "./store/ResponseStore.js"
import { TokenCounter } from "./services/TokenCounter.js"
import { TelemetryHttp } from "./http/telemetry.js"
import { CacheStatsSource, Telemetry } from "./services/Telemetry.js"
import { TracingLive } from "./services/Tracing.js"

/**
 * The one wiring of the gateway's layers. Each service is an Effect.Service with its own
 * dependencies (and DefaultWithoutDependencies to replace them); everything needs GatewayConfig.
 */

/** The answer cache's figures, for /stats. */
const CacheFiguresLive = Layer.effect(CacheStatsSource, Effect.map(Cache, (cache) => cache.stats)).pipe(Layer.provide(Cache.Default))

/** The gateway's services, for Effect apps that embed them without the HTTP server. */
export const GatewayServices = Layer.mergeAll(
  ChatService.Default,
  CliProcess.Default,
  ModelCatalog.Default,
  Pool.Default,
  Admission.Default,
  ImageFetcher.Default,
  ToolBridge.Default,
  Conversations.Default,
  ResponseStore.Default,
  TokenCounter.Default,
  Cache.Default,
  Telemetry.Default.pipe(Layer.provide(CacheFiguresLive)),
  Sessions.Default
)

/** The HttpApi (every dialect's endpoints and /health) with its handlers and API-key middleware. */
export const ApiLive = HttpApiBuilder.api(GatewayApi).pipe(
  Layer.provide([OpenAIHttp, ResponsesHttp, AnthropicHttp, ConversationsHttp, SystemHttp, TelemetryHttp, SessionsHttp]),
  Layer.provide(AuthorizationLive),
  Layer.provide(GatewayServices)
)

/** /rpc's transports and RPC servers: one of each, shared by the fast path and the router. */
const RpcAppsWired = RpcAppsLive.pipe(Layer.provide(GatewayServices))

/** The chat routes' and `POST /rpc`'s handlers, for the server's fast path past the HttpApi router (src/http/direct.ts). */
const DirectRoutesLive = Layer.effect(
  DirectRoutes,
  Effect.gen(function*() {
    const rpc = yield* RpcApps
    return new Map<string, DirectHandler>([
      ["/v1/chat/completions", yield* chatCompletions],
      ["/v1/messages", yield* messages],
      ["/v1/responses", yield* createResponse],
      ["/rpc", () => rpc.http]
    ])
  })
).pipe(Layer.provide(Layer.merge(GatewayServices, RpcAppsWired)))

/** The HTTP server: the HttpApi, /rpc, /docs and /openapi.json on the configured address. */
export const ServerLive = serve({
  api: ApiLive,
  direct: DirectRoutesLive,
  // Plain routes next to the HttpApi: /rpc and the sessions' WebSocket.
  rpc: Layer.merge(RpcLive.pipe(Layer.provide(RpcAppsWired)), SessionSocketLive).pipe(Layer.provide(GatewayServices))
})


const levels = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  none: LogLevel.None
} as const

/** The whole gateway: HTTP server, services and logging, configured by GatewayConfig. */
export const GatewayLive = Layer.unwrapEffect(
  Effect.map(GatewayConfig, ({ config }) =>
    ServerLive.pipe(Layer.provide(Logger.minimumLogLevel(levels[config.log.level])), Layer.provide(TracingLive)))
)
