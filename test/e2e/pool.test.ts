import OpenAI from "openai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  cliChildren,
  type Gateway,
  health,
  openaiFor,
  postChat,
  standbys,
  startGateway,
  waitForHealth,
  waitForNoCliChildren
} from "../support/gateway.js"
import { startUpstream, type Upstream } from "../support/upstream.js"

// Warm pool, admission queue and shutdown, with the real CLI against the scripted upstream.

let upstream: Upstream

beforeAll(async () => {
  upstream = await startUpstream()
})

afterAll(async () => {
  await upstream?.close()
  expect(await waitForNoCliChildren()).toEqual([])
})

const ask = (client: OpenAI, content: string) =>
  client.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content }] })

const sessionIdOf = (marker: string) =>
  upstream.requestsFor(marker).map((r) => r.headers["x-claude-code-session-id"])

const REPLACE_DELAY_MS = 1000

describe("warm pool", () => {
  let gateway: Gateway
  let client: OpenAI
  beforeAll(async () => {
    gateway = await startGateway({
      upstreamUrl: upstream.url,
      // Without reuse: how standbys are replaced (reuse has its own tests in reuse.test.ts).
      config: { pool: { prewarm: 1, replace_delay_ms: REPLACE_DELAY_MS, reuse: false }, conversation: { max_live: 0 } }
    })
    client = openaiFor(gateway)
  })
  afterAll(() => gateway?.close())

  it("serves a request from a standby, with no spawn on the request path", async () => {
    const before = await waitForHealth(gateway, (h) => standbys(h) === 1 && h.pool.processes === 1)
    upstream.on("WARM-1", { kind: "message", blocks: [{ type: "text", text: "warm" }] })
    const started = Date.now()
    // Watched from the start of the request: when does the replacement begin to spawn?
    const replacing = waitForHealth(gateway, (h) => h.pool.spawned > before.pool.spawned).then((h) => ({ h, at: Date.now() }))
    const completion = await ask(client, "WARM-1")
    expect(completion.choices[0]!.message.content).toBe("warm")
    const after = await health(gateway)
    expect(after.pool.hits).toBe(before.pool.hits + 1)
    expect(after.pool.misses).toBe(before.pool.misses)
    // The standby taken is replaced in the background, pool.replace_delay_ms after it was taken.
    const replaced = await replacing
    expect(replaced.at - started).toBeGreaterThanOrEqual(REPLACE_DELAY_MS)
    expect(replaced.h.pool.spawned).toBe(before.pool.spawned + 1)
    await waitForHealth(gateway, (h) => standbys(h) === 1 && h.pool.leased === 0)
  })

  it("replaces a standby that dies, and never hands out a dead one", async () => {
    await waitForHealth(gateway, (h) => standbys(h) === 1 && h.pool.processes === 1 && cliChildren().length === 1)
    const [victim] = cliChildren()
    process.kill(victim!, "SIGKILL")
    const replaced = await waitForHealth(gateway, (h) => {
      const pids = cliChildren()
      return standbys(h) === 1 && h.pool.processes === 1 && pids.length === 1 && pids[0] !== victim
    })
    upstream.on("WARM-2", { kind: "message", blocks: [{ type: "text", text: "still warm" }] })
    expect((await ask(client, "WARM-2")).choices[0]!.message.content).toBe("still warm")
    expect((await health(gateway)).pool.hits).toBe(replaced.pool.hits + 1)
  })

  it("never lets two conversations share a process", async () => {
    upstream.on("SHARE-A", { kind: "message", blocks: [{ type: "text", text: ["a ", "a"] }], interDeltaMs: 50 })
    upstream.on("SHARE-B", { kind: "message", blocks: [{ type: "text", text: ["b ", "b"] }], interDeltaMs: 50 })
    upstream.on("SHARE-C", { kind: "message", blocks: [{ type: "text", text: "c" }] })
    await Promise.all([ask(client, "SHARE-A"), ask(client, "SHARE-B")])
    await ask(client, "SHARE-C")
    const sessions = [...sessionIdOf("SHARE-A"), ...sessionIdOf("SHARE-B"), ...sessionIdOf("SHARE-C")]
    expect(sessions).toHaveLength(3)
    expect(new Set(sessions).size).toBe(3)
  })
})

