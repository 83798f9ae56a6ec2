import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Gateway, openaiFor, startGateway, waitForNoCliChildren } from "../support/gateway.js"
import { startUpstream, type Upstream } from "../support/upstream.js"

// Traces over OTLP/HTTP: a local receiver (plain node:http, decoding the JSON bodies) gets the
// spans of a real request (real CLI against the scripted upstream) and the test checks the tree.

const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==",
  "base64"
)

interface AnyValue {
  readonly stringValue?: string
  readonly intValue?: number | string
  readonly doubleValue?: number
  readonly boolValue?: boolean
}
interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly startTimeUnixNano: string
  readonly endTimeUnixNano: string
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: AnyValue }>
}
interface TraceBody {
  readonly resourceSpans: ReadonlyArray<{
    readonly resource: { readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: AnyValue }> }
    readonly scopeSpans: ReadonlyArray<{ readonly spans: ReadonlyArray<OtlpSpan> }>
  }>
}

const attr = (span: OtlpSpan | undefined, key: string) => {
  const value = span?.attributes.find((a) => a.key === key)?.value
  if (value === undefined) return undefined
  return value.stringValue ?? value.boolValue ?? value.doubleValue ?? (value.intValue === undefined ? undefined : Number(value.intValue))
}

let upstream: Upstream
let gateway: Gateway
let receiver: http.Server
let receiverUrl: string
const bodies: Array<TraceBody> = []
const paths: Array<string> = []

