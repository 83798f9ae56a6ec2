import Anthropic from "@anthropic-ai/sdk"
import OpenAI from "openai"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cliChildren, type Gateway, health, startGateway, waitForHealth, waitForNoCliChildren } from "../support/gateway.js"
import { startUpstream, type Upstream } from "../support/upstream.js"

// The answer cache (src/services/Cache.ts) end to end: misses run the real CLI against the
// scripted upstream; hits are read back with the official openai client (JSON and stream) and the
// Anthropic SDK. "Upstream saw n requests" counts the CLI's calls for a request's marker.

type Chunk = OpenAI.Chat.Completions.ChatCompletionChunk

let upstream: Upstream
let gateway: Gateway

const KEY_A = "cache-key-a"
const KEY_B = "cache-key-b"

beforeAll(async () => {
  upstream = await startUpstream()
  gateway = await startGateway({
    upstreamUrl: upstream.url,
    config: { server: { api_keys: [KEY_A, KEY_B] }, cache: { enabled: true } }
  })
})

afterAll(async () => {
  await gateway?.close()
  await upstream?.close()
  expect(await waitForNoCliChildren()).toEqual([])
})

const clientFor = (g: Gateway, apiKey = KEY_A) => new OpenAI({ baseURL: g.baseURL, apiKey, maxRetries: 0 })

const text = (marker: string, pieces: ReadonlyArray<string>) =>
  upstream.on(marker, { kind: "message", blocks: [{ type: "text", text: pieces }] })

const seen = (marker: string) => upstream.requestsFor(marker).length

const ask = (g: Gateway, marker: string, options: { apiKey?: string; headers?: Record<string, string>; extra?: object } = {}) =>
  clientFor(g, options.apiKey).chat.completions.create(
    { model: "sonnet", messages: [{ role: "user", content: `${marker} hello` }], ...options.extra },
    { headers: options.headers ?? {} }
  ).withResponse()

const askStream = async (g: Gateway, marker: string, headers: Record<string, string> = {}) => {
  const { data: stream, response } = await clientFor(g).chat.completions.create(
    { model: "sonnet", messages: [{ role: "user", content: `${marker} hello` }], stream: true, stream_options: { include_usage: true } },
    { headers }
  ).withResponse()
  const chunks: Array<Chunk> = []
  for await (const chunk of stream) chunks.push(chunk)
  return { chunks, cache: response.headers.get("x-cache") }
}

/** The cache's part of /stats. */
const cacheStats = async (g: Gateway) =>
  ((await (await fetch(`${g.url}/stats`, { headers: { authorization: `Bearer ${KEY_A}` } })).json()) as {
    cache: { enabled: boolean; hits: number; misses: number; joins: number; entries: number }
  }).cache

const contents = (chunks: ReadonlyArray<Chunk>) =>
  chunks.flatMap((c) => c.choices.flatMap((choice) => (choice.delta.content ? [choice.delta.content] : [])))

