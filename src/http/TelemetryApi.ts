import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Authorization } from "./auth.js"

/** GET /stats and GET /metrics (handlers in telemetry.ts; every figure is described in docs/observability.md). */

const Count = Schema.Number
const Counts = Schema.Record({ key: Schema.String, value: Count })
const Percentiles = Schema.Struct({ p50: Schema.Number, p90: Schema.Number, p99: Schema.Number })
const Tokens = Schema.Struct({ input: Count, output: Count, cache_read: Count, cache_write: Count })

export const Stats = Schema.Struct({
  uptime_seconds: Count,
  /** telemetry.metrics_enabled: off, the request, turn, token and cost figures stay at 0. */
  metrics_enabled: Schema.Boolean,
  requests: Schema.Struct({
    total: Count,
    by_status: Counts,
    /** Requests that ran a turn, by the model of their (last) turn. */
    by_model: Counts,
    /** Keyed by route template ("/v1/conversations/:id"; "unmatched" for unknown paths); latencies in ms, estimated from the histogram buckets. */
    by_route: Schema.Record({
      key: Schema.String,
      value: Schema.Struct({
        requests: Count,
        by_status: Counts,
        by_method: Counts,
        latency_ms: Percentiles,
        time_to_first_byte_ms: Percentiles
      })
    })
  }),
  turns: Schema.Struct({
    total: Count,
    by_finish_reason: Counts,
    errors: Count,
    time_to_first_token_ms: Percentiles
  }),
  /** As the CLI reports them (cache_read / cache_write: the upstream prompt cache). */
  tokens: Schema.extend(Tokens, Schema.Struct({ by_model: Schema.Record({ key: Schema.String, value: Tokens }) })),
  /** The CLI's own list-price estimate. */
  cost_usd: Schema.Struct({ total: Schema.Number, by_model: Counts }),
  pool: Schema.Struct({
    processes: Count,
    leased: Count,
    standbys: Count,
    boots: Count,
    hits: Count,
    misses: Count,
    reuses: Count,
    reset_failures: Count,
    retirements: Count
  }),
  sessions: Schema.Struct({ running: Count, queued: Count, limit: Count }),
  /** null until an answer cache is wired. */
  cache: Schema.NullOr(Schema.Struct({
    enabled: Schema.Boolean,
    hits: Count,
    misses: Count,
    joins: Count,
    entries: Count,
    bytes: Count,
    evictions: Count
  })),
  conversations: Schema.Struct({ live: Count, created: Count }),
  tools: Schema.Struct({ parked: Count }),
  /** By API key id (the first 12 hex digits of the key's SHA-256); null when no keys are configured. */
  keys: Schema.NullOr(Schema.Record({
    key: Schema.String,
    value: Schema.Struct({ requests: Count, tokens: Tokens, cost_usd: Schema.Number })
  }))
})

export class TelemetryApi extends HttpApiGroup.make("telemetry")
  .add(
    HttpApiEndpoint.get("stats", "/stats")
      .addSuccess(Stats)
      .middleware(Authorization)
      .annotate(OpenApi.Description, "What the gateway has done since it started: requests, turns, tokens, cost, latency, pool, cache.")
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4" })))
      .annotate(
        OpenApi.Description,
        "Prometheus text exposition. Needs an API key like every route unless telemetry.metrics_public is set."
      )
  )
{}
