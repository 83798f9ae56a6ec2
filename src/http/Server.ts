import { HttpApiBuilder, HttpApiError, HttpApiScalar, HttpMiddleware, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { HttpApi, HttpApp } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Context, Effect, FiberRef, HashMap, Layer, Option, Predicate, Redacted, type Scope } from "effect"
import * as crypto from "node:crypto"
import { createServer } from "node:http"
import { Admission } from "../services/Admission.js"
import { InvalidRequest, RouteNotFound, Unauthorized } from "../domain/errors.js"
import { ConfigError, GatewayConfig } from "../config/GatewayConfig.js"
import { ModelCatalog } from "../services/ModelCatalog.js"
import { Conversations } from "../services/Conversations.js"
import { Pool } from "../services/Pool.js"
import { ToolBridge } from "../services/ToolBridge.js"
import { healthReport } from "../services/Health.js"
import { GatewayApi } from "./Api.js"
import { anthropicErrorResponse, errorResponse, speaksAnthropic } from "./errors.js"
import { offeredKey } from "./request.js"
import { Caller, callerOf, REFUSED } from "./auth.js"
import { DirectRoutes, provideOnOwnFiber } from "./direct.js"
import { withCacheExchange } from "../services/Cache.js"
import { telemetryMiddleware } from "./telemetry.js"
import { CONSOLE_PATHS, ConsoleRoutes } from "../console/Http.js"
import { bringsTicket } from "../protocols/sessions/Socket.js"

/** /health (no API key). */
export const SystemHttp = HttpApiBuilder.group(GatewayApi, "system", (handlers) =>
  Effect.gen(function*() {
    const context = yield* Effect.context<ModelCatalog | Pool | Admission | ToolBridge | Conversations | GatewayConfig>()
    return handlers.handle("health", () =>
      Effect.map(Effect.provide(healthReport, context), ({ body, healthy }) =>
        healthy ? body : HttpServerResponse.unsafeJson(body, { status: 503 })))
  }))

const isLoopback = (host: string) => host === "localhost" || host === "::1" || host.startsWith("127.")

const internalError = HttpServerResponse.unsafeJson(
  { error: { message: "Internal gateway error.", type: "server_error", param: null, code: null } },
  { status: 500 }
)
const anthropicInternalError = HttpServerResponse.unsafeJson(
  { type: "error", error: { type: "api_error", message: "Internal gateway error." } },
  { status: 500 }
)

/** The routes whose answers the cache may serve. */
const CHAT_ROUTES = new Set(["/v1/chat/completions", "/v1/messages", "/v1/responses"])

/**
 * Request ids, API keys, the chat routes' fast path (src/http/direct.ts), and the dialect's envelope
 * (OpenAI, or Anthropic's) for anything the router itself rejects.
 */
const gatewayMiddleware = (
  apiKeys: ReadonlyArray<Redacted.Redacted>,
  open: ReadonlySet<string>,
  direct: Context.Tag.Service<DirectRoutes>,
  cacheEnabled: boolean
) => (app: HttpApp.Default): HttpApp.Default<never, Scope.Scope> =>
  // Plain combinators, and what the request's own fiber carries set on it, rather than Effect.gen,
  // `provideService` and `annotateLogs` (each of those two a FiberRef acquire/release, ~14 run-loop
  // steps): this runs for every request (bench/README.md, "Per-request CPU").
  Effect.withFiberRuntime((fiber) => {
    const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
    const requestId = request.headers["x-request-id"] || `req_${crypto.randomUUID().replaceAll("-", "")}`
    const path = request.url.split("?")[0] ?? request.url
    const offered = offeredKey(request.headers)
    const anthropic = speaksAnthropic(path, request.headers)
    const rejection = anthropic ? anthropicErrorResponse : errorResponse
    // The console's page and assets carry no data (their calls send the key). A session's WebSocket
    // may bring a ticket instead of a key (browsers): its route checks the ticket.
    const caller = callerOf(apiKeys, offered)
    const authorized = path === "/health" || open.has(path) || CONSOLE_PATHS.has(path) ||
      caller !== undefined || bringsTicket(path, request.url)
    const handler = request.method === "POST" && caller !== undefined ? direct.get(path) : undefined
    // Interruptible, as the router makes its handlers (the platform runs the app uninterruptibly): a
    // client that goes away interrupts its turn.
    const served: HttpApp.Default<never, Scope.Scope> = handler === undefined || caller === undefined
      ? app
      : provideOnOwnFiber(Caller, caller, Effect.interruptible(handler(request)))
    const cache = withCacheExchange(request.headers)
    const answer = (response: HttpServerResponse.HttpServerResponse) => {
      // `request-id` is the header Anthropic clients read (the SDK's `_request_id`).
      // Every answer of a chat-like route tells what the cache did (not consulted: bypass).
      const cacheHeader = cache.exchange.status !== undefined || CHAT_ROUTES.has(path)
        ? { "x-cache": cache.exchange.status ?? "bypass" }
        : {}
      return HttpServerResponse.setHeaders(response, {
        "x-request-id": requestId,
        ...(anthropic ? { "request-id": requestId } : {}),
        ...cacheHeader
      })
    }
    if (!authorized) return Effect.succeed(answer(rejection(new Unauthorized({ message: REFUSED }))))
    // Without a cache nothing reads the exchange (its status stays unset: "bypass").
    const run = (cacheEnabled ? cache.run(served) : served).pipe(
      Effect.catchAllCause((cause) => {
        if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure) && Predicate.isTagged(failure.value, "RouteNotFound")) {
          return Effect.succeed(rejection(new RouteNotFound({ method: request.method, path })))
        }
        // Parameters the endpoint's schema refuses (a repeated query parameter…): the client's fault.
        const decodeError: unknown = Option.getOrUndefined(failure)
        if (decodeError instanceof HttpApiError.HttpApiDecodeError) {
          const [issue] = decodeError.issues
          const param = issue === undefined ? null : issue.path.map(String).join(".") || null
          return Effect.succeed(rejection(new InvalidRequest({
            message: `Invalid value for '${param ?? "request"}': ${issue?.message ?? decodeError.message}`,
            param,
            code: "invalid_value"
          })))
        }
        return Effect.as(Effect.logError("unhandled request failure", cause), anthropic ? anthropicInternalError : internalError)
      })
    )
    // The request id on every log line of the request (its fiber ends with it: nothing to restore).
    return Effect.zipRight(
      FiberRef.update(FiberRef.currentLogAnnotations, HashMap.set("request_id", requestId as unknown)),
      Effect.map(run, answer)
    )
  })