describe("hits and misses", () => {
  it("a repeated request is served from the cache: upstream saw one request, same answer, x-cache miss then hit", async () => {
    text("CACHE-1", ["Cached ", "answer ", "one."])
    const stats = () => cacheStats(gateway)
    const before = await stats()
    const first = await ask(gateway, "CACHE-1")
    expect(first.response.headers.get("x-cache")).toBe("miss")
    expect(first.data.choices[0]!.message.content).toBe("Cached answer one.")
    const second = await ask(gateway, "CACHE-1")
    expect(second.response.headers.get("x-cache")).toBe("hit")
    expect(seen("CACHE-1")).toBe(1)
    expect(second.data.choices[0]!.message.content).toBe("Cached answer one.")
    expect(second.data.choices[0]!.finish_reason).toBe("stop")
    expect(second.data.usage).toEqual(first.data.usage)
    expect(second.data.id).not.toBe(first.data.id)
    // A hit costs nothing.
    expect(Number(first.response.headers.get("x-claude-cost-usd"))).toBeGreaterThan(0)
    expect(second.response.headers.get("x-claude-cost-usd")).toBe("0")
    // /stats counts both.
    const after = await stats()
    expect(after.enabled).toBe(true)
    expect(after.hits - before.hits).toBe(1)
    expect(after.misses - before.misses).toBe(1)
    expect(after.entries).toBeGreaterThan(before.entries)
    // And /metrics has the cache's own metrics.
    const metrics = await (await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${KEY_A}` } })).text()
    for (const name of ["gateway_cache_hits_total", "gateway_cache_misses_total", "gateway_cache_entries", "gateway_cache_bytes"]) {
      expect(metrics, name).toMatch(new RegExp(`^${name} [0-9.e+]+$`, "m"))
    }
  })

  it("a stream hit replays the original chunks' content, finish and usage, and ends with [DONE]", async () => {
    text("CACHE-STREAM", ["Streamed ", "from ", "the ", "cache."])
    const live = await askStream(gateway, "CACHE-STREAM")
    expect(live.cache).toBe("miss")
    const replayed = await askStream(gateway, "CACHE-STREAM")
    expect(replayed.cache).toBe("hit")
    expect(seen("CACHE-STREAM")).toBe(1)
    expect(contents(live.chunks)).toEqual(["Streamed ", "from ", "the ", "cache."])
    expect(contents(replayed.chunks)).toEqual(contents(live.chunks))
    expect(replayed.chunks[0]!.choices[0]!.delta.role).toBe("assistant")
    expect(replayed.chunks.map((c) => c.choices[0]?.finish_reason ?? null).filter((r) => r !== null)).toEqual(["stop"])
    expect(replayed.chunks.at(-1)!.usage).toEqual(live.chunks.at(-1)!.usage)
    expect(replayed.chunks.at(-1)!.usage?.total_tokens).toBeGreaterThan(0)
    // The raw body ends like every stream.
    const raw = await fetch(`${gateway.baseURL}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY_A}` },
      body: JSON.stringify({ model: "sonnet", messages: [{ role: "user", content: "CACHE-STREAM hello" }], stream: true, stream_options: { include_usage: true } })
    })
    expect(raw.headers.get("x-cache")).toBe("hit")
    expect((await raw.text()).endsWith("data: [DONE]\n\n")).toBe(true)
    // And the JSON form of the same request is a hit too (the key is the turn, not the rendering).
    const json = await ask(gateway, "CACHE-STREAM", { extra: {} })
    expect(json.response.headers.get("x-cache")).toBe("hit")
    expect(json.data.choices[0]!.message.content).toBe("Streamed from the cache.")
    expect(seen("CACHE-STREAM")).toBe(1)
  })

  it("serves a hit in the Anthropic dialect too (JSON and SSE)", async () => {
    text("CACHE-ANTH", ["Anthropic ", "cached."])
    const anthropic = new Anthropic({ baseURL: gateway.url, apiKey: KEY_A, maxRetries: 0 })
    const params = { model: "sonnet", max_tokens: 256, messages: [{ role: "user" as const, content: "CACHE-ANTH hello" }] }
    const first = await anthropic.messages.create(params).withResponse()
    expect(first.response.headers.get("x-cache")).toBe("miss")
    const second = await anthropic.messages.create(params).withResponse()
    expect(second.response.headers.get("x-cache")).toBe("hit")
    expect(second.data.content).toEqual([{ type: "text", text: "Anthropic cached." }])
    expect(second.data.stop_reason).toBe("end_turn")
    expect(second.data.usage.output_tokens).toBe(first.data.usage.output_tokens)
    const stream = anthropic.messages.stream(params)
    const final = await stream.finalMessage()
    expect(final.content).toEqual([{ type: "text", text: "Anthropic cached." }])
    expect(seen("CACHE-ANTH")).toBe(1)
  })

  it("Responses: cached with store false; a stored response (the default) is never served from the cache", async () => {
    text("CACHE-RESP", ["responses ", "answer"])
    const client = clientFor(gateway)
    const params = { model: "sonnet", input: "CACHE-RESP hello", store: false }
    const first = await client.responses.create(params).withResponse()
    expect(first.response.headers.get("x-cache")).toBe("miss")
    const second = await client.responses.create(params).withResponse()
    expect(second.response.headers.get("x-cache")).toBe("hit")
    expect(second.data.output_text).toBe("responses answer")
    expect(second.data.status).toBe("completed")
    const stored = await client.responses.create({ ...params, store: true }).withResponse()
    expect(stored.response.headers.get("x-cache")).toBe("bypass")
    expect((await client.responses.retrieve(stored.data.id)).output_text).toBe("responses answer")
    expect(seen("CACHE-RESP")).toBe(2)
  })

  it("Cache-Control: no-cache bypasses the lookup (and refreshes the entry); no-store keeps the answer out", async () => {
    text("CACHE-NC", ["fresh"])
    await ask(gateway, "CACHE-NC")
    const bypass = await ask(gateway, "CACHE-NC", { headers: { "cache-control": "no-cache" } })
    expect(bypass.response.headers.get("x-cache")).toBe("bypass")
    expect(seen("CACHE-NC")).toBe(2)
    expect((await ask(gateway, "CACHE-NC")).response.headers.get("x-cache")).toBe("hit")
    expect(seen("CACHE-NC")).toBe(2)

    text("CACHE-NS", ["not kept"])
    const unstored = await ask(gateway, "CACHE-NS", { headers: { "cache-control": "no-store" } })
    expect(unstored.response.headers.get("x-cache")).toBe("miss")
    const again = await ask(gateway, "CACHE-NS")
    expect(again.response.headers.get("x-cache")).toBe("miss")
    expect(seen("CACHE-NS")).toBe(2)
    // no-store on a request whose answer is stored may still read it.
    const read = await ask(gateway, "CACHE-NS", { headers: { "cache-control": "no-store" } })
    expect(read.response.headers.get("x-cache")).toBe("hit")
    expect(seen("CACHE-NS")).toBe(2)
  })

  it("keeps API keys apart: another key's identical request is a miss", async () => {
    text("CACHE-TENANT", ["per key"])
    expect((await ask(gateway, "CACHE-TENANT", { apiKey: KEY_A })).response.headers.get("x-cache")).toBe("miss")
    expect((await ask(gateway, "CACHE-TENANT", { apiKey: KEY_B })).response.headers.get("x-cache")).toBe("miss")
    expect((await ask(gateway, "CACHE-TENANT", { apiKey: KEY_B })).response.headers.get("x-cache")).toBe("hit")
    expect(seen("CACHE-TENANT")).toBe(2)
  })

  it("does not look up continuations and the runs of n (x-cache: bypass), nor answers a request it refuses", async () => {
    text("CACHE-CONV", ["conversation turn"])
    const first = await ask(gateway, "CACHE-CONV")
    const conversationId = first.response.headers.get("x-conversation-id")
    expect(conversationId).toMatch(/^conv_/)
    const named = await ask(gateway, "CACHE-CONV", { headers: { "x-conversation-id": conversationId! } })
    expect(named.response.headers.get("x-cache")).toBe("bypass")
    const runs = await ask(gateway, "CACHE-CONV", { extra: { n: 2 } })
    expect(runs.response.headers.get("x-cache")).toBe("bypass")
    expect(runs.data.choices).toHaveLength(2)
    expect(seen("CACHE-CONV")).toBe(4)
    const refused = await fetch(`${gateway.baseURL}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY_A}` },
      body: JSON.stringify({ model: "sonnet", messages: [] })
    })
    expect(refused.status).toBe(400)
    expect(refused.headers.get("x-cache")).toBe("bypass")
  })

  it("does not serve a stateless client's follow-up (history with an earlier answer) from the cache: it continues its own conversation", async () => {
    // Markers are tried in registration order; a new conversation's transcript holds both.
    text("CACHE-FOLLOW", ["follow-up answer"])
    text("CACHE-OPEN", ["opening answer"])
    const opening = await ask(gateway, "CACHE-OPEN")
    expect(opening.response.headers.get("x-cache")).toBe("miss")
    const conversation = opening.response.headers.get("x-conversation-id")
    const messages = [
      { role: "user" as const, content: "CACHE-OPEN hello" },
      { role: "assistant" as const, content: "opening answer" },
      { role: "user" as const, content: "CACHE-FOLLOW next" }
    ]
    const followUp = () => clientFor(gateway).chat.completions.create({ model: "sonnet", messages }).withResponse()
    const first = await followUp()
    expect(first.response.headers.get("x-cache")).toBe("bypass")
    expect(first.response.headers.get("x-conversation-id")).toBe(conversation)
    // Another client with the same history: its own turn and conversation, not the first one's answer replayed.
    const second = await followUp()
    expect(second.response.headers.get("x-cache")).toBe("bypass")
    expect(second.data.choices[0]!.message.content).toBe("follow-up answer")
    expect(second.response.headers.get("x-conversation-id")).toMatch(/^conv_/)
    expect(second.response.headers.get("x-conversation-id")).not.toBe(conversation)
    expect(seen("CACHE-FOLLOW")).toBe(2)
    // An opening of several user messages (and a system prompt) has no earlier answer: it is cached.
    const several = [
      { role: "system" as const, content: "be brief" },
      { role: "user" as const, content: "first part" },
      { role: "user" as const, content: "CACHE-OPEN two parts" }
    ]
    const parts = () => clientFor(gateway).chat.completions.create({ model: "sonnet", messages: several }).withResponse()
    expect((await parts()).response.headers.get("x-cache")).toBe("miss")
    expect((await parts()).response.headers.get("x-cache")).toBe("hit")
  })
})

describe("what is never stored", () => {
  it("a failed turn: each request gets the error, the next success is stored", async () => {
    upstream.on(
      "CACHE-FAIL",
      { kind: "error", status: 529, type: "overloaded_error", message: "Overloaded" },
      { kind: "message", blocks: [{ type: "text", text: "recovered" }] }
    )
    const failed = await ask(gateway, "CACHE-FAIL").catch((error: unknown) => error)
    expect(failed).toBeInstanceOf(OpenAI.APIError)
    const ok = await ask(gateway, "CACHE-FAIL")
    expect(ok.response.headers.get("x-cache")).toBe("miss")
    expect(ok.data.choices[0]!.message.content).toBe("recovered")
    expect((await ask(gateway, "CACHE-FAIL")).response.headers.get("x-cache")).toBe("hit")
    expect(seen("CACHE-FAIL")).toBe(2)
  })

  it("a stop for client tool calls", async () => {
    upstream.on("CACHE-TOOL", {
      kind: "message",
      blocks: [{ type: "tool_use", name: "mcp__client__get_weather", input: { city: "Oslo" } }],
      stopReason: "tool_use"
    })
    const tools = [{
      type: "function" as const,
      function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } }
    }]
    const first = await ask(gateway, "CACHE-TOOL", { extra: { tools } })
    expect(first.data.choices[0]!.finish_reason).toBe("tool_calls")
    const second = await ask(gateway, "CACHE-TOOL", { extra: { tools } })
    expect(second.data.choices[0]!.finish_reason).toBe("tool_calls")
    expect(second.response.headers.get("x-cache")).toBe("miss")
    expect(seen("CACHE-TOOL")).toBe(2)
  })

  it("a turn in which the CLI ran a tool of its own (Read)", async () => {
    const workspace = path.join(gateway.home, "workspace")
    fs.mkdirSync(workspace, { recursive: true })
    const file = path.join(workspace, "cache-own-tool.txt")
    fs.writeFileSync(file, "CACHE-OWN-RESULT\n")
    upstream.on("CACHE-OWN-RESULT", { kind: "message", blocks: [{ type: "text", text: "I read it." }] })
    upstream.on("CACHE-OWN-TOOL", { kind: "message", blocks: [{ type: "tool_use", name: "Read", input: { file_path: file } }], stopReason: "tool_use" })
    const first = await ask(gateway, "CACHE-OWN-TOOL")
    expect(first.data.choices[0]!.message.content).toBe("I read it.")
    // The CLI really ran Read: the file's content went upstream as its tool result.
    expect(seen("CACHE-OWN-RESULT")).toBe(1)
    const second = await ask(gateway, "CACHE-OWN-TOOL")
    expect(second.response.headers.get("x-cache")).toBe("miss")
    expect(second.data.choices[0]!.message.content).toBe("I read it.")
    expect(seen("CACHE-OWN-TOOL")).toBe(2)
  })

  it("a cut answer (max_tokens)", async () => {
    upstream.on("CACHE-CUT", { kind: "message", blocks: [{ type: "text", text: "cut sh" }], stopReason: "max_tokens" })
    const first = await ask(gateway, "CACHE-CUT")
    expect(first.data.choices[0]!.finish_reason).toBe("length")
    expect((await ask(gateway, "CACHE-CUT")).response.headers.get("x-cache")).toBe("miss")
    expect(seen("CACHE-CUT")).toBe(2)
  })
})

describe("single flight", () => {
  it("16 concurrent identical requests share one CLI turn; the first requester and one waiter going away hurt nobody", async () => {
    upstream.on("CACHE-FLIGHT", {
      kind: "message",
      blocks: [{ type: "text", text: Array.from({ length: 20 }, (_, i) => `w${i} `) }],
      interDeltaMs: 100
    })
    const joinsBefore = (await cacheStats(gateway)).joins
    const leader = new AbortController()
    const leaderStream = await clientFor(gateway).chat.completions.create(
      { model: "sonnet", messages: [{ role: "user", content: "CACHE-FLIGHT hello" }], stream: true },
      { signal: leader.signal }
    ).withResponse()
    expect(leaderStream.response.headers.get("x-cache")).toBe("miss")
    // The turn is running (upstream has the CLI's request) when the others arrive.
    while (seen("CACHE-FLIGHT") === 0) await new Promise((resolve) => setTimeout(resolve, 20))
    const quitter = new AbortController()
    const others = Array.from({ length: 15 }, (_, i) =>
      clientFor(gateway).chat.completions.create(
        { model: "sonnet", messages: [{ role: "user", content: "CACHE-FLIGHT hello" }] },
        i === 0 ? { signal: quitter.signal } : {}
      ).withResponse())
    // Every other request has joined the running turn (so that its first requester is not the last
    // one holding it); then the first requester reads one delta and goes away, and so does one waiter.
    while ((await cacheStats(gateway)).joins - joinsBefore < 15) await new Promise((resolve) => setTimeout(resolve, 20))
    for await (const chunk of leaderStream.data) {
      if (chunk.choices[0]?.delta.content) {
        leader.abort()
        break
      }
    }
    quitter.abort()
    const settled = await Promise.allSettled(others)
    expect(settled[0]!.status).toBe("rejected")
    const answers = settled.slice(1).map((result) => {
      if (result.status !== "fulfilled") throw new Error(`a waiter failed: ${String(result.reason)}`)
      return result.value
    })
    const expected = Array.from({ length: 20 }, (_, i) => `w${i} `).join("")
    expect(answers.map((a) => a.data.choices[0]!.message.content)).toEqual(Array(14).fill(expected))
    expect(answers.every((a) => a.response.headers.get("x-cache") === "hit")).toBe(true)
    expect(seen("CACHE-FLIGHT")).toBe(1)
    expect((await ask(gateway, "CACHE-FLIGHT")).response.headers.get("x-cache")).toBe("hit")
  })

  it("the only requester going away stops the shared turn: its CLI is interrupted (not left answering), its slot freed, nothing stored", async () => {
    // A gateway of its own: nothing else runs, so that its one CLI can be watched.
    const alone = await startGateway({ upstreamUrl: upstream.url, config: { server: { api_keys: [KEY_A] }, cache: { enabled: true } } })
    try {
      // 200 deltas 100 ms apart: the whole answer would take 20 s.
      upstream.on(
        "CACHE-ALONE",
        { kind: "message", blocks: [{ type: "text", text: Array.from({ length: 200 }, (_, i) => `a${i} `) }], interDeltaMs: 100 },
        { kind: "message", blocks: [{ type: "text", text: "second run" }] }
      )
      await waitForHealth(alone, (h) => h.pool.signatures.some((s) => s.standby >= 1))
      const controller = new AbortController()
      const { data: stream, response } = await clientFor(alone).chat.completions.create(
        { model: "sonnet", messages: [{ role: "user", content: "CACHE-ALONE hello" }], stream: true },
        { signal: controller.signal }
      ).withResponse()
      expect(response.headers.get("x-cache")).toBe("miss")
      let received = 0
      let during: Awaited<ReturnType<typeof health>> | undefined
      let working: Array<number> = []
      try {
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content) received++
          if (received === 2) {
            during = await health(alone)
            working = cliChildren()
            controller.abort()
          }
        }
      } catch {
        // the abort surfaces as an error in the iterator
      }
      // Frames that arrived in the same read as the last one before the abort are still handed out.
      expect(received).toBeGreaterThanOrEqual(2)
      expect(received).toBeLessThan(200)
      expect(during).toMatchObject({ sessions: { running: 1 }, pool: { leased: 1 }, conversations: { live: 0 } })
      // Within 5 s (a fraction of the 20 s answer) the turn is stopped: its session slot is free and
      // its CLI, told to stop as on a plain disconnect, is kept for its conversation (not killed).
      const started = Date.now()
      await waitForHealth(alone, (h) => h.sessions.running === 0 && h.conversations.live === 1 && h.pool.leased === 1, 5_000)
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(cliChildren()).toEqual(expect.arrayContaining(working))
      // Nothing was stored, and no stopped turn is joined: the next identical request runs its own.
      const next = await ask(alone, "CACHE-ALONE")
      expect(next.response.headers.get("x-cache")).toBe("miss")
      expect(next.data.choices[0]!.message.content).toBe("second run")
      expect(seen("CACHE-ALONE")).toBe(2)
    } finally {
      await alone.close()
    }
  })
})

describe("cache.shared = true", () => {
  let shared: Gateway
  beforeAll(async () => {
    shared = await startGateway({
      upstreamUrl: upstream.url,
      config: { server: { api_keys: [KEY_A, KEY_B] }, cache: { enabled: true, shared: true }, pool: { prewarm: 0 } }
    })
  })
  afterAll(async () => {
    await shared?.close()
  })

  it("shares answers across API keys", async () => {
    text("CACHE-SHARED", ["for everyone"])
    expect((await ask(shared, "CACHE-SHARED", { apiKey: KEY_A })).response.headers.get("x-cache")).toBe("miss")
    const other = await ask(shared, "CACHE-SHARED", { apiKey: KEY_B })
    expect(other.response.headers.get("x-cache")).toBe("hit")
    expect(other.data.choices[0]!.message.content).toBe("for everyone")
    expect(seen("CACHE-SHARED")).toBe(1)
  })
})

describe("cache.store = sqlite", () => {
  it("entries survive a restart of the gateway", async () => {
    const config = { server: { api_keys: [KEY_A] }, cache: { enabled: true, store: "sqlite" }, pool: { prewarm: 0 } }
    text("CACHE-SQLITE", ["persisted ", "answer"])
    const before = await startGateway({ upstreamUrl: upstream.url, config })
    const first = await ask(before, "CACHE-SQLITE")
    expect(first.response.headers.get("x-cache")).toBe("miss")
    await before.close({ keepHome: true })
    const after = await startGateway({ upstreamUrl: upstream.url, config, home: before.home })
    try {
      const second = await ask(after, "CACHE-SQLITE")
      expect(second.response.headers.get("x-cache")).toBe("hit")
      expect(second.data.choices[0]!.message.content).toBe("persisted answer")
      expect(second.data.usage).toEqual(first.data.usage)
      const stream = await askStream(after, "CACHE-SQLITE")
      expect(stream.cache).toBe("hit")
      expect(contents(stream.chunks)).toEqual(["persisted ", "answer"])
      expect(seen("CACHE-SQLITE")).toBe(1)
    } finally {
      await after.close()
    }
  })
})
