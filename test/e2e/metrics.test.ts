import OpenAI from "openai"
import parsePrometheusTextFormat, { type PrometheusFamily } from "parse-prometheus-text-format"
import { afterAll, describe, expect, it } from "vitest"
import { type Gateway, startGateway } from "../support/gateway.js"
import type { Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// GET /metrics: Prometheus text, read with a real Prometheus text parser, moving with real requests
// (real CLI against the scripted upstream).

const KEY = "metrics-key"
let upstream: Upstream
let gateway: Gateway

useGateway({ config: { server: { api_keys: [KEY] } } }, (started) => ({ upstream, gateway } = started))

const exposition = async (target: Gateway = gateway, key: string | undefined = KEY) => {
  const response = await fetch(`${target.url}/metrics`, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } })
  expect(response.status).toBe(200)
  expect(response.headers.get("content-type")).toMatch(/^text\/plain/)
  return response.text()
}
const scrape = async (target: Gateway = gateway, key: string | undefined = KEY) => parsePrometheusTextFormat(await exposition(target, key))

const family = (families: ReadonlyArray<PrometheusFamily>, name: string) => families.find((f) => f.name === name)

/** Sum of a counter's or gauge's samples whose labels include `labels`. */
const value = (families: ReadonlyArray<PrometheusFamily>, name: string, labels: Record<string, string> = {}) =>
  (family(families, name)?.metrics ?? [])
    .filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
    .reduce((n, m) => n + Number(m.value ?? 0), 0)

/**
 * One histogram series (`label` its only label, e.g. route="…"): its cumulative buckets. The parser
 * folds the series of a labelled histogram into one, dropping their labels, so it is given the
 * lines of that one series (and the family's TYPE line) only.
 */
const histogram = (text: string, name: string, label: string) => {
  const lines = text.split("\n").filter((line) =>
    line === `# TYPE ${name} histogram` || (line.startsWith(`${name}_bucket{`) && line.includes(`${label},`)))
  if (lines.length < 2) return {} // no observation yet
  const [parsed] = parsePrometheusTextFormat(`${lines.join("\n")}\n`)
  expect(parsed?.type).toBe("HISTOGRAM")
  return parsed?.metrics[0]?.buckets ?? {}
}
const observations = (text: string, name: string, label: string) => Number(histogram(text, name, label)["+Inf"] ?? 0)

const usage = { input_tokens: 21, output_tokens: 7, cache_read_input_tokens: 300, cache_creation_input_tokens: 40 }

