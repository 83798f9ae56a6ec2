import OpenAI from "openai"
import parsePrometheusTextFormat, { type PrometheusFamily } from "parse-prometheus-text-format"
import * as crypto from "node:crypto"
import { describe, expect, it } from "vitest"
import type { Gateway } from "../support/gateway.js"
import type { Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// Telemetry with the real CLI against the scripted upstream: a streamed response the client
// abandons is recorded as 499 (not as the 200 its headers said), and a public /metrics names no
// API key.

const KEYS = ["telemetry-key-one", "telemetry-key-two"]
let upstream: Upstream
let gateway: Gateway

useGateway(
  { config: { server: { api_keys: KEYS }, telemetry: { metrics_public: true } } },
  (started) => ({ upstream, gateway } = started)
)

const CHAT = "/v1/chat/completions"
const keyId = (key: string) => crypto.createHash("sha256").update(key).digest("hex").slice(0, 12)

interface Stats {
  readonly requests: { readonly by_route: Record<string, { readonly by_status: Record<string, number> }> }
  readonly keys: Record<string, { readonly requests: number }> | null
}
const stats = async (): Promise<Stats> => {
  const response = await fetch(`${gateway.url}/stats`, { headers: { "x-api-key": KEYS[0]! } })
  expect(response.status).toBe(200)
  return (await response.json()) as Stats
}
const metricsText = async () => {
  const response = await fetch(`${gateway.url}/metrics`)
  expect(response.status).toBe(200)
  return response.text()
}
const samples = (families: ReadonlyArray<PrometheusFamily>, name: string) => families.find((f) => f.name === name)?.metrics ?? []

/** Polls until `check` passes (the request's end is recorded when its stream's finalizer runs). */
const eventually = async (check: () => Promise<void>, ms = 10_000) => {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      return await check()
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
}

describe("telemetry", () => {
  it("records a streamed response the client abandons as 499, in /stats and /metrics", async () => {
    const words = Array.from({ length: 200 }, (_, i) => `word${i} `)
    upstream.on("TELEMETRY-ABANDON", { kind: "message", blocks: [{ type: "text", text: words }], interDeltaMs: 50 })
    const before = (await stats()).requests.by_route[CHAT]?.by_status ?? {}
    const abort = new AbortController()
    const response = await fetch(`${gateway.baseURL}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEYS[0]}` },
      body: JSON.stringify({ model: "sonnet", stream: true, messages: [{ role: "user", content: "TELEMETRY-ABANDON" }] }),
      signal: abort.signal
    })
    expect(response.status).toBe(200)
    const reader = response.body!.getReader()
    // Some text has come: the stream is under way. Then the client goes.
    let received = ""
    while (!received.includes("word1")) {
      const { done, value } = await reader.read()
      if (done) throw new Error(`the stream ended early: ${received}`)
      received += new TextDecoder().decode(value)
    }
    abort.abort()
    await reader.cancel().catch(() => undefined)

    await eventually(async () => {
      const after = (await stats()).requests.by_route[CHAT]?.by_status ?? {}
      expect((after["499"] ?? 0) - (before["499"] ?? 0)).toBe(1)
      // Not also counted as the 200 its headers said.
      expect(after["200"] ?? 0).toBe(before["200"] ?? 0)
    })
    const families = parsePrometheusTextFormat(await metricsText())
    const abandoned = samples(families, "gateway_http_requests_total").filter((m) => m.labels?.route === CHAT && m.labels?.status === "499")
    expect(abandoned.reduce((n, m) => n + Number(m.value), 0)).toBe(1)
  })

  it("serves a public /metrics without the per-key label; /stats (with a key) still has each key", async () => {
    upstream.on("TELEMETRY-KEYS", { kind: "message", blocks: [{ type: "text", text: "counted" }] })
    const before = await stats()
    for (const key of KEYS) {
      const client = new OpenAI({ baseURL: gateway.baseURL, apiKey: key, maxRetries: 0 })
      const answer = await client.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "TELEMETRY-KEYS" }] })
      expect(answer.choices[0]?.message.content).toBe("counted")
    }
    const after = await stats()
    for (const key of KEYS) {
      expect(after.keys?.[keyId(key)]?.requests ?? 0).toBeGreaterThan(before.keys?.[keyId(key)]?.requests ?? 0)
    }

    const text = await metricsText()
    expect(text).not.toContain("api_key")
    for (const key of KEYS) expect(text).not.toContain(keyId(key))
    const families = parsePrometheusTextFormat(text)
    // The two keys' requests are one series now: added up, not dropped.
    const ok = samples(families, "gateway_http_requests_total").filter((m) =>
      m.labels?.route === CHAT && m.labels?.status === "200" && m.labels?.method === "POST"
    )
    expect(ok).toHaveLength(1)
    expect(Number(ok[0]!.value)).toBe(after.requests.by_route[CHAT]?.by_status["200"])
    const turns = samples(families, "gateway_turns_total").filter((m) => m.labels?.finish_reason === "stop")
    expect(turns.every((m) => m.labels?.api_key === undefined)).toBe(true)
    expect(turns.reduce((n, m) => n + Number(m.value), 0)).toBeGreaterThanOrEqual(2)
  })
})
