import * as TurnStream from "../domain/TurnStream.js"
import { SqlClient } from "@effect/sql"
import {
  Chunk,
  Deferred,
  Effect,
  ExecutionStrategy,
  Exit,
  Fiber,
  FiberRef,
  Layer,
  Metric,
  Option,
  Schema,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
import * as crypto from "node:crypto"
import { launchSignature } from "../cli/CliProcess.js"
import type { TurnError } from "../cli/TurnEvents.js"
import { type Config, GatewayConfig } from "../config/GatewayConfig.js"
import { type HistoryMessage, TurnEvent, type TurnRequest } from "../domain/Turn.js"
import { ConversationStore } from "../store/ConversationStore.js"

/**
 * Exact-match answer cache at the dialect-neutral level: a finished turn's TurnEvents, keyed by
 * everything that can change the answer (the resolved TurnRequest, the launch settings from config,
 * the API key's tenant), replayed on a hit; every dialect's renderer turns them into its JSON answer
 * or SSE stream. Concurrent identical requests share one CLI turn (single flight), run in the
 * cache's own scope so that no requester going away cancels it for the others; it stops when the
 * last of them has gone.
 *
 * Never stored: a turn in which the CLI ran tools of its own (their side effects would not happen
 * again), a failed turn, a stop for client tool calls, a cut answer (`length`). Never looked up:
 * conversation continuations (a named conversation, tool results, a stateless client's follow-up),
 * the runs of `n` > 1, and requests the dialect marks as not cacheable. Docs: docs/api/caching.md.
 */

export type CacheStatus = "hit" | "miss" | "bypass"

/** What a turn hands its dialect (ChatService's TurnResult). */
export interface Answer {
  readonly events: Stream.Stream<TurnEvent, TurnError>
  readonly conversationId: string | undefined
}

export type CacheSettings = Config["cache"]

export interface CacheStats {
  readonly enabled: boolean
  readonly hits: number
  readonly misses: number
  readonly bypasses: number
  /** Requests that joined an identical request's running turn instead of starting one. */
  readonly joins: number
  readonly stores: number
  readonly evictions: number
  readonly entries: number
  readonly bytes: number
}

// ---------------------------------------------------------------------------------------------
// Request directives and the response's status, exchanged with the HTTP layer

/**
 * One HTTP request's side of the cache: its `Cache-Control` header in, the `x-cache` status out.
 * The server's middleware sets it per request (src/http/Server.ts); without it (RPC, embedding
 * apps) a request has no directives.
 */
export interface CacheExchange {
  readonly cacheControl: string | undefined
  status: CacheStatus | undefined
}

export const CurrentCacheExchange = FiberRef.unsafeMake<CacheExchange | undefined>(undefined)

export const cacheDirectives = (cacheControl: string | undefined) => {
  const parts = (cacheControl ?? "").toLowerCase().split(",").map((part) => part.trim())
  return { noCache: parts.includes("no-cache"), noStore: parts.includes("no-store") }
}

/** Run `effect` with a fresh exchange for a request with these headers; the exchange tells the status after. */
export const withCacheExchange = (headers: Readonly<Record<string, string | undefined>>) => {
  const exchange: CacheExchange = { cacheControl: headers["cache-control"], status: undefined }
  return {
    exchange,
    run: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.locally(effect, CurrentCacheExchange, exchange)
  }
}

// ---------------------------------------------------------------------------------------------
// Key

/** JSON with object keys sorted and undefined fields left out: equal values, equal text. */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null"
  if (Array.isArray(value)) return `[${value.map((item: unknown) => item === undefined ? "null" : canonicalJson(item)).join(",")}]`
  const fields = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`)
  return `{${fields.join(",")}}`
}

const sha256 = (data: string | Buffer) => crypto.createHash("sha256").update(data).digest("hex")

/**
 * The key of a request: model, system prompt, effort, output limit, JSON schema, client tools and
 * how to use them (the launch options), the CLI's launch from config (permission mode, tools,
 * add-dirs, MCP config: the launch signature), the input with images by content hash, the stop
 * sequences, the whole message list, and the tenant.
 */
export const cacheKey = (request: TurnRequest, tenant: string, signature: string): string =>
  sha256(canonicalJson({
    v: 1,
    tenant,
    signature,
    launch: { ...request.launch, resume: undefined },
    input: request.input.map((block) =>
      block.type === "image"
        ? { type: "image", media_type: block.source.media_type, sha256: sha256(Buffer.from(block.source.data, "base64")) }
        : block
    ),
    stop: request.stop ?? [],
    history: request.conversation?.history ?? [],
    added: request.conversation?.added ?? []
  }))

// ---------------------------------------------------------------------------------------------
// Stored form of the events (the SQLite store keeps them as JSON)

const Usage = Schema.Struct({
  inputTokens: Schema.Number,
  outputTokens: Schema.Number,
  cacheReadTokens: Schema.Number,
  cacheCreationTokens: Schema.Number
})
const StoredEvent = Schema.Union(
  Schema.TaggedStruct("Started", { model: Schema.String, sessionId: Schema.String }),
  Schema.TaggedStruct("TextDelta", { text: Schema.String }),
  Schema.TaggedStruct("Usage", { usage: Usage }),
  Schema.TaggedStruct("ThinkingDelta", { text: Schema.String }),
  Schema.TaggedStruct("ToolCallStarted", { index: Schema.Number, id: Schema.String, name: Schema.String }),
  Schema.TaggedStruct("ToolCallDelta", { index: Schema.Number, arguments: Schema.String }),
  Schema.TaggedStruct("Finished", {
    reason: Schema.Literal("stop", "length", "tool_calls", "content_filter"),
    usage: Usage,
    costUsd: Schema.optional(Schema.Number),
    sessionId: Schema.String,
    structuredOutput: Schema.optionalWith(Schema.Unknown, { exact: true }),
    stopSequence: Schema.optionalWith(Schema.String, { exact: true }),
    usedCliTools: Schema.optionalWith(Schema.Boolean, { exact: true })
  })
)
const StoredEvents = Schema.parseJson(Schema.Array(StoredEvent))
const decodeStored = Schema.decodeUnknown(StoredEvents)

const toTurnEvent = (event: typeof StoredEvent.Type): TurnEvent => {
  switch (event._tag) {
    case "Started":
      return TurnEvent.Started({ model: event.model, sessionId: event.sessionId })
    case "TextDelta":
      return TurnEvent.TextDelta({ text: event.text })
    case "Usage":
      return TurnEvent.Usage({ usage: event.usage })
    case "ThinkingDelta":
      return TurnEvent.ThinkingDelta({ text: event.text })
    case "ToolCallStarted":
      return TurnEvent.ToolCallStarted({ index: event.index, id: event.id, name: event.name })
    case "ToolCallDelta":
      return TurnEvent.ToolCallDelta({ index: event.index, arguments: event.arguments })
    case "Finished": {
      const { _tag, costUsd, ...rest } = event
      return TurnEvent.Finished({ ...rest, costUsd })
    }
  }
}

const encodeEvents = (events: ReadonlyArray<TurnEvent>) => JSON.stringify(events.map((event) => ({ ...event })))

// ---------------------------------------------------------------------------------------------
// Stores

export interface CacheStore {
  readonly get: (key: string) => Effect.Effect<Option.Option<ReadonlyArray<TurnEvent>>>
  /** Store an answer; how many entries were evicted to make room. */
  readonly put: (key: string, events: ReadonlyArray<TurnEvent>) => Effect.Effect<number>
  readonly size: Effect.Effect<{ readonly entries: number; readonly bytes: number }>
}

const now = Effect.clockWith((clock) => clock.currentTimeMillis)

/** In memory, least recently used first out (a Map keeps insertion order; a hit moves its entry last). */
export const memoryStore = (settings: CacheSettings): CacheStore => {
  const entries = new Map<string, { readonly events: ReadonlyArray<TurnEvent>; readonly bytes: number; readonly expiresAt: number }>()
  let bytes = 0
  const drop = (key: string) => {
    const entry = entries.get(key)
    if (entry === undefined) return
    entries.delete(key)
    bytes -= entry.bytes
  }
  return {
    get: (key) =>
      Effect.map(now, (at) => {
        const entry = entries.get(key)
        if (entry === undefined) return Option.none()
        drop(key)
        if (entry.expiresAt <= at) return Option.none()
        entries.set(key, entry)
        bytes += entry.bytes
        return Option.some(entry.events)
      }),
    put: (key, events) =>
      Effect.map(now, (at) => {
        const size = Buffer.byteLength(encodeEvents(events))
        if (size > settings.max_bytes) return 0
        drop(key)
        entries.set(key, { events, bytes: size, expiresAt: at + settings.ttl_seconds * 1000 })
        bytes += size
        let evicted = 0
        for (const [oldest, entry] of entries) {
          if (entries.size <= settings.max_entries && bytes <= settings.max_bytes) break
          // Expired or not, the least recently used go first; the new entry is last.
          drop(oldest)
          if (entry.expiresAt > at) evicted++
        }
        return evicted
      }),
    size: Effect.sync(() => {
      // Expired entries still held count until a lookup or an insert removes them.
      return { entries: entries.size, bytes }
    })
  }
}

const TotalsRow = Schema.Tuple(Schema.Struct({ n: Schema.Number, bytes: Schema.NullOr(Schema.Number), recency: Schema.NullOr(Schema.Number) }))
const EntryRows = Schema.Array(Schema.Struct({ events: Schema.String, expires_at: Schema.Number, recency: Schema.Number }))
const GoneRows = Schema.Array(Schema.Struct({ bytes: Schema.Number, expires_at: Schema.Number }))
const OldestRows = Schema.Array(Schema.Struct({ key: Schema.String, bytes: Schema.Number }))

/**
 * The conversation database's `cache_entries` table: entries survive a restart. Its totals
 * (entries, bytes) are read once at start and then kept in memory: every statement that removes
 * rows returns what it removed (`RETURNING`), so the totals follow what the table really did, even
 * when a lookup that drops an expired entry runs alongside an insert.
 */
export const sqliteStore = (settings: CacheSettings, sql: SqlClient.SqlClient): Effect.Effect<CacheStore> =>
  Effect.gen(function*() {
    // Expired entries of earlier runs go at start-up.
    yield* sql`DELETE FROM cache_entries WHERE expires_at <= ${yield* now}`.pipe(Effect.orDie)
    const [loaded] = yield* sql`SELECT COUNT(*) AS n, SUM(bytes) AS bytes, MAX(recency) AS recency FROM cache_entries`.pipe(
      Effect.flatMap(Schema.decodeUnknown(TotalsRow)),
      Effect.orDie
    )
    const totals = { entries: loaded.n, bytes: loaded.bytes ?? 0 }
    // Recency is a counter rather than a time: two uses within one millisecond still have an order.
    let recency = loaded.recency ?? 0
    /** Account for removed rows; how many of them had not expired at `at`. */
    const removed = (rows: typeof GoneRows.Type, at: number) => {
      let unexpired = 0
      for (const row of rows) {
        totals.entries--
        totals.bytes -= row.bytes
        if (row.expires_at > at) unexpired++
      }
      return unexpired
    }
    const gone = Effect.flatMap(Schema.decodeUnknown(GoneRows))
    /** Remove a key's row; `read`: only the row a lookup read (not one an insert has put there since). */
    const remove = (key: string, at: number, read?: number) =>
      (read === undefined
        ? sql`DELETE FROM cache_entries WHERE key = ${key} RETURNING bytes, expires_at`
        : sql`DELETE FROM cache_entries WHERE key = ${key} AND recency = ${read} RETURNING bytes, expires_at`).pipe(
        gone,
        Effect.map((rows) => removed(rows, at)),
        Effect.orDie
      )
    // Inserts one at a time: an insert removes the key's old row first to know its size.
    const inserting = yield* Effect.makeSemaphore(1)
    /** Least recently used first, until the totals are within the limits again; `keep` (the new entry) stays. */
    const evict = (keep: string, at: number) =>
      Effect.gen(function*() {
        let evicted = 0
        while (totals.entries > settings.max_entries || totals.bytes > settings.max_bytes) {
          const batch = Math.max(totals.entries - settings.max_entries, 16)
          const oldest = yield* sql`SELECT key, bytes FROM cache_entries WHERE key != ${keep} ORDER BY recency ASC LIMIT ${batch}`.pipe(
            Effect.flatMap(Schema.decodeUnknown(OldestRows)),
            Effect.orDie
          )
          if (oldest.length === 0) break
          const victims: Array<string> = []
          let entries = totals.entries
          let bytes = totals.bytes
          for (const row of oldest) {
            if (entries <= settings.max_entries && bytes <= settings.max_bytes) break
            victims.push(row.key)
            entries--
            bytes -= row.bytes
          }
          evicted += yield* sql`DELETE FROM cache_entries WHERE ${sql.in("key", victims)} RETURNING bytes, expires_at`.pipe(
            gone,
            Effect.map((rows) => removed(rows, at)),
            Effect.orDie
          )
        }
        return evicted
      })
    const store: CacheStore = {
      get: (key) =>
        Effect.gen(function*() {
          const rows = yield* sql`SELECT events, expires_at, recency FROM cache_entries WHERE key = ${key}`.pipe(
            Effect.flatMap(Schema.decodeUnknown(EntryRows)),
            Effect.orDie
          )
          const row = rows[0]
          if (row === undefined) return Option.none()
          const at = yield* now
          if (row.expires_at <= at) {
            yield* remove(key, at, row.recency)
            return Option.none()
          }
          const events = yield* decodeStored(row.events).pipe(Effect.option)
          // A row this version cannot read is dropped, not served.
          if (Option.isNone(events)) yield* remove(key, at, row.recency)
          else yield* sql`UPDATE cache_entries SET recency = ${++recency} WHERE key = ${key}`.pipe(Effect.orDie)
          return Option.map(events, (stored) => stored.map(toTurnEvent))
        }),
      put: (key, events) =>
        inserting.withPermits(1)(Effect.gen(function*() {
          const text = encodeEvents(events)
          const size = Buffer.byteLength(text)
          if (size > settings.max_bytes) return 0
          const at = yield* now
          // The entry it replaces is neither counted twice nor counted as evicted.
          yield* remove(key, at)
          yield* sql`INSERT INTO cache_entries ${
            sql.insert({ key, events: text, bytes: size, stored_at: at, expires_at: at + settings.ttl_seconds * 1000, recency: ++recency })
          }`.pipe(Effect.orDie)
          totals.entries++
          totals.bytes += size
          return yield* evict(key, at)
        })),
      size: Effect.sync(() => ({ entries: totals.entries, bytes: totals.bytes }))
    }
    return store
  })

// ---------------------------------------------------------------------------------------------
// Metrics (gateway_cache_*), for /metrics

export const cacheMetrics = {
  hits: Metric.counter("gateway_cache_hits", { description: "Answers served from the cache", incremental: true }),
  misses: Metric.counter("gateway_cache_misses", { description: "Cacheable requests that ran a CLI turn", incremental: true }),
  bypasses: Metric.counter("gateway_cache_bypasses", {
    description: "Requests the cache did not look up (not cacheable, Cache-Control: no-cache, cache off)",
    incremental: true
  }),
  joins: Metric.counter("gateway_cache_singleflight_joins", {
    description: "Requests that waited for an identical request's running turn",
    incremental: true
  }),
  stores: Metric.counter("gateway_cache_stores", { description: "Answers stored", incremental: true }),
  evictions: Metric.counter("gateway_cache_evictions", { description: "Unexpired entries evicted for room", incremental: true }),
  entries: Metric.gauge("gateway_cache_entries", { description: "Entries in the cache" }),
  bytes: Metric.gauge("gateway_cache_bytes", { description: "Bytes of the cached answers (events as JSON)" })
}

// ---------------------------------------------------------------------------------------------
// The service

/** Only a complete answer is stored: a plain stop, no CLI tool used. */
const storable = (events: ReadonlyArray<TurnEvent>) => {
  const last = events.at(-1)
  return last !== undefined && last._tag === "Finished" && last.reason === "stop" && last.usedCliTools !== true
}

/**
 * A stateless client's follow-up: the messages before the request's new part hold more than its
 * opening (system / developer / user messages), i.e. an earlier answer or tool result. Such a
 * request continues the conversation its history matches (Conversations): a hit would record no
 * turn, and the client's next request would continue another client's conversation or replay its
 * transcript. Any role other than the opening ones counts, so a role added later is not cached.
 */
export const isFollowUp = (history: ReadonlyArray<HistoryMessage>) =>
  history.some((message) => message.role !== "system" && message.role !== "developer" && message.role !== "user")

/**
 * A stored answer as its dialect renders it; it cost nothing this time. A TurnStream: a renderer
 * folds its events without running a Stream (a few events through Stream.runFold were most of a
 * hit's own time, measured).
 */
const replay = (stored: ReadonlyArray<TurnEvent>): Answer => ({
  events: TurnStream.fromChunk(Chunk.fromIterable(stored.map((event) => event._tag === "Finished" ? TurnEvent.Finished({ ...event, costUsd: 0 }) : event))),
  conversationId: undefined
})

interface FlightState {
  readonly events: Chunk.Chunk<TurnEvent>
  readonly exit: Option.Option<Exit.Exit<void, TurnError>>
}

/** One running turn that identical requests share. */
interface Flight {
  readonly key: string
  readonly state: SubscriptionRef.SubscriptionRef<FlightState>
  /** The turn started (its conversation), or failed before its first event (429, spawn, …). */
  readonly started: Deferred.Deferred<string | undefined, unknown>
  /** Completed; whether its answer was stored. */
  readonly done: Deferred.Deferred<boolean>
  /** Requests that still want the turn: the one that started it and those waiting for it. */
  requesters: number
  /** Its end is known (state.exit set): a requester leaving after that stops nothing. */
  finished: boolean
  fiber: Fiber.RuntimeFiber<boolean, unknown> | undefined
}

/** Registers a request as a requester of a flight (see `holding`). */
type Hold = (flight: Flight) => void

export interface CacheOptions {
  /** False: the dialect or the request rules caching out (the runs of `n`, Responses with `store`). */
  readonly cacheable: boolean
}

const makeCache = (settings: CacheSettings, store: CacheStore, signatureOf: (request: TurnRequest) => string) =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const inflight = new Map<string, Flight>()
    const registering = yield* Effect.makeSemaphore(1)
    const counts = { hits: 0, misses: 0, bypasses: 0, joins: 0, stores: 0, evictions: 0 }
    const count = (name: keyof typeof counts, by = 1) =>
      Effect.suspend(() => {
        counts[name] += by
        return Metric.incrementBy(cacheMetrics[name], by)
      })
    const report = (status: CacheStatus) =>
      Effect.zipRight(
        FiberRef.getWith(CurrentCacheExchange, (exchange) => Effect.sync(() => exchange !== undefined && (exchange.status = status))),
        count(status === "hit" ? "hits" : status === "miss" ? "misses" : "bypasses")
      )
    const gauges = Effect.flatMap(store.size, ({ bytes, entries }) =>
      Effect.zipRight(Metric.set(cacheMetrics.entries, entries), Metric.set(cacheMetrics.bytes, bytes)))

    /** The turn's events as they come, from the start, then its end. */
    const follow = (flight: Flight): Stream.Stream<TurnEvent, TurnError> =>
      flight.state.changes.pipe(
        Stream.mapAccum(0, (seen, state) => [Chunk.size(state.events), { fresh: Chunk.drop(state.events, seen), exit: state.exit }] as const),
        Stream.takeUntil((step) => Option.isSome(step.exit)),
        Stream.flatMap(({ exit, fresh }) =>
          Stream.concat(
            Stream.fromChunk(fresh),
            Option.isSome(exit) && Exit.isFailure(exit.value) ? Stream.failCause(exit.value.cause) : Stream.empty
          )
        )
      )

    /**
     * Start `run` in a scope of the cache's own and read it to the end there, whoever waits for it;
     * `share`: identical requests may join it; `keep`: store its answer if it is storable.
     */
    const fly = <E>(key: string, run: Effect.Effect<Answer, E, Scope.Scope>, options: { share: boolean; keep: boolean }, hold: Hold) =>
      // Registered, held and started in one step: a flight in `inflight` always has a fiber.
      Effect.uninterruptible(Effect.gen(function*() {
        const flight: Flight = {
          key,
          state: yield* SubscriptionRef.make<FlightState>({ events: Chunk.empty(), exit: Option.none() }),
          started: yield* Deferred.make<string | undefined, unknown>(),
          done: yield* Deferred.make<boolean>(),
          requesters: 0,
          finished: false,
          fiber: undefined
        }
        hold(flight)
        if (options.share) inflight.set(key, flight)
        const turnScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
        const body = Effect.gen(function*() {
          const answer = yield* Scope.extend(run, turnScope)
          yield* Deferred.succeed(flight.started, answer.conversationId)
          const exit = yield* Stream.runForEachChunk(answer.events, (chunk) =>
            SubscriptionRef.update(flight.state, (state) => ({ ...state, events: Chunk.appendAll(state.events, chunk) }))).pipe(Effect.exit)
          // The turn's process goes back to the pool (or is parked, or killed) before anyone is told.
          yield* Scope.close(turnScope, exit)
          const events = Chunk.toReadonlyArray((yield* SubscriptionRef.get(flight.state)).events)
          const stored = options.keep && Exit.isSuccess(exit) && storable(events)
          if (stored) {
            yield* count("evictions", yield* store.put(key, events))
            yield* count("stores")
            yield* gauges
          }
          if (inflight.get(key) === flight) inflight.delete(key)
          flight.finished = true
          yield* SubscriptionRef.update(flight.state, (state) => ({ ...state, exit: Option.some(exit) }))
          return stored
        })
        flight.fiber = yield* Effect.interruptible(body).pipe(
          Effect.onExit((exit) =>
            Effect.gen(function*() {
              if (inflight.get(key) === flight) inflight.delete(key)
              yield* Scope.close(turnScope, Exit.asVoid(exit))
              if (Exit.isFailure(exit)) {
                // Failed before the first event, or cut short (every requester gone, the gateway
                // stopping): every waiter is told.
                flight.finished = true
                yield* Deferred.failCause(flight.started, exit.cause)
                const state = yield* SubscriptionRef.get(flight.state)
                if (Option.isNone(state.exit)) {
                  yield* SubscriptionRef.set(flight.state, { ...state, exit: Option.some(Exit.die("the cached turn was interrupted")) })
                }
              }
              yield* Deferred.succeed(flight.done, Exit.isSuccess(exit) && exit.value)
            })
          ),
          Effect.forkIn(scope)
        )
        return flight
      }))

    /**
     * A requester leaves (its scope closes). The last one to leave a flight that has not finished
     * stops it: its turn is interrupted as on a plain client disconnect (the CLI is told to stop,
     * then kept or pooled; its session slot is freed), and nothing is stored.
     */
    const leave = (flight: Flight) =>
      Effect.suspend(() => {
        flight.requesters--
        if (flight.requesters > 0 || flight.finished || flight.fiber === undefined) return Effect.void
        if (inflight.get(flight.key) === flight) inflight.delete(flight.key)
        return Effect.asVoid(Fiber.interrupt(flight.fiber))
      })

    /**
     * This request's hold on the flight it starts or joins, let go when its scope closes (for a
     * streamed answer: when the body is written, or the client has gone away).
     */
    const holding = Effect.gen(function*() {
      const held: Array<Flight> = []
      yield* Effect.addFinalizer(() => Effect.forEach(held, leave, { discard: true }))
      return (flight: Flight) => {
        flight.requesters++
        held.push(flight)
      }
    })

    /** A request's view of a flight: its start (or the error that prevented it), then its events live. */
    const answerOf = <E>(flight: Flight) =>
      Effect.map(
        Deferred.await(flight.started) as Effect.Effect<string | undefined, E>,
        (conversationId): Answer => ({ events: follow(flight), conversationId })
      )

    const through = <E>(
      request: TurnRequest,
      options: CacheOptions,
      run: Effect.Effect<Answer, E, Scope.Scope>
    ): Effect.Effect<Answer, E, Scope.Scope> =>
      Effect.gen(function*() {
        const exchange = yield* FiberRef.get(CurrentCacheExchange)
        const { noCache, noStore } = cacheDirectives(exchange?.cacheControl)
        const ref = request.conversation
        // A continuation's answer depends on state outside the request (a named conversation, a parked
        // turn, the conversation a stateless client's history is matched to: see isFollowUp).
        const continuation = ref === undefined || ref.id !== undefined || request.toolResults !== undefined ||
          request.launch.resume !== undefined || isFollowUp(ref.history)
        if (!settings.enabled || !options.cacheable || continuation || (noCache && noStore)) {
          yield* report("bypass")
          return yield* run
        }
        const key = cacheKey(request, settings.shared ? "" : ref.owner, signatureOf(request))
        if (noCache) {
          // Not looked up, but the fresh answer replaces the stored one.
          yield* report("bypass")
          return yield* answerOf<E>(yield* fly(key, run, { share: false, keep: true }, yield* holding))
        }
        const hit = yield* store.get(key)
        if (Option.isSome(hit)) {
          yield* report("hit")
          return replay(hit.value)
        }
        const hold = yield* holding
        // Finding a running turn and starting one is one step: two identical requests cannot both
        // start one, and a flight's last requester cannot leave it between a join's lookup and hold.
        const { led, running } = yield* registering.withPermits(1)(Effect.suspend((): Effect.Effect<{
          readonly running: Flight | undefined
          readonly led: Flight | undefined
        }> => {
          const running = inflight.get(key)
          if (running !== undefined) hold(running)
          if (running !== undefined || noStore) return Effect.succeed({ running, led: undefined })
          return Effect.map(fly(key, run, { share: true, keep: true }, hold), (led) => ({ running: undefined, led }))
        }))
        if (running !== undefined) {
          yield* count("joins")
          // Wait for the whole answer, then replay it; one that was not stored (tool calls, a cut
          // answer, the CLI's own tools) was the first requester's: this one runs its own turn.
          const stored = yield* Deferred.await(running.done)
          const state = yield* SubscriptionRef.get(running.state)
          const failed = Option.isSome(state.exit) && Exit.isFailure(state.exit.value)
          if (stored) {
            yield* report("hit")
            return replay(Chunk.toReadonlyArray(state.events))
          }
          if (failed) {
            // The same error as the first requester (a failure before the first event fails here).
            yield* report("miss")
            const answer = yield* answerOf<E>(running)
            return { ...answer, conversationId: undefined }
          }
          yield* report("miss")
          return yield* run
        }
        yield* report("miss")
        return led === undefined ? yield* run : yield* answerOf<E>(led)
      })

    const stats: Effect.Effect<CacheStats> = Effect.map(store.size, ({ bytes, entries }) => ({
      enabled: settings.enabled,
      ...counts,
      entries,
      bytes
    }))

    yield* gauges
    return { through, stats, settings } as const
  })

export class Cache extends Effect.Service<Cache>()("Cache", {
  scoped: Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const settings = config.cache
    const store = settings.enabled && settings.store === "sqlite"
      ? yield* sqliteStore(settings, (yield* ConversationStore).sql)
      : memoryStore(settings)
    return yield* makeCache(settings, store, (request) => launchSignature(config, { ...request.launch, resume: undefined }))
  }),
  dependencies: [ConversationStore.Default]
}) {
  /** An in-memory cache with these settings (tests, embedding apps); the key leaves config's launch out. */
  static readonly layerTest = (settings: Partial<CacheSettings> = {}) =>
    Layer.scoped(
      Cache,
      Effect.gen(function*() {
        const full: CacheSettings = {
          enabled: true,
          max_entries: 1000,
          ttl_seconds: 3600,
          max_bytes: 64 * 1024 * 1024,
          shared: false,
          store: "memory",
          ...settings
        }
        return Cache.make(yield* makeCache(full, memoryStore(full), () => ""))
      })
    )
}