describe("/metrics", () => {
  it("needs the API key like every route", async () => {
    expect((await fetch(`${gateway.url}/metrics`)).status).toBe(401)
    expect((await fetch(`${gateway.url}/metrics`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401)
  })

  it("declares each family with its type (gauges read from the services at scrape time)", async () => {
    const families = await scrape()
    expect(family(families, "gateway_pool_processes")?.type).toBe("GAUGE")
    expect(family(families, "gateway_sessions_limit")?.metrics[0]?.value).toBe("10")
    expect(family(families, "gateway_uptime_seconds")?.type).toBe("GAUGE")
  })

  it("counts requests, tokens, cost and latency after real turns, streamed and not", async () => {
    const client = new OpenAI({ baseURL: gateway.baseURL, apiKey: KEY, maxRetries: 0 })
    const beforeText = await exposition()
    const before = parsePrometheusTextFormat(beforeText)
    upstream.on("METRICS-1", { kind: "message", blocks: [{ type: "text", text: "counted" }], usage })
    const completion = await client.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "METRICS-1" }] })
    expect(completion.choices[0]!.message.content).toBe("counted")
    upstream.on("METRICS-2", { kind: "message", blocks: [{ type: "text", text: ["stre", "amed"] }], usage })
    const stream = await client.chat.completions.create({ model: "sonnet", stream: true, messages: [{ role: "user", content: "METRICS-2" }] })
    let text = ""
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ""
    expect(text).toBe("streamed")
    // A refused request counts too (no model, status 401).
    expect((await fetch(`${gateway.baseURL}/models`)).status).toBe(401)
    const afterText = await exposition()
    const after = parsePrometheusTextFormat(afterText)

    const chat = { route: "/v1/chat/completions", method: "POST", status: "200", model: "sonnet" }
    const counter = family(after, "gateway_http_requests_total")
    expect(counter?.type).toBe("COUNTER")
    expect(value(after, "gateway_http_requests_total", chat) - value(before, "gateway_http_requests_total", chat)).toBe(2)
    // The key is named by a short hash, never the key itself.
    const keyIds = new Set((counter?.metrics ?? []).map((m) => m.labels?.api_key).filter((id) => id !== undefined))
    expect([...keyIds]).toEqual([expect.stringMatching(/^[0-9a-f]{12}$/)])
    expect(JSON.stringify(after)).not.toContain(KEY)
    const refused = { route: "/v1/models", status: "401" }
    expect(value(after, "gateway_http_requests_total", refused) - value(before, "gateway_http_requests_total", refused)).toBe(1)

    // Tokens as the CLI reported them (each turn is one upstream call here).
    const tokens = (type: string, f: ReadonlyArray<PrometheusFamily>) => value(f, "gateway_tokens_total", { model: "sonnet", type })
    expect(tokens("input", after) - tokens("input", before)).toBe(2 * usage.input_tokens)
    expect(tokens("output", after) - tokens("output", before)).toBe(2 * usage.output_tokens)
    expect(tokens("cache_read", after) - tokens("cache_read", before)).toBe(2 * usage.cache_read_input_tokens)
    expect(tokens("cache_write", after) - tokens("cache_write", before)).toBe(2 * usage.cache_creation_input_tokens)
    expect(value(after, "gateway_cost_usd_total") - value(before, "gateway_cost_usd_total")).toBeGreaterThan(0)
    expect(value(after, "gateway_turns_total", { finish_reason: "stop" }) - value(before, "gateway_turns_total", { finish_reason: "stop" })).toBe(2)

    // Latency histograms: one observation per request on the route.
    expect(family(after, "gateway_http_request_duration_seconds")?.type).toBe("HISTOGRAM")
    const route = `route="/v1/chat/completions"`
    const moved = (name: string, label: string) => observations(afterText, name, label) - observations(beforeText, name, label)
    expect(moved("gateway_http_request_duration_seconds", route)).toBe(2)
    expect(moved("gateway_http_time_to_first_byte_seconds", route)).toBe(2)
    expect(moved("gateway_time_to_first_token_seconds", `model="sonnet"`)).toBe(2)
    // Cumulative buckets: the request took more than 5 ms and less than 5 minutes.
    const buckets = histogram(afterText, "gateway_http_request_duration_seconds", route)
    expect(Number(buckets["0.005"])).toBeLessThan(Number(buckets["+Inf"]))
    expect(Number(buckets["300"])).toBe(Number(buckets["+Inf"]))

    // The pool served them: boots and hits only grow.
    expect(value(after, "gateway_pool_boots_total")).toBeGreaterThanOrEqual(1)
    expect(value(after, "gateway_pool_hits_total") + value(after, "gateway_pool_misses_total"))
      .toBe(value(before, "gateway_pool_hits_total") + value(before, "gateway_pool_misses_total") + 2)
  })

  it("counts a turn that fails upstream as a turn error and by its status", async () => {
    const before = await scrape()
    upstream.on("METRICS-FAIL", { kind: "error", status: 529, type: "overloaded_error", message: "Overloaded" })
    const response = await fetch(`${gateway.baseURL}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: "sonnet", messages: [{ role: "user", content: "METRICS-FAIL" }] })
    })
    expect(response.status).toBe(503)
    const after = await scrape()
    const failed = { model: "sonnet", error: "UpstreamError" }
    expect(value(after, "gateway_turn_errors_total", failed) - value(before, "gateway_turn_errors_total", failed)).toBe(1)
    const status = { route: "/v1/chat/completions", status: "503", model: "sonnet" }
    expect(value(after, "gateway_http_requests_total", status) - value(before, "gateway_http_requests_total", status)).toBe(1)
  })

  it("ids in a path never become label values", async () => {
    const id = `conv_${"0".repeat(32)}`
    await fetch(`${gateway.baseURL}/conversations/${id}`, { headers: { "x-api-key": KEY } })
    const families = await scrape()
    expect(JSON.stringify(family(families, "gateway_http_requests_total"))).not.toContain(id)
    expect(value(families, "gateway_http_requests_total", { route: "/v1/conversations/:id", method: "GET" })).toBeGreaterThanOrEqual(1)
  })
})

describe("telemetry.metrics_public", () => {
  let open: Gateway | undefined
  afterAll(() => open?.close())

  it("serves /metrics without a key, and nothing else", async () => {
    open = await startGateway({
      upstreamUrl: upstream.url,
      config: { server: { api_keys: [KEY] }, pool: { prewarm: 0 }, telemetry: { metrics_public: true } }
    })
    const families = await scrape(open, undefined)
    expect(family(families, "gateway_pool_processes")?.type).toBe("GAUGE")
    expect((await fetch(`${open.url}/stats`)).status).toBe(401)
    expect((await fetch(`${open.baseURL}/models`)).status).toBe(401)
  })
})
