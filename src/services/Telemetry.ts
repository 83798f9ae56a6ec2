import * as Metrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import {
  type DataPoint,
  DataPointType,
  type ExponentialHistogramMetricData,
  type Histogram,
  type MetricData,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import { Clock, Context, Effect, Exit, FiberRef, Metric, MetricBoundaries, MetricLabel, MetricState, Option } from "effect"
import { GatewayConfig } from "../config/GatewayConfig.js"
import type { TurnEvent } from "../domain/Turn.js"
import { Admission } from "./Admission.js"
import { Conversations } from "./Conversations.js"
import { Pool } from "./Pool.js"
import { ToolBridge } from "./ToolBridge.js"

/**
 * The gateway's figures as Effect Metrics (one global registry, read by /stats and rendered for
 * /metrics by OpenTelemetry's Prometheus serializer), and the spans of a CLI turn. Requests and
 * latencies are recorded by the HTTP middleware (src/http/telemetry.ts), turns, tokens and cost by
 * ChatService through `cliTurnProbe`; pool, session, tool and conversation figures are read from
 * their services when /stats or /metrics is asked (they are state, not events).
 */

// ---------------------------------------------------------------------------- metrics

/** Seconds: from a few ms (a refused request) to the longest turns. */
const SECONDS = MetricBoundaries.fromIterable([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300])

// Counters are named with `_total` (Prometheus' convention; the serializer keeps it as is).
const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/** Metric names (Prometheus names as /metrics shows them). */
export const names = {
  httpRequests: "gateway_http_requests_total",
  httpDuration: "gateway_http_request_duration_seconds",
  httpTtfb: "gateway_http_time_to_first_byte_seconds",
  turns: "gateway_turns_total",
  turnErrors: "gateway_turn_errors_total",
  tokens: "gateway_tokens_total",
  cost: "gateway_cost_usd_total",
  timeToFirstToken: "gateway_time_to_first_token_seconds",
  conversationsCreated: "gateway_conversations_created_total",
  conversationsLive: "gateway_conversations_live",
  toolsParked: "gateway_tools_parked",
  sessionsRunning: "gateway_sessions_running",
  sessionsQueued: "gateway_sessions_queued",
  sessionsLimit: "gateway_sessions_limit",
  poolProcesses: "gateway_pool_processes",
  poolLeased: "gateway_pool_leased",
  poolStandbys: "gateway_pool_standbys",
  poolBoots: "gateway_pool_boots_total",
  poolHits: "gateway_pool_hits_total",
  poolMisses: "gateway_pool_misses_total",
  poolReuses: "gateway_pool_reuses_total",
  poolResetFailures: "gateway_pool_reset_failures_total",
  poolRetirements: "gateway_pool_retirements_total",
  uptime: "gateway_uptime_seconds"
} as const

export const metrics = {
  httpRequests: counter(names.httpRequests, "HTTP requests answered, by route, method, status, model and API key"),
  httpDuration: Metric.histogram(names.httpDuration, SECONDS, "Time from request to the last byte of the response, by route"),
  httpTtfb: Metric.histogram(names.httpTtfb, SECONDS, "Time from request to the first byte of the response body, by route"),
  turns: counter(names.turns, "CLI turns finished, by model, finish reason and API key"),
  turnErrors: counter(names.turnErrors, "CLI turns that ended in an error, by model and error"),
  tokens: counter(names.tokens, "Tokens the CLI reported, by model, type (input, output, cache_read, cache_write) and API key"),
  cost: counter(names.cost, "Cost in USD as the CLI reports it, by model and API key"),
  timeToFirstToken: Metric.histogram(names.timeToFirstToken, SECONDS, "Time from writing a turn to the CLI to its first text, thinking or tool-call delta, by model"),
  conversationsCreated: counter(names.conversationsCreated, "Conversations created"),
  conversationsLive: Metric.gauge(names.conversationsLive, { description: "Conversations whose CLI is kept running between turns" }),
  toolsParked: Metric.gauge(names.toolsParked, { description: "Turns parked, waiting for the client's tool results" }),
  sessionsRunning: Metric.gauge(names.sessionsRunning, { description: "Turns holding a session slot" }),
  sessionsQueued: Metric.gauge(names.sessionsQueued, { description: "Requests waiting for a session slot" }),
  sessionsLimit: Metric.gauge(names.sessionsLimit, { description: "claude.max_concurrent_sessions" }),
  poolProcesses: Metric.gauge(names.poolProcesses, { description: "CLI processes alive (standing by, leased, kept or parked)" }),
  poolLeased: Metric.gauge(names.poolLeased, { description: "CLI processes serving a request" }),
  poolStandbys: Metric.gauge(names.poolStandbys, { description: "Ready standby processes" }),
  poolBoots: counter(names.poolBoots, "CLI processes spawned"),
  poolHits: counter(names.poolHits, "Requests served by a ready process"),
  poolMisses: counter(names.poolMisses, "Requests that spawned their process on the request path"),
  poolReuses: counter(names.poolReuses, "Processes reset to serve another conversation"),
  poolResetFailures: counter(names.poolResetFailures, "Resets that failed (the process was killed)"),
  poolRetirements: counter(names.poolRetirements, "Processes retired (max_uses or max_rss_mb)"),
  uptime: Metric.gauge(names.uptime, { description: "Seconds since the gateway started" })
} as const

/**
 * One label array per distinct label set, made once: Effect's metrics remember a series by the
 * array's identity, and a new array on every update costs a registry lookup (a new key, hashed and
 * compared). Pairs with an undefined value are left out. Bounded: a flood of distinct sets
 * (unbounded model names) only empties the cache.
 */
const labelCache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
export const labelsOf = (pairs: ReadonlyArray<readonly [string, string | undefined]>): ReadonlyArray<MetricLabel.MetricLabel> => {
  let key = ""
  for (const [name, value] of pairs) if (value !== undefined) key += `${name}\u0000${value}\u0000`
  const cached = labelCache.get(key)
  if (cached !== undefined) return cached
  const made = pairs.flatMap(([name, value]) => value === undefined ? [] : [MetricLabel.make(name, value)])
  if (labelCache.size >= 10_000) labelCache.clear()
  labelCache.set(key, made)
  return made
}

const labels = (tags: Record<string, string | undefined>) => labelsOf(Object.entries(tags))

// ---------------------------------------------------------------------------- per request

/** What the HTTP middleware and ChatService share about one request (mutable: filled in as it goes). */
export interface RequestProbe {
  readonly route: string
  /** The API key's id (a short hash) when keys are configured. */
  readonly apiKey: string | undefined
  /** The model of the request's (last) turn, once ChatService knows it. */
  model: string | undefined
}

/** The current HTTP request's probe; undefined outside the middleware (RPC, embedding apps, metrics off). */
export const currentRequestProbe = FiberRef.unsafeMake<RequestProbe | undefined>(undefined)

type Finished = Extract<TurnEvent, { _tag: "Finished" }>

/**
 * One request's part of a CLI turn: a `gateway.cli.turn` span (child of the request's span) from
 * the moment its input is written until it finishes, with time to first token, tokens, cost and
 * the CLI session as attributes; and, with metrics on, the turn's counters. The span ends at the
 * latest when the request's scope closes.
 */
export const cliTurnProbe = (model: string, metricsEnabled: boolean) =>
  Effect.gen(function*() {
    const request = metricsEnabled ? yield* FiberRef.get(currentRequestProbe) : undefined
    if (request !== undefined) request.model = model
    const apiKey = request?.apiKey
    // No call-site capture: it would be this line, and a `new Error()` per turn (bench/README.md, "Telemetry overhead").
    const span = yield* Effect.makeSpan("gateway.cli.turn", { kind: "client", captureStackTrace: false })
    span.attribute("gateway.model", model)
    const started = performance.now()
    let firstToken: number | undefined
    let ended = false
    const end = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.flatMap(Clock.currentTimeNanos, (now) =>
        Effect.sync(() => {
          if (ended) return
          ended = true
          span.end(now, exit)
        }))
    yield* Effect.addFinalizer(end)
    return {
      span,
      /** Every event of the part, as it passes. */
      see: (event: TurnEvent): void => {
        if (event._tag === "Started") span.attribute("gateway.cli_session_id", event.sessionId)
        else if (
          firstToken === undefined &&
          (event._tag === "TextDelta" || event._tag === "ThinkingDelta" || event._tag === "ToolCallStarted")
        ) {
          firstToken = performance.now() - started
          span.attribute("gateway.time_to_first_token_ms", Math.round(firstToken * 10) / 10)
        }
      },
      /** The turn finished: attributes and counters, then `after` (store writes…) as the span's children, then the span ends. */
      finished: <A, E, R>(event: Finished, after: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
        const { usage } = event
        span.attribute("gateway.cli_session_id", event.sessionId)
        span.attribute("gateway.finish_reason", event.reason)
        span.attribute("gen_ai.usage.input_tokens", usage.inputTokens)
        span.attribute("gen_ai.usage.output_tokens", usage.outputTokens)
        span.attribute("gateway.usage.cache_read_tokens", usage.cacheReadTokens)
        span.attribute("gateway.usage.cache_write_tokens", usage.cacheCreationTokens)
        if (event.costUsd !== undefined) span.attribute("gateway.cost_usd", event.costUsd)
        // Updated in place (`unsafeUpdate` with the labels, what `taggedWithLabels` + `update` do): as
        // effects, the seven updates cost every turn ~150 run-loop steps (bench/README.md, "Telemetry overhead").
        const record = request === undefined ? Effect.void : Effect.sync(() => {
          metrics.turns.unsafeUpdate(1, labels({ model, finish_reason: event.reason, api_key: apiKey }))
          for (
            const [type, count] of [
              ["input", usage.inputTokens],
              ["output", usage.outputTokens],
              ["cache_read", usage.cacheReadTokens],
              ["cache_write", usage.cacheCreationTokens]
            ] as const
          ) metrics.tokens.unsafeUpdate(count, labels({ model, type, api_key: apiKey }))
          metrics.cost.unsafeUpdate(event.costUsd ?? 0, labels({ model, api_key: apiKey }))
          if (firstToken !== undefined) metrics.timeToFirstToken.unsafeUpdate(firstToken / 1000, labels({ model }))
        })
        return record.pipe(
          Effect.zipRight(Effect.withParentSpan(after, span)),
          Effect.onExit((exit) => end(exit))
        )
      },
      /** The turn failed (upstream error, timeout, …). */
      failed: (error: { readonly _tag: string }) =>
        Effect.zipRight(
          request === undefined
            ? Effect.void
            : Metric.increment(Metric.taggedWithLabels(metrics.turnErrors, labels({ model, error: error._tag }))),
          end(Exit.fail(error))
        )
    }
  })

/** A conversation was created for a request. */
export const conversationCreated = Metric.increment(metrics.conversationsCreated)

// ---------------------------------------------------------------------------- /stats and /metrics

/** Figures of the answer cache, when one is wired (see CacheStatsSource). */
export interface CacheFigures {
  readonly enabled: boolean
  readonly hits: number
  readonly misses: number
  /** Requests that joined an identical request's turn (single-flight). */
  readonly joins: number
  readonly entries: number
  readonly bytes: number
  readonly evictions: number
}

/**
 * Optional: the cache's figures for /stats. The cache service (issue 14, item 1) provides this
 * tag (`Layer.effect(CacheStatsSource, Effect.map(Cache, (cache) => cache.stats))`, mapped to
 * CacheFigures); without it /stats reports `cache: null`. Its own `gateway_cache_*` metrics reach
 * /metrics without any wiring (one registry).
 */
export class CacheStatsSource extends Context.Tag("claude-code-api/CacheStatsSource")<
  CacheStatsSource,
  Effect.Effect<CacheFigures>
>() {}

export interface Percentiles {
  readonly p50: number
  readonly p90: number
  readonly p99: number
}

/**
 * A quantile from cumulative histogram buckets, interpolated linearly inside its bucket (what
 * Prometheus' histogram_quantile does), clamped to the observed min and max. In ms.
 */
export const quantileOf = (state: MetricState.MetricState.Histogram, q: number): number => {
  if (state.count === 0) return 0
  const target = q * state.count
  let lower = state.min
  let below = 0
  for (const [bound, cumulative] of state.buckets) {
    if (cumulative >= target) {
      const upper = Number.isFinite(bound) ? Math.min(bound, state.max) : state.max
      const from = Math.max(Math.min(lower, upper), state.min)
      const inBucket = cumulative - below
      const value = inBucket === 0 ? upper : from + (upper - from) * ((target - below) / inBucket)
      return Math.round(Math.min(Math.max(value, state.min), state.max) * 10_000) / 10
    }
    lower = bound
    below = cumulative
  }
  return Math.round(state.max * 10_000) / 10
}

/** Histograms of one route (any labels) merged bucket by bucket (they share boundaries). */
const mergeHistograms = (states: ReadonlyArray<MetricState.MetricState.Histogram>) => {
  const first = states[0]
  if (first === undefined) return undefined
  const buckets = first.buckets.map(([bound], i) => [bound, states.reduce((n, s) => n + (s.buckets[i]?.[1] ?? 0), 0)] as const)
  return {
    buckets,
    count: states.reduce((n, s) => n + s.count, 0),
    min: Math.min(...states.map((s) => s.min)),
    max: Math.max(...states.map((s) => s.max)),
    sum: states.reduce((n, s) => n + s.sum, 0)
  } as unknown as MetricState.MetricState.Histogram
}

const percentiles = (state: MetricState.MetricState.Histogram | undefined): Percentiles => ({
  p50: state === undefined ? 0 : quantileOf(state, 0.5),
  p90: state === undefined ? 0 : quantileOf(state, 0.9),
  p99: state === undefined ? 0 : quantileOf(state, 0.99)
})

export interface Tokens {
  input: number
  output: number
  cache_read: number
  cache_write: number
}
const noTokens = (): Tokens => ({ input: 0, output: 0, cache_read: 0, cache_write: 0 })
const round6 = (n: number) => Math.round(n * 1e6) / 1e6

/**
 * The metrics with one label removed: series that differed only by it are added up (counters and
 * histograms; a gauge keeps its last point).
 */
const withoutLabel = (metrics: ResourceMetrics, label: string): ResourceMetrics => {
  const keyOf = (attributes: DataPoint<unknown>["attributes"]) => {
    const { [label]: _dropped, ...rest } = attributes
    return { rest, key: JSON.stringify(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b))) }
  }
  const merge = <T>(points: ReadonlyArray<DataPoint<T>>, add: (a: T, b: T) => T): Array<DataPoint<T>> => {
    const merged = new Map<string, DataPoint<T>>()
    for (const point of points) {
      const { key, rest } = keyOf(point.attributes)
      const seen = merged.get(key)
      merged.set(key, seen === undefined ? { ...point, attributes: rest } : { ...seen, value: add(seen.value, point.value) })
    }
    return [...merged.values()]
  }
  const addHistograms = (a: Histogram, b: Histogram): Histogram => ({
    buckets: { boundaries: a.buckets.boundaries, counts: a.buckets.counts.map((n, i) => n + (b.buckets.counts[i] ?? 0)) },
    count: a.count + b.count,
    ...(a.sum === undefined || b.sum === undefined ? {} : { sum: a.sum + b.sum }),
    ...(a.min === undefined || b.min === undefined ? {} : { min: Math.min(a.min, b.min) }),
    ...(a.max === undefined || b.max === undefined ? {} : { max: Math.max(a.max, b.max) })
  })
  const strip = (metric: MetricData): MetricData => {
    switch (metric.dataPointType) {
      case DataPointType.SUM:
        return { ...metric, dataPoints: merge(metric.dataPoints, (a, b) => a + b) }
      case DataPointType.GAUGE:
        return { ...metric, dataPoints: merge(metric.dataPoints, (_, b) => b) }
      case DataPointType.HISTOGRAM:
        return { ...metric, dataPoints: merge(metric.dataPoints, addHistograms) }
      default:
        return { ...metric, dataPoints: merge<ExponentialHistogramMetricData["dataPoints"][number]["value"]>(metric.dataPoints, (_, b) => b) }
    }
  }
  return { ...metrics, scopeMetrics: metrics.scopeMetrics.map((scope) => ({ ...scope, metrics: scope.metrics.map(strip) })) }
}

