import { Effect, Layer } from "effect"
import { GatewayConfig } from "../config/GatewayConfig.js"
import * as OtlpJsonTracer from "./OtlpJsonTracer.js"

/**
 * Spans exported over OTLP/HTTP (JSON) when `telemetry.otlp_endpoint` is set; otherwise nothing
 * is installed (Effect's default tracer keeps spans in memory only while they run). The exporter
 * (OtlpJsonTracer.ts) batches spans and flushes at shutdown.
 */

/** `http://host:4318` → `http://host:4318/v1/traces`; a URL already naming /v1/traces is kept. */
export const tracesUrl = (endpoint: string) =>
  /\/v1\/traces\/?$/.test(endpoint) ? endpoint : `${endpoint.replace(/\/+$/, "")}/v1/traces`

export const TracingLive = Layer.unwrapEffect(
  Effect.map(GatewayConfig, ({ config }) => {
    const { export_interval_ms, otlp_endpoint, service_name, trace_sample_ratio } = config.telemetry
    if (otlp_endpoint === undefined) return Layer.empty
    return Layer.unwrapScoped(Effect.map(
      OtlpJsonTracer.make({ url: tracesUrl(otlp_endpoint), serviceName: service_name, exportIntervalMs: export_interval_ms, sampleRatio: trace_sample_ratio }),
      Layer.setTracer
    ))
  })
)
