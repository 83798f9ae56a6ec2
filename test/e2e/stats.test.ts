import OpenAI from "openai"
import * as crypto from "node:crypto"
import { afterAll, describe, expect, it } from "vitest"
import { type Gateway, startGateway } from "../support/gateway.js"
import type { Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// GET /stats with the real CLI against the scripted upstream: figures move with real requests,
// per API key (by a short hash), and the route needs a key.

const KEYS = ["stats-key-one", "stats-key-two"]
let upstream: Upstream
let gateway: Gateway

useGateway({ config: { server: { api_keys: KEYS } } }, (started) => ({ upstream, gateway } = started))

interface Percentiles { readonly p50: number; readonly p90: number; readonly p99: number }
interface Tokens { readonly input: number; readonly output: number; readonly cache_read: number; readonly cache_write: number }
interface Stats {
  readonly uptime_seconds: number
  readonly requests: {
    readonly total: number
    readonly by_status: Record<string, number>
    readonly by_model: Record<string, number>
    readonly by_route: Record<string, { readonly requests: number; readonly by_status: Record<string, number>; readonly by_method: Record<string, number>; readonly latency_ms: Percentiles; readonly time_to_first_byte_ms: Percentiles }>
  }
  readonly turns: { readonly total: number; readonly by_finish_reason: Record<string, number>; readonly errors: number; readonly time_to_first_token_ms: Percentiles }
  readonly tokens: Tokens & { readonly by_model: Record<string, Tokens> }
  readonly cost_usd: { readonly total: number; readonly by_model: Record<string, number> }
  readonly pool: { readonly processes: number; readonly boots: number; readonly hits: number; readonly misses: number }
  readonly sessions: { readonly running: number; readonly queued: number; readonly limit: number }
  readonly cache: unknown
  readonly conversations: { readonly live: number; readonly created: number }
  readonly tools: { readonly parked: number }
  readonly keys: Record<string, { readonly requests: number; readonly tokens: Tokens; readonly cost_usd: number }> | null
}

const stats = async (key = KEYS[0]!): Promise<Stats> => {
  const response = await fetch(`${gateway.url}/stats`, { headers: { "x-api-key": key } })
  expect(response.status).toBe(200)
  return (await response.json()) as Stats
}

const keyId = (key: string) => crypto.createHash("sha256").update(key).digest("hex").slice(0, 12)
const client = (key: string) => new OpenAI({ baseURL: gateway.baseURL, apiKey: key, maxRetries: 0 })
const usage = { input_tokens: 11, output_tokens: 4, cache_read_input_tokens: 500, cache_creation_input_tokens: 60 }
const CHAT = "/v1/chat/completions"

describe("/stats", () => {
  it("needs an API key, and is in the OpenAPI document", async () => {
    expect((await fetch(`${gateway.url}/stats`)).status).toBe(401)
    const openapi = (await (await fetch(`${gateway.url}/openapi.json`, { headers: { "x-api-key": KEYS[0]! } })).json()) as {
      paths: Record<string, unknown>
    }
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(["/stats", "/metrics"]))
  })

  it("reports requests, turns, tokens, cost and latency by route, model and API key", async () => {
    const before = await stats()
    expect(before.cache).toMatchObject({ enabled: false, hits: 0, misses: 0 }) // cache.enabled is off by default
    expect(before.sessions.limit).toBe(10)
    upstream.on("STATS-ONE", { kind: "message", blocks: [{ type: "text", text: "one" }], usage })
    upstream.on("STATS-TWO", { kind: "message", blocks: [{ type: "text", text: ["t", "wo"] }], usage })
    await client(KEYS[0]!).chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "STATS-ONE" }] })
    const stream = await client(KEYS[1]!).chat.completions.create({ model: "sonnet", stream: true, messages: [{ role: "user", content: "STATS-TWO" }] })
    for await (const _ of stream) { /* read to the end */ }
    const after = await stats(KEYS[1])

    expect(after.uptime_seconds).toBeGreaterThanOrEqual(before.uptime_seconds)
    const chatBefore = before.requests.by_route[CHAT]?.requests ?? 0
    const chat = after.requests.by_route[CHAT]!
    expect(chat.requests - chatBefore).toBe(2)
    expect(chat.by_status["200"]! - (before.requests.by_route[CHAT]?.by_status["200"] ?? 0)).toBe(2)
    expect(chat.by_method["POST"]! - (before.requests.by_route[CHAT]?.by_method["POST"] ?? 0)).toBe(2)
    expect((after.requests.by_model["sonnet"] ?? 0) - (before.requests.by_model["sonnet"] ?? 0)).toBe(2)
    // Percentiles from the histograms: a turn takes time, and p50 <= p90 <= p99 <= the largest bucket.
    expect(chat.latency_ms.p50).toBeGreaterThan(0)
    expect(chat.latency_ms.p50).toBeLessThanOrEqual(chat.latency_ms.p99)
    expect(chat.time_to_first_byte_ms.p50).toBeGreaterThan(0)
    expect(chat.time_to_first_byte_ms.p50).toBeLessThanOrEqual(chat.latency_ms.p99)
    expect(after.turns.time_to_first_token_ms.p50).toBeGreaterThan(0)

    expect(after.turns.total - before.turns.total).toBe(2)
    expect((after.turns.by_finish_reason["stop"] ?? 0) - (before.turns.by_finish_reason["stop"] ?? 0)).toBe(2)
    expect(after.tokens.input - before.tokens.input).toBe(2 * usage.input_tokens)
    expect(after.tokens.output - before.tokens.output).toBe(2 * usage.output_tokens)
    expect(after.tokens.cache_read - before.tokens.cache_read).toBe(2 * usage.cache_read_input_tokens)
    expect(after.tokens.cache_write - before.tokens.cache_write).toBe(2 * usage.cache_creation_input_tokens)
    expect(after.tokens.by_model["sonnet"]?.cache_read).toBe(after.tokens.cache_read)
    expect(after.cost_usd.total).toBeGreaterThan(before.cost_usd.total)
    expect(after.cost_usd.by_model["sonnet"]).toBe(after.cost_usd.total)

    // One request per key: each key's own figures, by the hash of the key, never the key.
    const keys = after.keys ?? {}
    expect(JSON.stringify(after)).not.toContain(KEYS[0])
    for (const key of KEYS) {
      const mine = keys[keyId(key)]
      expect(mine?.tokens.input).toBe(usage.input_tokens)
      expect(mine?.cost_usd).toBeGreaterThan(0)
      expect(mine?.requests).toBeGreaterThanOrEqual(1) // its chat request (a request counts once answered)
    }
    expect(after.pool.boots).toBeGreaterThanOrEqual(1)
    expect(after.pool.hits + after.pool.misses - before.pool.hits - before.pool.misses).toBe(2)
    expect(after.conversations.created - before.conversations.created).toBe(2)
  })

  it("counts a parked tool turn, and a refused request by its status", async () => {
    upstream.on("STATS-TOOL", {
      kind: "message",
      blocks: [{ type: "tool_use", name: "mcp__client__lookup", input: { q: "x" } }]
    })
    const before = await stats()
    const first = await client(KEYS[0]!).chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "STATS-TOOL" }],
      tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object", properties: { q: { type: "string" } } } } }]
    })
    expect(first.choices[0]!.finish_reason).toBe("tool_calls")
    expect((await fetch(`${gateway.baseURL}/models`, { headers: { "x-api-key": "not-a-key" } })).status).toBe(401)
    const after = await stats()
    expect(after.tools.parked).toBe(before.tools.parked + 1)
    expect((after.turns.by_finish_reason["tool_calls"] ?? 0) - (before.turns.by_finish_reason["tool_calls"] ?? 0)).toBe(1)
    expect((after.requests.by_status["401"] ?? 0) - (before.requests.by_status["401"] ?? 0)).toBe(1)
    expect(after.requests.by_route["/v1/models"]?.by_status["401"]).toBeGreaterThanOrEqual(1)
  })
})

describe("telemetry.metrics_enabled = false", () => {
  let off: Gateway | undefined
  afterAll(() => off?.close())

  it("records no request, and /stats still reports the services' state", async () => {
    off = await startGateway({ upstreamUrl: upstream.url, config: { pool: { prewarm: 0 }, telemetry: { metrics_enabled: false } } })
    const read = async () => (await (await fetch(`${off!.url}/stats`)).json()) as Stats & { readonly metrics_enabled: boolean }
    const before = await read()
    expect(before.metrics_enabled).toBe(false)
    for (let i = 0; i < 3; i++) expect((await fetch(`${off.baseURL}/models`)).status).toBe(200)
    const after = await read()
    // The registry is the process's (the other gateway of this file is idle now): nothing moved.
    expect(after.requests.total).toBe(before.requests.total)
    expect(after.sessions.limit).toBe(10)
    expect(after.pool.processes).toBe(0)
  })
})
