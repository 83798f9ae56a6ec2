import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Metric, MetricBoundaries } from "effect"
import { GatewayConfig } from "../../src/config/GatewayConfig.js"
import { quantileOf } from "../../src/services/Telemetry.js"
import { TracingLive, tracesUrl } from "../../src/services/Tracing.js"

describe("TracingLive", () => {
  it("posts to <endpoint>/v1/traces, or to a URL that already names it", () => {
    expect(tracesUrl("http://collector:4318")).toBe("http://collector:4318/v1/traces")
    expect(tracesUrl("http://collector:4318/")).toBe("http://collector:4318/v1/traces")
    expect(tracesUrl("https://otel.example/v1/traces")).toBe("https://otel.example/v1/traces")
  })

  it.scoped("installs no tracer without telemetry.otlp_endpoint, and one with it", () =>
    Effect.gen(function*() {
      const before = yield* Effect.tracer
      const off = yield* Layer.build(TracingLive.pipe(Layer.provide(GatewayConfig.layerWith({}))))
      expect(yield* Effect.provide(Effect.tracer, off)).toBe(before)
      // Layer.setTracer puts the OTLP tracer in the services of the fibers built under it.
      const on = TracingLive.pipe(Layer.provide(GatewayConfig.layerWith({ telemetry: { otlp_endpoint: "http://127.0.0.1:9" } })))
      const tracer = yield* Effect.tracer.pipe(Effect.provide(on))
      expect(tracer).not.toBe(before)
    }))
})

// /stats estimates percentiles from Effect's histogram state (cumulative buckets, a final +Inf one).
describe("quantileOf", () => {
  it.effect("interpolates inside the bucket, clamped to the observed min and max, in ms", () =>
    Effect.gen(function*() {
      const h = Metric.histogram("telemetry_unit_test_seconds", MetricBoundaries.fromIterable([0.1, 1]))
      for (const seconds of [0.05, 0.5, 5]) yield* Metric.update(h, seconds)
      const state = yield* Metric.value(h)
      expect(state.buckets).toEqual([[0.1, 1], [1, 2], [Number.POSITIVE_INFINITY, 3]])
      expect(quantileOf(state, 0.5)).toBe(550) // halfway through (0.1, 1]
      expect(quantileOf(state, 0.99)).toBe(4880) // (1, max = 5]
      expect(quantileOf(state, 0.1)).toBe(65) // the first bucket starts at the smallest value seen (0.05)
      const empty = yield* Metric.value(Metric.histogram("telemetry_unit_empty_seconds", MetricBoundaries.fromIterable([1])))
      expect(quantileOf(empty, 0.5)).toBe(0)
    }))
})
