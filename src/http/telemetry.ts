import { HttpApi, HttpApiBuilder, HttpServerRequest, HttpServerResponse, HttpTraceContext } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Clock, Context, Effect, Exit, FiberRef, type MetricLabel, type Redacted, Tracer } from "effect"
import type { ServerResponse } from "node:http"
import { currentRequestProbe, labelsOf, metrics, type RequestProbe, Telemetry } from "../services/Telemetry.js"
import { GatewayApi } from "./Api.js"
import { callerOf } from "./auth.js"
import { provideOnOwnFiber } from "./direct.js"
import { offeredKey } from "./request.js"

/**
 * Request metrics (count by route, method, status, model and API key; time to first byte; total
 * time) recorded in one place around every request, and the /stats and /metrics handlers.
 */

/** Route templates of the HttpApi ("/v1/conversations/:id"), so that ids never become label values. */
const routeMatcher = () => {
  const templates: Array<{ readonly template: string; readonly pattern: RegExp }> = []
  HttpApi.reflect(GatewayApi, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => {
      if (templates.some((t) => t.template === endpoint.path)) return
      const source = endpoint.path.split("/").map((part) => part.startsWith(":") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("/")
      templates.push({ template: endpoint.path, pattern: new RegExp(`^${source}$`) })
    }
  })
  const fixed = new Set(["/rpc", "/docs", "/openapi.json"])
  return (path: string) => fixed.has(path) ? path : templates.find((t) => t.pattern.test(path))?.template ?? "unmatched"
}

const pathOf = (url: string) => {
  const query = url.indexOf("?")
  return query === -1 ? url : url.slice(0, query)
}


const seconds = (since: number) => (performance.now() - since) / 1000

/** What the middleware does: request metrics, a server span per request (only when spans are exported), or both. */
export interface RequestTelemetry {
  readonly metrics: boolean
  readonly tracing: boolean
}

/**
 * Wraps the whole app (outside auth and error mapping, so refusals and 404s count too). The first
 * byte of a body is its first write to the Node response and the request's end is that response's
 * `close`: hooks on the response rather than Stream layers around every streamed body (cheaper per
 * request), and a client that goes away first (`close` before the response finished) makes a 499.
 *
 * With tracing, it makes the request's span (`http.server <METHOD>`; the platform's own span, which
 * carries every request and response header, is turned off in Server.ts): method, route, path and
 * status only, parented on an incoming W3C/B3 trace context, ended when the response is done.
 */
export const telemetryMiddleware = (apiKeys: ReadonlyArray<Redacted.Redacted>, options: RequestTelemetry = { metrics: true, tracing: false }) => {
  if (!options.metrics && !options.tracing) return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> => app
  const routeOf = routeMatcher()
  return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.withFiberRuntime((fiber) => {
      const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
      const services = fiber.currentDefaultServices
      const clock = Context.get(services, Clock.Clock)
      const started = performance.now()
      const path = pathOf(request.url)
      const route = routeOf(path)
      let probe: RequestProbe | undefined
      let routeLabels: ReadonlyArray<MetricLabel.MetricLabel> = []
      if (options.metrics) {
        // Only a valid key is named (by a short hash): anything else would let clients mint label values.
        const owner = apiKeys.length === 0 ? undefined : callerOf(apiKeys, offeredKey(request.headers))?.owner
        probe = { route, apiKey: owner?.slice(0, 12), model: undefined }
        routeLabels = labelsOf([["route", route]])
      }
      let span: Tracer.Span | undefined
      if (options.tracing) {
        // What Effect.makeSpan does, minus the annotations and links the gateway never sets on a
        // request's fiber, without its steps.
        span = Context.get(services, Tracer.Tracer).span(
          `http.server ${request.method}`,
          HttpTraceContext.fromHeaders(request.headers),
          Context.empty(),
          [],
          clock.unsafeCurrentTimeNanos(),
          "server",
          { captureStackTrace: false }
        )
        span.attribute("http.request.method", request.method)
        span.attribute("http.route", route)
        span.attribute("url.path", path)
      }
      let firstByteSeen = false
      const firstByte = () => {
        if (firstByteSeen || probe === undefined) return
        firstByteSeen = true
        metrics.httpTtfb.unsafeUpdate(seconds(started), routeLabels)
      }
      let ended = false
      const end = (status: number) => {
        if (ended) return
        ended = true
        if (probe !== undefined) {
          metrics.httpDuration.unsafeUpdate(seconds(started), routeLabels)
          metrics.httpRequests.unsafeUpdate(1, labelsOf([
            ["route", route],
            ["method", request.method],
            ["status", String(status)],
            ["model", probe.model],
            ["api_key", probe.apiKey]
          ]))
        }
        if (span !== undefined) {
          span.attribute("http.response.status_code", status)
          span.end(clock.unsafeCurrentTimeNanos(), Exit.void)
        }
      }
      // The probe and the span set on the request's own fiber (it ends with the request), not with
      // `Effect.locally` / `withParentSpan`, whose acquire/release cost every request ~14 run-loop
      // steps each (bench/README.md, "Telemetry overhead").
      let run = app
      if (span !== undefined) run = provideOnOwnFiber(Tracer.ParentSpan, span, run)
      if (probe !== undefined) run = Effect.zipRight(FiberRef.set(currentRequestProbe, probe), run)
      if (request.headers["upgrade"] !== undefined) {
        // A WebSocket: its Node response must not be made before the upgrade; the app runs as long as the socket.
        return Effect.onExit(run, (exit) => Effect.sync(() => end(Exit.isSuccess(exit) ? exit.value.status : 499)))
      }
      const response = NodeHttpServerRequest.toServerResponse(request)
      if (probe !== undefined) {
        // The first write of a streamed body (one write per chunk), then the prototype's write again.
        // A body handed over whole goes out with `end` (no `write`): its first byte is its last.
        const write = response.write
        response.write = function(this: ServerResponse, ...args: Array<unknown>) {
          response.write = write
          firstByte()
          return Reflect.apply(write, this, args) as boolean
        } as typeof write
      }
      // The status is the one written (error mapping and the platform's own included); a response
      // that did not finish means the client went away first (499).
      response.once("close", () => {
        if (!response.writableFinished) return end(499)
        firstByte()
        end(response.statusCode)
      })
      return run
    })
}

/** /stats (JSON) and /metrics (Prometheus text). */
export const TelemetryHttp = HttpApiBuilder.group(GatewayApi, "telemetry", (handlers) =>
  Effect.gen(function*() {
    const telemetry = yield* Telemetry
    return handlers
      .handle("stats", () => telemetry.stats)
      .handleRaw("metrics", () =>
        Effect.map(telemetry.prometheus, (text) =>
          HttpServerResponse.text(text, { contentType: "text/plain; version=0.0.4; charset=utf-8" })))
  }))