/**
 * Serve the HttpApi and the RPC routes on the configured host and port, behind request ids, API
 * keys, CORS and the per-dialect error envelopes; drain on shutdown. Refuses an open bind without
 * API keys. The wiring of what it serves is in src/Gateway.ts.
 */
export const serve = <EA, RA, ER, RR, ED, RD>(routes: {
  readonly api: Layer.Layer<HttpApi.Api, EA, RA>
  readonly rpc: Layer.Layer<never, ER, RR>
  readonly direct: Layer.Layer<DirectRoutes, ED, RD>
}) => Layer.unwrapEffect(
  Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const { host, port, api_keys, allow_unauthenticated_remote } = config.server
    if (!isLoopback(host) && api_keys.length === 0 && !allow_unauthenticated_remote) {
      return yield* new ConfigError({
        message: `server.host = ${host} is not a loopback address and server.api_keys is empty: ` +
          `set API keys, or server.allow_unauthenticated_remote = true to serve it anyway`
      })
    }
    const keys = api_keys.map((key) => Redacted.make(key))
    // Routes served without a key besides /health (telemetry.metrics_public: a Prometheus scraper).
    const open = new Set(config.telemetry.metrics_public ? ["/metrics"] : [])
    const measured = telemetryMiddleware(keys, { metrics: config.telemetry.metrics_enabled, tracing: config.telemetry.otlp_endpoint !== undefined })
    const direct = yield* DirectRoutes
    const cors = config.server.cors_origins.length === 0
      ? <E, R>(app: HttpApp.Default<E, R>) => app
      : HttpMiddleware.cors({
        allowedOrigins: config.server.cors_origins.includes("*") ? () => true : config.server.cors_origins,
        allowedHeaders: ["authorization", "x-api-key", "content-type", "x-request-id", "x-conversation-id", "anthropic-version", "anthropic-beta"],
        exposedHeaders: ["x-request-id", "request-id", "x-claude-cost-usd", "x-conversation-id", "retry-after", "x-cache"]
      })
    const server = createServer()
    // Built after the app, so released before it: stop accepting, let running turns finish
    // (up to the grace period), then the layers below kill every CLI.
    const drain = Layer.scopedDiscard(Effect.gen(function*() {
      const admission = yield* Admission
      yield* HttpServer.HttpServer
      yield* Effect.addFinalizer(() =>
        Effect.logInfo("draining: refusing new requests").pipe(
          Effect.zipRight(Effect.sync(() => {
            server.close()
            server.closeIdleConnections()
          })),
          Effect.zipRight(admission.drain)
        )
      )
    })).pipe(Layer.provide(Admission.Default))
    return HttpApiBuilder.serve().pipe(
      // The request's span is telemetryMiddleware's (fewer attributes, and none when nothing exports spans).
      HttpMiddleware.withTracerDisabledWhen(() => true),
      // API-level middleware: it wraps the router, so it sees RouteNotFound before the default 404.
      // CORS outermost: a preflight carries no API key and matches no route.
      Layer.provide(HttpApiBuilder.middleware((app) => measured(cors(gatewayMiddleware(keys, open, direct, config.cache.enabled)(app))))),
      Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
      // No font requests to Scalar's CDN: the page works offline and tells no third party who reads it.
      Layer.provide(HttpApiScalar.layer({ path: "/docs", scalar: { withDefaultFonts: false } })),
      Layer.provide(ConsoleRoutes),
      Layer.provide(routes.rpc),
      Layer.provide(routes.api),
      HttpServer.withLogAddress,
      // Merged so that embedding apps and tests can read the bound address.
      Layer.merge(drain),
      Layer.provideMerge(NodeHttpServer.layer(() => server, { host, port }))
    )
  })
).pipe(Layer.provide(routes.direct))