describe("a burst of 64 concurrent streams", () => {
  let gateway: Gateway
  beforeAll(async () => {
    gateway = await startGateway({
      upstreamUrl: upstream.url,
      config: {
        claude: { max_concurrent_sessions: 4 },
        queue: { max_waiting: 8, max_wait_seconds: 120 },
        pool: { prewarm: 1, max_standby: 4, demand_window_seconds: 2 },
        conversation: { max_live: 0 }
      }
    })
  })
  afterAll(() => gateway?.close())

  it("completes each stream or answers 429 with Retry-After, then the pool returns to its warm floor", async () => {
    await waitForHealth(gateway, (h) => standbys(h) === 1 && h.pool.processes === 1)
    upstream.on("BURST", { kind: "message", blocks: [{ type: "text", text: ["burst ", "answer"] }] })
    const outcomes = await Promise.all(Array.from({ length: 64 }, async (_, i) => {
      const response = await postChat(gateway, { model: "sonnet", stream: true, messages: [{ role: "user", content: `BURST ${i}` }] })
      const body = await response.text()
      return { status: response.status, retryAfter: response.headers.get("retry-after"), done: body.endsWith("data: [DONE]\n\n") }
    }))
    const completed = outcomes.filter((o) => o.status === 200)
    const refused = outcomes.filter((o) => o.status === 429)
    expect(completed.length + refused.length).toBe(64)
    expect(completed.every((o) => o.done)).toBe(true)
    expect(refused.every((o) => o.retryAfter !== null && Number(o.retryAfter) > 0)).toBe(true)
    // Everything admitted at once (4 running, 8 waiting) completed.
    expect(completed.length).toBeGreaterThanOrEqual(12)
    // After pool.demand_window_seconds of quiet, the standbys past the floor end.
    const settled = await waitForHealth(gateway, (h) => h.pool.leased === 0 && h.pool.processes === 1 && standbys(h) === 1, 30_000)
    expect(settled.pool.processes).toBe(1)
  })
})

describe("admission queue", () => {
  let gateway: Gateway
  let client: OpenAI
  beforeAll(async () => {
    gateway = await startGateway({
      upstreamUrl: upstream.url,
      config: { claude: { max_concurrent_sessions: 1 }, queue: { max_waiting: 1, max_wait_seconds: 1 } }
    })
    client = openaiFor(gateway)
  })
  afterAll(() => gateway?.close())

  const slow = (marker: string) =>
    upstream.on(marker, {
      kind: "message",
      blocks: [{ type: "text", text: Array.from({ length: 30 }, () => "x") }],
      interDeltaMs: 100
    })

  it("answers 429 with Retry-After past the queue bound, and after the wait limit", async () => {
    slow("Q-RUN")
    const running = ask(client, "Q-RUN")
    await waitForHealth(gateway, (h) => h.sessions.running === 1)
    const waiting = ask(client, "Q-WAIT").catch((e: unknown) => e)
    await waitForHealth(gateway, (h) => h.sessions.queued === 1)

    const response = await postChat(gateway, { model: "sonnet", messages: [{ role: "user", content: "Q-FULL" }] })
    expect(response.status).toBe(429)
    expect(response.headers.get("retry-after")).toBe("1")
    expect(await response.json()).toMatchObject({ error: { type: "rate_limit_error", code: "queue_full" } })

    const timedOut = await waiting
    expect(timedOut).toBeInstanceOf(OpenAI.RateLimitError)
    expect((timedOut as InstanceType<typeof OpenAI.RateLimitError>).code).toBe("queue_timeout")
    expect((await running).choices[0]!.message.content).toBe("x".repeat(30))
    expect(upstream.requestsFor("Q-FULL")).toHaveLength(0)
  })
})

describe("admission queue order", () => {
  // A wait limit far above what the turns take, so a loaded machine cannot turn order into timeouts.
  let gateway: Gateway
  let client: OpenAI
  beforeAll(async () => {
    gateway = await startGateway({
      upstreamUrl: upstream.url,
      config: { claude: { max_concurrent_sessions: 1 }, queue: { max_waiting: 2, max_wait_seconds: 60 } }
    })
    client = openaiFor(gateway)
  })
  afterAll(() => gateway?.close())

  it("serves waiting requests first come, first served", async () => {
    upstream.on("FIFO-0", { kind: "message", blocks: [{ type: "text", text: Array.from({ length: 15 }, () => "0") }], interDeltaMs: 100 })
    upstream.on("FIFO-1", { kind: "message", blocks: [{ type: "text", text: "1" }] })
    upstream.on("FIFO-2", { kind: "message", blocks: [{ type: "text", text: "2" }] })
    const order: Array<string> = []
    const first = ask(client, "FIFO-0").then(() => order.push("0"))
    await waitForHealth(gateway, (h) => h.sessions.running === 1 && h.sessions.queued === 0)
    const second = ask(client, "FIFO-1").then(() => order.push("1"))
    await waitForHealth(gateway, (h) => h.sessions.queued === 1)
    const third = ask(client, "FIFO-2").then(() => order.push("2"))
    await Promise.all([first, second, third])
    expect(order).toEqual(["0", "1", "2"])
  })
})

describe("graceful shutdown", () => {
  it("lets an in-flight stream finish, then leaves no CLI process", async () => {
    const gateway = await startGateway({ upstreamUrl: upstream.url, config: { server: { shutdown_grace_seconds: 10 } } })
    const client = openaiFor(gateway)
    upstream.on("SHUT-1", {
      kind: "message",
      blocks: [{ type: "text", text: Array.from({ length: 10 }, (_, i) => `${i} `) }],
      interDeltaMs: 100
    })
    const stream = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "SHUT-1" }],
      stream: true
    })
    let text = ""
    let closing: Promise<void> | undefined
    let finish: string | null = null
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ""
      finish = chunk.choices[0]?.finish_reason ?? finish
      closing ??= gateway.close()
    }
    await closing
    expect(text).toBe("0 1 2 3 4 5 6 7 8 9 ")
    expect(finish).toBe("stop")
    expect(await waitForNoCliChildren(1000)).toEqual([])
  })
})
