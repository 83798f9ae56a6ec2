import { SqliteClient } from "@effect/sql-sqlite-node"
import { SqlClient, Statement } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, Option, Scope, Stream, TestClock } from "effect"
import { loadConfig } from "../../src/config/GatewayConfig.js"
import { historyMessage, type HistoryMessage, TurnEvent, type TurnRequest, UpstreamError } from "../../src/domain/Turn.js"
import { Cache, type CacheSettings, cacheKey, canonicalJson, isFollowUp, sqliteStore, withCacheExchange } from "../../src/services/Cache.js"
import { aggregate as anthropicAggregate } from "../../src/protocols/anthropic/render.js"
import { aggregate as openaiAggregate } from "../../src/protocols/openai/render.js"
import { migrate } from "../../src/store/migrations.js"

// The Cache service on its own: TTL and eviction under the TestClock, single flight, the key, the
// SQLite store. End to end (real CLI, real clients): test/e2e/cache.test.ts.

const request = (text: string, owner = "tenant"): TurnRequest => ({
  launch: { model: "sonnet", systemPrompt: undefined },
  input: [{ type: "text", text }],
  conversation: { id: undefined, owner, history: [], added: [] }
})

const usage = { inputTokens: 3, outputTokens: 2, cacheReadTokens: 0, cacheCreationTokens: 0 }
const answerEvents = (text: string) => [
  TurnEvent.Started({ model: "claude-sonnet-5-5", sessionId: "s" }),
  TurnEvent.TextDelta({ text }),
  TurnEvent.Finished({ reason: "stop", usage, costUsd: 0.01, sessionId: "s" })
]

/** A stand-in for ChatService's uncached turn that counts its runs. */
const counter = () => {
  let runs = 0
  const run = (text: string) =>
    Effect.sync(() => {
      runs++
      return { events: Stream.fromIterable(answerEvents(text)), conversationId: "conv" }
    })
  return { run, runs: () => runs }
}

const textOf = (events: Stream.Stream<TurnEvent, unknown>) =>
  Effect.map(Stream.runCollect(events), (chunk) => [...chunk].flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join(""))

const ask = (text: string, run: Effect.Effect<{ events: Stream.Stream<TurnEvent>; conversationId: string | undefined }>) =>
  Effect.flatMap(Cache, (cache) => Effect.scoped(Effect.flatMap(cache.through(request(text), { cacheable: true }, run), (a) => textOf(a.events))))