beforeAll(async () => {
  upstream = await startUpstream()
  receiver = http.createServer((request, response) => {
    if (request.url === "/pixel.png") return void response.writeHead(200, { "content-type": "image/png" }).end(PNG)
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      paths.push(`${request.method} ${request.url} ${request.headers["content-type"]}`)
      bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")) as TraceBody)
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve))
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`
  gateway = await startGateway({
    upstreamUrl: upstream.url,
    config: {
      telemetry: { otlp_endpoint: receiverUrl, service_name: "ccapi-trace-test", export_interval_ms: 100 },
      images: { allow_private: true }
    }
  })
})

afterAll(async () => {
  await gateway?.close()
  await upstream?.close()
  receiver?.closeAllConnections()
  await new Promise((resolve) => receiver?.close(resolve))
  expect(await waitForNoCliChildren()).toEqual([])
})

const spans = () => bodies.flatMap((body) => body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)))

const waitFor = async <A>(find: () => A | undefined, ms = 15_000): Promise<A> => {
  const deadline = Date.now() + ms
  for (;;) {
    const found = find()
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`not received; spans: ${spans().map((s) => s.name).join(", ")}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe("OTLP traces", () => {
  it("exports a span per request with admission, pool, image, CLI turn and store spans beneath it", async () => {
    const usage = { input_tokens: 13, output_tokens: 6, cache_read_input_tokens: 200, cache_creation_input_tokens: 30 }
    upstream.on("TRACE-ONE", { kind: "message", blocks: [{ type: "text", text: ["tra", "ced"] }], usage })
    const completion = await openaiFor(gateway).chat.completions.create({
      model: "sonnet",
      messages: [{
        role: "user",
        content: [{ type: "text", text: "TRACE-ONE" }, { type: "image_url", image_url: { url: `${receiverUrl}/pixel.png` } }]
      }]
    })
    expect(completion.choices[0]!.message.content).toBe("traced")

    // The request's own span (made by the HTTP server) is the root of its trace.
    const root = await waitFor(() =>
      spans().find((s) => s.name === "http.server POST" && attr(s, "url.path") === "/v1/chat/completions")
    )
    expect(root.parentSpanId ?? "").toBe("")
    expect(attr(root, "http.response.status_code")).toBe(200)
    const turn = await waitFor(() => spans().find((s) => s.name === "gateway.cli.turn" && s.traceId === root.traceId))
    const store = await waitFor(() => spans().find((s) => s.name === "gateway.store.record_turn" && s.traceId === root.traceId))
    const trace = spans().filter((s) => s.traceId === root.traceId)
    const child = (name: string) => trace.find((s) => s.name === name && s.parentSpanId === root.spanId)

    expect(child("gateway.admission")).toBeDefined()
    expect(child("gateway.image.fetch")).toBeDefined()
    expect(attr(child("gateway.image.fetch"), "gateway.image.param")).toMatch(/^messages\[0\]\.content\[1\]/)
    const acquire = child("gateway.pool.acquire")
    expect(attr(acquire, "gateway.model")).toBe("sonnet")
    expect(typeof attr(acquire, "gateway.pool.hit")).toBe("boolean")
    expect(turn.parentSpanId).toBe(root.spanId)
    expect(store.parentSpanId).toBe(turn.spanId)

    // The CLI turn's figures, as the CLI reported them.
    const session = upstream.requestsFor("TRACE-ONE")[0]!.headers["x-claude-code-session-id"]
    expect(attr(turn, "gateway.cli_session_id")).toBe(session)
    expect(attr(turn, "gateway.model")).toBe("sonnet")
    expect(attr(turn, "gateway.finish_reason")).toBe("stop")
    expect(attr(turn, "gen_ai.usage.input_tokens")).toBe(usage.input_tokens)
    expect(attr(turn, "gen_ai.usage.output_tokens")).toBe(usage.output_tokens)
    expect(attr(turn, "gateway.usage.cache_read_tokens")).toBe(usage.cache_read_input_tokens)
    expect(attr(turn, "gateway.usage.cache_write_tokens")).toBe(usage.cache_creation_input_tokens)
    expect(attr(turn, "gateway.cost_usd")).toBeGreaterThan(0)
    expect(attr(turn, "gateway.time_to_first_token_ms")).toBeGreaterThan(0)

    // Children lie within their parents; the order of the path is admission → pool → turn.
    for (const span of [turn, store, acquire!]) {
      const parent = trace.find((s) => s.spanId === span.parentSpanId)!
      expect(BigInt(span.startTimeUnixNano) >= BigInt(parent.startTimeUnixNano)).toBe(true)
    }
    expect(BigInt(child("gateway.admission")!.startTimeUnixNano) <= BigInt(acquire!.startTimeUnixNano)).toBe(true)
    expect(BigInt(acquire!.endTimeUnixNano) <= BigInt(turn.startTimeUnixNano)).toBe(true)

    // OTLP/HTTP with JSON bodies, the service named by telemetry.service_name.
    expect(paths[0]).toBe("POST /v1/traces application/json")
    const service = bodies[0]!.resourceSpans[0]!.resource.attributes.find((a) => a.key === "service.name")
    expect(service?.value.stringValue).toBe("ccapi-trace-test")
  })

  it("a turn that fails upstream ends its span with the error", async () => {
    upstream.on("TRACE-FAIL", { kind: "error", status: 529, type: "overloaded_error", message: "Overloaded" })
    const response = await fetch(`${gateway.baseURL}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "sonnet", messages: [{ role: "user", content: "TRACE-FAIL" }] })
    })
    expect(response.status).toBe(503)
    const session = upstream.requestsFor("TRACE-FAIL")[0]!.headers["x-claude-code-session-id"]
    const turn = await waitFor(() => spans().find((s) => s.name === "gateway.cli.turn" && attr(s, "gateway.cli_session_id") === session))
    expect((turn as OtlpSpan & { status?: { code?: number } }).status?.code).toBe(2) // ERROR
    // The request's span ends when its response is done, a moment after the turn's.
    const root = await waitFor(() => spans().find((s) => s.spanId === turn.parentSpanId))
    expect(attr(root, "http.response.status_code")).toBe(503)
  })

  it("joins the caller's trace (W3C traceparent) and puts no request header on the request's span", async () => {
    upstream.on("TRACE-PARENT", { kind: "message", blocks: [{ type: "text", text: ["ok"] }] })
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
    const parentId = "00f067aa0ba902b7"
    const response = await fetch(`${gateway.baseURL}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "traceparent": `00-${traceId}-${parentId}-01`, "user-agent": "trace-test" },
      body: JSON.stringify({ model: "sonnet", messages: [{ role: "user", content: "TRACE-PARENT" }] })
    })
    expect(response.status).toBe(200)
    const root = await waitFor(() => spans().find((s) => s.name === "http.server POST" && s.traceId === traceId))
    expect(root.parentSpanId).toBe(parentId)
    expect(attr(root, "http.route")).toBe("/v1/chat/completions")
    expect(attr(root, "http.request.method")).toBe("POST")
    expect(attr(root, "http.response.status_code")).toBe(200)
    // Method, route, path and status: headers (and with them any credential) stay out of traces.
    expect(root.attributes.map((a) => a.key).filter((key) => key.startsWith("http.request.header") || key === "user_agent.original")).toEqual([])
    const turn = await waitFor(() => spans().find((s) => s.name === "gateway.cli.turn" && s.traceId === traceId))
    expect(turn.parentSpanId).toBe(root.spanId)
  })

  it("a streamed request's turn is a child of its request span too", async () => {
    upstream.on("TRACE-TWO", { kind: "message", blocks: [{ type: "text", text: ["a", "b", "c"] }] })
    const stream = await openaiFor(gateway).chat.completions.create({
      model: "sonnet",
      stream: true,
      messages: [{ role: "user", content: "TRACE-TWO" }]
    })
    for await (const _ of stream) { /* to the end */ }
    const session = upstream.requestsFor("TRACE-TWO")[0]!.headers["x-claude-code-session-id"]
    const turn = await waitFor(() => spans().find((s) => s.name === "gateway.cli.turn" && attr(s, "gateway.cli_session_id") === session))
    const parent = spans().find((s) => s.spanId === turn.parentSpanId)
    expect(parent?.name).toBe("http.server POST")
    expect(attr(turn, "gateway.time_to_first_token_ms")).toBeGreaterThan(0)
  })
})
