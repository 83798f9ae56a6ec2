import { HttpApi, HttpApiBuilder, HttpBody, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { Effect, Exit, MetricLabel, Redacted, Stream } from "effect"
import { currentRequestProbe, metrics, type RequestProbe, Telemetry } from "../services/Telemetry.js"
import { GatewayApi } from "./Api.js"
import { callerOf } from "./auth.js"
import { offeredKey } from "./request.js"
import { SseReadable } from "./sse.js"

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

const seconds = (since: number) => (performance.now() - since) / 1000

/**
 * Wraps the whole app (outside auth and error mapping, so refusals and 404s count too). A streamed
 * body's first chunk is its first byte and its end (or the client going away) the request's end.
 */
export const telemetryMiddleware = (apiKeys: ReadonlyArray<Redacted.Redacted>) => {
  const routeOf = routeMatcher()
  return (app: HttpApp.Default): HttpApp.Default =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const started = performance.now()
      const route = routeOf(request.url.split("?")[0] ?? request.url)
      // Only a valid key is named (by a short hash): anything else would let clients mint label values.
      const owner = apiKeys.length === 0 ? undefined : callerOf(apiKeys, offeredKey(request.headers))?.owner
      const probe: RequestProbe = { route, apiKey: owner?.slice(0, 12), model: undefined }
      const routeLabels = [MetricLabel.make("route", route)]
      // Metrics updated in place (what `taggedWithLabels` + `update` do), not as effects: cheaper per request.
      const firstByte = () => metrics.httpTtfb.unsafeUpdate(seconds(started), routeLabels)
      const record = (status: number) => {
          metrics.httpDuration.unsafeUpdate(seconds(started), routeLabels)
          metrics.httpRequests.unsafeUpdate(1, [
            ...routeLabels,
            MetricLabel.make("method", request.method),
            MetricLabel.make("status", String(status)),
            ...(probe.model === undefined ? [] : [MetricLabel.make("model", probe.model)]),
            ...(probe.apiKey === undefined ? [] : [MetricLabel.make("api_key", probe.apiKey)])
          ])
        }
      const done = (status: number) => Effect.sync(() => record(status))
      const response = yield* Effect.locally(app, currentRequestProbe, probe).pipe(
        // Failures are mapped to responses inside; what reaches here is a client gone before the response.
        Effect.onError(() => done(499))
      )
      const body = response.body
      if (body._tag === "Raw" && body.body instanceof SseReadable) {
        body.body.onFirstByte = firstByte
        // A client that goes away mid-stream cuts the body: that request ended as 499.
        body.body.onEnd = (complete) => record(complete ? response.status : 499)
        return response
      }
      if (body._tag !== "Stream") {
        firstByte()
        yield* done(response.status)
        return response
      }
      let first = true
      const stream = body.stream.pipe(
        Stream.mapChunks((chunk) => {
          if (first && chunk.length > 0) {
            first = false
            firstByte()
          }
          return chunk
        }),
        // A client that goes away mid-stream interrupts it: that request ended as 499, not as its headers said.
        Stream.ensuringWith((exit) => done(Exit.isInterrupted(exit) ? 499 : response.status))
      )
      return HttpServerResponse.setBody(response, HttpBody.stream(stream, body.contentType, body.contentLength))
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