describe("Cache (memory)", () => {
  it.effect("serves an entry until its TTL has passed", () =>
    Effect.gen(function*() {
      const { run, runs } = counter()
      expect(yield* ask("a", run("A"))).toBe("A")
      expect(yield* ask("a", run("A"))).toBe("A")
      expect(runs()).toBe(1)
      yield* TestClock.adjust("59 seconds")
      yield* ask("a", run("A"))
      expect(runs()).toBe(1)
      yield* TestClock.adjust("2 seconds")
      yield* ask("a", run("A"))
      expect(runs()).toBe(2)
      const stats = yield* Effect.flatMap(Cache, (cache) => cache.stats)
      expect(stats).toMatchObject({ hits: 2, misses: 2, stores: 2, entries: 1 })
    }).pipe(Effect.provide(Cache.layerTest({ ttl_seconds: 60 }))))

  it.effect("evicts the least recently used entry past max_entries", () =>
    Effect.gen(function*() {
      const { run, runs } = counter()
      yield* ask("a", run("A"))
      yield* ask("b", run("B"))
      yield* ask("a", run("A")) // a is now the most recently used
      yield* ask("c", run("C")) // evicts b
      expect(runs()).toBe(3)
      yield* ask("a", run("A"))
      yield* ask("c", run("C"))
      expect(runs()).toBe(3)
      yield* ask("b", run("B"))
      expect(runs()).toBe(4)
      const stats = yield* Effect.flatMap(Cache, (cache) => cache.stats)
      expect(stats.evictions).toBe(2)
      expect(stats.entries).toBe(2)
    }).pipe(Effect.provide(Cache.layerTest({ max_entries: 2 }))))

  it.effect("keeps the bytes under max_bytes", () =>
    Effect.gen(function*() {
      const { run } = counter()
      yield* ask("a", run("x".repeat(300)))
      yield* ask("b", run("y".repeat(300)))
      const stats = yield* Effect.flatMap(Cache, (cache) => cache.stats)
      expect(stats.entries).toBe(1)
      expect(stats.bytes).toBeLessThanOrEqual(700)
      expect(stats.evictions).toBe(1)
    }).pipe(Effect.provide(Cache.layerTest({ max_bytes: 700 }))))

  it.effect("single flight: concurrent identical requests share one run; a failure reaches each of them and is not stored", () =>
    Effect.gen(function*() {
      let runs = 0
      const failing = Effect.sync(() => runs++).pipe(
        Effect.zipRight(Effect.sleep("1 second")),
        Effect.as({
          events: Stream.concat(
            Stream.make(TurnEvent.TextDelta({ text: "partial" })),
            Stream.fail(new UpstreamError({ status: 529, errorType: "overloaded_error", message: "Overloaded" }))
          ),
          conversationId: undefined
        })
      )
      const cache = yield* Cache
      const one = Effect.scoped(Effect.flatMap(cache.through(request("f"), { cacheable: true }, failing), (a) => Stream.runCollect(a.events)))
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(one))
      yield* TestClock.adjust("1 second")
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      expect(runs).toBe(1)
      expect(exits.every(Exit.isFailure)).toBe(true)
      const stats = yield* cache.stats
      expect(stats).toMatchObject({ joins: 2, stores: 0, entries: 0 })
      // The next request runs again.
      const { run } = counter()
      expect(yield* ask("f", run("ok"))).toBe("ok")
    }).pipe(Effect.provide(Cache.layerTest())))

  /**
   * A stand-in turn that sends one delta, then (after `seconds`) the rest; `ended` receives the
   * exit its scope (the turn's process, its session slot) was closed with.
   */
  const slowTurn = (seconds: number) =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<Exit.Exit<unknown, unknown>>()
      const firstSent = yield* Deferred.make<void>()
      let runs = 0
      const run = Effect.gen(function*() {
        runs++
        yield* Effect.addFinalizer((exit) => Deferred.succeed(ended, exit))
        const [started, delta, finished] = answerEvents("slow")
        return {
          events: Stream.concat(
            Stream.make(started!, delta!).pipe(Stream.ensuring(Deferred.succeed(firstSent, undefined))),
            Stream.fromEffect(Effect.as(Effect.sleep(`${seconds} seconds`), finished!))
          ),
          conversationId: "conv"
        }
      })
      return { run, ended, firstSent, runs: () => runs }
    })

  const follow = (cache: Cache, run: Effect.Effect<{ events: Stream.Stream<TurnEvent>; conversationId: string | undefined }, never, Scope.Scope>) =>
    Effect.scoped(Effect.flatMap(cache.through(request("slow"), { cacheable: true }, run), (a) => textOf(a.events)))

  /** Until `n` requests in all have joined a running flight. */
  const joined = (cache: Cache, n: number) =>
    Effect.gen(function*() {
      while ((yield* cache.stats).joins < n) yield* Effect.yieldNow()
    })

  it.effect("single flight: when its only requester goes away, the turn is interrupted and nothing is stored", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const slow = yield* slowTurn(60)
      const requester = yield* Effect.fork(follow(cache, slow.run))
      yield* Deferred.await(slow.firstSent)
      yield* Fiber.interrupt(requester)
      // The turn's scope was closed by the interruption, before its answer was complete.
      const exit = yield* Deferred.await(slow.ended)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(yield* cache.stats).toMatchObject({ stores: 0, entries: 0 })
      // The next identical request starts a turn of its own (the stopped one is not joined).
      const fresh = yield* slowTurn(1)
      const next = yield* Effect.fork(follow(cache, fresh.run))
      yield* Deferred.await(fresh.firstSent)
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(next)).toBe("slow")
      expect([slow.runs(), fresh.runs()]).toEqual([1, 1])
      expect(yield* cache.stats).toMatchObject({ joins: 0, stores: 1 })
    }).pipe(Effect.provide(Cache.layerTest())))

  it.effect("single flight: a Cache-Control no-cache request's turn stops when it goes away", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const slow = yield* slowTurn(60)
      const exchange = withCacheExchange({ "cache-control": "no-cache" })
      const requester = yield* Effect.fork(exchange.run(follow(cache, slow.run)))
      yield* Deferred.await(slow.firstSent)
      yield* Fiber.interrupt(requester)
      expect(Exit.isInterrupted(yield* Deferred.await(slow.ended))).toBe(true)
      expect(exchange.exchange.status).toBe("bypass")
      expect(yield* cache.stats).toMatchObject({ stores: 0 })
    }).pipe(Effect.provide(Cache.layerTest())))

  it.effect("single flight: the first requester going away while another waits stops nothing; the last waiter going away does", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const slow = yield* slowTurn(2)
      const first = yield* Effect.fork(follow(cache, slow.run))
      yield* Deferred.await(slow.firstSent)
      const waiter = yield* Effect.fork(follow(cache, Effect.die("a waiter runs no turn of its own")))
      yield* joined(cache, 1)
      yield* Fiber.interrupt(first)
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(waiter)).toBe("slow")
      expect(Exit.isSuccess(yield* Deferred.await(slow.ended))).toBe(true)
      expect(yield* cache.stats).toMatchObject({ joins: 1, stores: 1 })

      // Two requesters of another flight both leave: the turn stops.
      const other = yield* slowTurn(60)
      const ask2 = Effect.scoped(Effect.flatMap(cache.through(request("other"), { cacheable: true }, other.run), (a) => textOf(a.events)))
      const leader = yield* Effect.fork(ask2)
      yield* Deferred.await(other.firstSent)
      const joiner = yield* Effect.fork(ask2)
      yield* joined(cache, 2)
      yield* Fiber.interrupt(joiner)
      expect(yield* Deferred.isDone(other.ended)).toBe(false)
      yield* Fiber.interrupt(leader)
      expect(Exit.isInterrupted(yield* Deferred.await(other.ended))).toBe(true)
      expect(other.runs()).toBe(1)
    }).pipe(Effect.provide(Cache.layerTest())))

  it.effect("bypasses requests that are not cacheable and turns that are not storable", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      let runs = 0
      const toolStop = Effect.sync(() => {
        runs++
        return {
          events: Stream.make(TurnEvent.Finished({ reason: "tool_calls", usage, costUsd: 0, sessionId: "s", toolCalls: [] })),
          conversationId: undefined
        }
      })
      const ownTools = Effect.sync(() => {
        runs++
        return {
          events: Stream.make(TurnEvent.Finished({ reason: "stop", usage, costUsd: 0, sessionId: "s", usedCliTools: true })),
          conversationId: undefined
        }
      })
      for (const run of [toolStop, toolStop, ownTools, ownTools]) {
        yield* Effect.scoped(Effect.flatMap(cache.through(request(`r${runs < 2 ? 1 : 2}`), { cacheable: true }, run), (a) => Stream.runDrain(a.events)))
      }
      const { run } = counter()
      yield* Effect.scoped(cache.through(request("n"), { cacheable: false }, run("x")))
      yield* Effect.scoped(cache.through(request("n"), { cacheable: false }, run("x")))
      const named: TurnRequest = { ...request("n"), conversation: { id: "conv_1", owner: "tenant", history: [], added: [] } }
      yield* Effect.scoped(Effect.flatMap(cache.through(named, { cacheable: true }, run("x")), (a) => Stream.runDrain(a.events)))
      yield* Effect.scoped(Effect.flatMap(cache.through(named, { cacheable: true }, run("x")), (a) => Stream.runDrain(a.events)))
      expect(runs).toBe(4)
      const stats = yield* cache.stats
      expect(stats).toMatchObject({ stores: 0, bypasses: 4, misses: 4 })
    }).pipe(Effect.provide(Cache.layerTest())))
})