export class Telemetry extends Effect.Service<Telemetry>()("Telemetry", {
  scoped: Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const pool = yield* Pool
    const admission = yield* Admission
    const bridge = yield* ToolBridge
    const conversations = yield* Conversations
    const cache = yield* Effect.serviceOption(CacheStatsSource)
    const startedAt = Date.now()

    // The exporter only collects (no server of its own); /metrics renders what it collects.
    const exporter = new PrometheusExporter({ preventServerStart: true })
    const producer = yield* Metrics.makeProducer.pipe(
      Effect.provide(OtelResource.layer({ serviceName: config.telemetry.service_name }))
    )
    yield* Metrics.registerProducer(producer, () => exporter)
    // No otel_scope_* labels on every series: there is one scope.
    const serializer = new PrometheusSerializer("", false, undefined, false, true)

    // Pool figures are cumulative counts kept by the pool: the counters advance by what is new.
    const seen = { spawned: 0, hits: 0, misses: 0, reused: 0, resetFailed: 0, retired: 0 }
    const advance = (metric: Metric.Metric.Counter<number>, key: keyof typeof seen, now: number) => {
      const delta = now - seen[key]
      seen[key] = now
      // Incremented by 0 too: a counter shows in /metrics (at 0) from the first scrape on.
      return Metric.incrementBy(metric, Math.max(0, delta))
    }

    /** Read the services' state into the gauges (and the pool's counts into its counters). */
    const refresh = Effect.gen(function*() {
      const [poolStats, sessions, parked, live] = yield* Effect.all([
        pool.stats,
        admission.stats,
        bridge.count,
        conversations.liveIds
      ])
      yield* Effect.all([
        Metric.set(metrics.poolProcesses, poolStats.processes),
        Metric.set(metrics.poolLeased, poolStats.leased),
        Metric.set(metrics.poolStandbys, poolStats.signatures.reduce((n, s) => n + s.standby, 0)),
        advance(metrics.poolBoots, "spawned", poolStats.spawned),
        advance(metrics.poolHits, "hits", poolStats.hits),
        advance(metrics.poolMisses, "misses", poolStats.misses),
        advance(metrics.poolReuses, "reused", poolStats.reused),
        advance(metrics.poolResetFailures, "resetFailed", poolStats.resetFailed),
        advance(metrics.poolRetirements, "retired", poolStats.retired),
        Metric.set(metrics.sessionsRunning, sessions.running),
        Metric.set(metrics.sessionsQueued, sessions.queued),
        Metric.set(metrics.sessionsLimit, sessions.limit),
        Metric.set(metrics.toolsParked, parked),
        Metric.set(metrics.conversationsLive, live.size),
        Metric.set(metrics.uptime, (Date.now() - startedAt) / 1000)
      ], { discard: true })
      return { poolStats, sessions, parked, live: live.size }
    })

    /** The Prometheus text exposition of every metric in the registry. */
    const prometheus = Effect.zipRight(
      refresh,
      Effect.promise(() => exporter.collect()).pipe(Effect.map(({ resourceMetrics }) => {
        // Served to anyone (telemetry.metrics_public): which keys exist and what each spends stays private.
        const shown = config.telemetry.metrics_public ? withoutLabel(resourceMetrics, "api_key") : resourceMetrics
        // The text format ends every line, the last one included (parsers drop an unended line).
        const text = serializer.serialize(shown)
        return text.endsWith("\n") ? text : `${text}\n`
      }))
    )

    /** The /stats report. */
    const stats = Effect.gen(function*() {
      const state = yield* refresh
      const snapshot = Metric.unsafeSnapshot()
      const tagsOf = (pair: (typeof snapshot)[number]) =>
        Object.fromEntries(pair.metricKey.tags.map((label) => [label.key, label.value])) as Record<string, string | undefined>
      const requests = { total: 0, by_status: {} as Record<string, number>, by_model: {} as Record<string, number> }
      const routes: Record<string, { requests: number; by_status: Record<string, number>; by_method: Record<string, number>; latency: Array<MetricState.MetricState.Histogram>; ttfb: Array<MetricState.MetricState.Histogram> }> = {}
      const route = (name: string) => (routes[name] ??= { requests: 0, by_status: {}, by_method: {}, latency: [], ttfb: [] })
      const tokens = noTokens()
      const tokensByModel: Record<string, Tokens> = {}
      const cost = { total: 0, by_model: {} as Record<string, number> }
      const turns = { total: 0, by_finish_reason: {} as Record<string, number>, errors: 0 }
      const ttft: Array<MetricState.MetricState.Histogram> = []
      let conversationsCreated = 0
      const keys: Record<string, { requests: number; tokens: Tokens; cost_usd: number }> = {}
      const key = (id: string) => (keys[id] ??= { requests: 0, tokens: noTokens(), cost_usd: 0 })
      const add = (record: Record<string, number>, name: string, n: number) => (record[name] = (record[name] ?? 0) + n)

      for (const pair of snapshot) {
        const name = pair.metricKey.name
        const tags = tagsOf(pair)
        const value = pair.metricState
        if (MetricState.isCounterState(value)) {
          const n = Number(value.count)
          if (name === names.httpRequests) {
            requests.total += n
            add(requests.by_status, tags.status ?? "", n)
            if (tags.model !== undefined) add(requests.by_model, tags.model, n)
            const r = route(tags.route ?? "")
            r.requests += n
            add(r.by_status, tags.status ?? "", n)
            add(r.by_method, tags.method ?? "", n)
            if (tags.api_key !== undefined) key(tags.api_key).requests += n
          } else if (name === names.tokens) {
            const type = tags.type as keyof Tokens
            tokens[type] += n
            ;(tokensByModel[tags.model ?? ""] ??= noTokens())[type] += n
            if (tags.api_key !== undefined) key(tags.api_key).tokens[type] += n
          } else if (name === names.cost) {
            cost.total += n
            add(cost.by_model, tags.model ?? "", n)
            if (tags.api_key !== undefined) key(tags.api_key).cost_usd += n
          } else if (name === names.turns) {
            turns.total += n
            add(turns.by_finish_reason, tags.finish_reason ?? "", n)
          } else if (name === names.turnErrors) {
            turns.errors += n
          } else if (name === names.conversationsCreated) {
            conversationsCreated += n
          }
        } else if (MetricState.isHistogramState(value)) {
          if (name === names.httpDuration) route(tags.route ?? "").latency.push(value)
          else if (name === names.httpTtfb) route(tags.route ?? "").ttfb.push(value)
          else if (name === names.timeToFirstToken) ttft.push(value)
        }
      }
      const cacheFigures = Option.isSome(cache) ? yield* cache.value : null
      return {
        uptime_seconds: Math.round((Date.now() - startedAt) / 1000),
        metrics_enabled: config.telemetry.metrics_enabled,
        requests: {
          ...requests,
          by_route: Object.fromEntries(Object.entries(routes).map(([name, r]) => [name, {
            requests: r.requests,
            by_status: r.by_status,
            by_method: r.by_method,
            latency_ms: percentiles(mergeHistograms(r.latency)),
            time_to_first_byte_ms: percentiles(mergeHistograms(r.ttfb))
          }]))
        },
        turns: { ...turns, time_to_first_token_ms: percentiles(mergeHistograms(ttft)) },
        tokens: { ...tokens, by_model: tokensByModel },
        cost_usd: { total: round6(cost.total), by_model: Object.fromEntries(Object.entries(cost.by_model).map(([m, c]) => [m, round6(c)])) },
        pool: {
          processes: state.poolStats.processes,
          leased: state.poolStats.leased,
          standbys: state.poolStats.signatures.reduce((n, s) => n + s.standby, 0),
          boots: state.poolStats.spawned,
          hits: state.poolStats.hits,
          misses: state.poolStats.misses,
          reuses: state.poolStats.reused,
          reset_failures: state.poolStats.resetFailed,
          retirements: state.poolStats.retired
        },
        sessions: state.sessions,
        cache: cacheFigures,
        conversations: { live: state.live, created: conversationsCreated },
        tools: { parked: state.parked },
        keys: config.server.api_keys.length === 0
          ? null
          : Object.fromEntries(Object.entries(keys).map(([id, k]) => [id, { ...k, cost_usd: round6(k.cost_usd) }]))
      }
    })

    return { stats, prometheus, refresh } as const
  }),
  dependencies: [Pool.Default, Admission.Default, ToolBridge.Default, Conversations.Default]
}) {}