describe("replayed answers", () => {
  it.effect("a hit's events fold (through their pull) into the same JSON answer as the same events run as a Stream", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const { run } = counter()
      yield* Effect.scoped(Effect.flatMap(cache.through(request("r"), { cacheable: true }, run("replayed")), (a) => Stream.runDrain(a.events)))
      const known = Chunk.toReadonlyArray(yield* Effect.scoped(Effect.flatMap(cache.through(request("r"), { cacheable: true }, run("replayed")), (a) => Stream.runCollect(a.events))))
      expect(known.map((event) => event._tag)).toEqual(["Started", "TextDelta", "Finished"])
      expect(known.at(-1)).toMatchObject({ _tag: "Finished", costUsd: 0 })
      const hit = yield* Effect.scoped(cache.through(request("r"), { cacheable: true }, run("replayed")))
      const meta = { id: "chatcmpl-1", created: 1, model: "sonnet" }
      // The same events as a stream the renderer has to run.
      const streamed = Stream.fromIterable(known)
      expect(yield* openaiAggregate(hit.events, meta)).toEqual(yield* openaiAggregate(streamed, meta))
      const anthropicMeta = { id: "msg_1", model: "sonnet", showThinking: true }
      expect(yield* anthropicAggregate(hit.events, anthropicMeta)).toEqual(yield* anthropicAggregate(streamed, anthropicMeta))
      expect((yield* openaiAggregate(hit.events, meta)).completion.choices[0]?.message.content).toBe("replayed")
    }).pipe(Effect.provide(Cache.layerTest())))
})

describe("stateless follow-ups", () => {
  it("a request whose history holds more than system and user messages is never looked up nor stored", () =>
    expect([
      isFollowUp([]),
      isFollowUp([historyMessage("system", "be terse"), historyMessage("developer", "d"), historyMessage("user", "a"), historyMessage("user", "b")]),
      isFollowUp([historyMessage("user", "q1"), historyMessage("assistant", "a1")]),
      isFollowUp([historyMessage("user", "q1"), historyMessage("assistant", "", [{ id: "t", name: "f", arguments: "{}" }]), historyMessage("tool", "r", [], "t")])
    ]).toEqual([false, false, true, true]))

  it.effect("bypasses a follow-up (x-cache: bypass) and caches an opening with several user messages", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const { run, runs } = counter()
      const withHistory = (history: ReadonlyArray<HistoryMessage>): TurnRequest => ({
        ...request("next"),
        conversation: { id: undefined, owner: "tenant", history, added: [historyMessage("user", "next")] }
      })
      const followUp = withHistory([historyMessage("user", "first"), historyMessage("assistant", "answer")])
      const opening = withHistory([historyMessage("system", "s"), historyMessage("user", "first")])
      const statuses: Array<string | undefined> = []
      for (const turn of [followUp, followUp, opening, opening]) {
        const { exchange, run: within } = withCacheExchange({})
        yield* within(Effect.scoped(Effect.flatMap(cache.through(turn, { cacheable: true }, run("x")), (a) => Stream.runDrain(a.events))))
        statuses.push(exchange.status)
      }
      expect(statuses).toEqual(["bypass", "bypass", "miss", "hit"])
      expect(runs()).toBe(3)
    }).pipe(Effect.provide(Cache.layerTest())))
})

describe("the key", () => {
  it("is canonical JSON of everything that changes the answer, images by content hash, per tenant", () => {
    expect(canonicalJson({ b: 1, a: [{ d: undefined, c: "x" }] })).toBe(`{"a":[{"c":"x"}],"b":1}`)
    const png = Buffer.from("png bytes").toString("base64")
    const withImage = (data: string): TurnRequest => ({
      ...request("look"),
      input: [{ type: "image", source: { type: "base64", media_type: "image/png", data } }, { type: "text", text: "look" }]
    })
    const key = cacheKey(withImage(png), "t", "sig")
    expect(cacheKey(withImage(png), "t", "sig")).toBe(key)
    expect(cacheKey(withImage(Buffer.from("other").toString("base64")), "t", "sig")).not.toBe(key)
    expect(cacheKey(withImage(png), "u", "sig")).not.toBe(key)
    expect(cacheKey(withImage(png), "t", "other launch")).not.toBe(key)
    const stop = { ...withImage(png), stop: ["END"] }
    expect(cacheKey(stop, "t", "sig")).not.toBe(key)
    const system = { ...withImage(png), launch: { model: "sonnet", systemPrompt: "be terse" } }
    expect(cacheKey(system, "t", "sig")).not.toBe(key)
  })
})

describe("configuration", () => {
  it.effect("reads the cache section from claude-code-api-rs's environment names", () =>
    Effect.gen(function*() {
      const config = yield* loadConfig({
        file: "/dev/null",
        env: { CLAUDE_CODE__CACHE__ENABLED: "true", CLAUDE_CODE__CACHE__MAX_ENTRIES: "5", CLAUDE_CODE__CACHE__TTL_SECONDS: "7" }
      })
      expect(config.cache).toMatchObject({ enabled: true, max_entries: 5, ttl_seconds: 7, shared: false, store: "memory" })
      const off = yield* loadConfig({ file: "/dev/null", env: {} })
      expect(off.cache.enabled).toBe(false)
    }))
})

describe("SQLite store", () => {
  const settings: CacheSettings = { enabled: true, max_entries: 2, ttl_seconds: 60, max_bytes: 1_000_000, shared: false, store: "sqlite" }
  it.effect("stores, expires and evicts in the cache_entries table", () =>
    Effect.gen(function*() {
      yield* migrate
      const sql = yield* SqlClient.SqlClient
      const store = yield* sqliteStore(settings, sql)
      yield* store.put("a", answerEvents("A"))
      yield* store.put("b", answerEvents("B"))
      const a = yield* store.get("a")
      expect(Option.map(a, (events) => events.map((e) => e._tag))).toEqual(Option.some(["Started", "TextDelta", "Finished"]))
      expect(Option.getOrThrow(a)[2]).toEqual(answerEvents("A")[2])
      expect(yield* store.put("c", answerEvents("C"))).toBe(1) // b was the least recently used
      expect(Option.isNone(yield* store.get("b"))).toBe(true)
      expect((yield* store.size).entries).toBe(2)
      yield* TestClock.adjust("61 seconds")
      expect(Option.isNone(yield* store.get("a"))).toBe(true)
      expect((yield* store.size).entries).toBe(1)
    }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" }))))

  it.effect("keeps its totals in memory (no COUNT or SUM per insert), equal to the table's after inserts, replacements, expiry and eviction", () =>
    Effect.gen(function*() {
      yield* migrate
      const sql = yield* SqlClient.SqlClient
      const table = sql`SELECT COUNT(*) AS entries, COALESCE(SUM(bytes), 0) AS bytes FROM cache_entries`.pipe(
        Effect.map((rows) => rows[0] as { entries: number; bytes: number })
      )
      const limits: CacheSettings = { ...settings, max_entries: 3, max_bytes: 1200 }
      const store = yield* sqliteStore(limits, sql)
      const statements: Array<string> = []
      const recorded = Statement.withTransformer((statement) =>
        Effect.sync(() => {
          statements.push(statement.compile(true)[0])
          return statement
        })
      )
      const check = Effect.gen(function*() {
        expect(yield* store.size).toEqual(yield* table)
      })
      const evicted: Array<number> = []
      for (const [key, text] of [["a", "A"], ["b", "B"], ["a", "A2"], ["c", "C".repeat(100)], ["d", "D"]] as const) {
        evicted.push(yield* recorded(store.put(key, answerEvents(text))))
        yield* check
      }
      // "a" was replaced in place (not evicted); "d" made four: the least recently used ("b") went.
      expect(evicted).toEqual([0, 0, 0, 0, 1])
      expect(Option.isNone(yield* store.get("b"))).toBe(true)
      expect(Option.isSome(yield* recorded(store.get("a")))).toBe(true)
      // Past max_bytes: the oldest go ("c" then "d"; "a" was just used) until the new one fits.
      expect(yield* recorded(store.put("e", answerEvents("E".repeat(500))))).toBe(2)
      yield* check
      expect((yield* store.size).entries).toBe(2)
      // An expired entry found by a lookup leaves the totals too.
      yield* TestClock.adjust("61 seconds")
      expect(Option.isNone(yield* recorded(store.get("e")))).toBe(true)
      yield* check
      // Expired entries of an earlier run go at start; the totals are read once.
      yield* recorded(store.put("f", answerEvents("F")))
      const reopened = yield* sqliteStore(limits, sql)
      expect(yield* reopened.size).toEqual({ entries: 1, bytes: (yield* table).bytes })
      expect(yield* table).toMatchObject({ entries: 1 })
      expect(statements.length).toBeGreaterThan(0)
      expect(statements.filter((text) => /COUNT\(|SUM\(/i.test(text))).toEqual([])
    }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" }))))
})
