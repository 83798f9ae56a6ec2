import { afterEach, describe, expect, it } from "vitest"
import { messagesOf, startUpstream, systemText, textOf, type Upstream } from "./upstream.js"

const request = (prompt: string, extra: Record<string, unknown> = {}) => ({
  model: "claude-test-1",
  max_tokens: 100,
  system: [{ type: "text", text: "sys A" }, { type: "text", text: "sys B" }],
  messages: [
    { role: "user", content: [{ type: "text", text: "earlier" }] },
    { role: "assistant", content: "ok" },
    { role: "user", content: [{ type: "text", text: prompt }] }
  ],
  ...extra
})

const post = (up: Upstream, body: unknown, path = "/v1/messages?beta=true") =>
  fetch(`${up.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })

const ask = async (up: Upstream, prompt: string): Promise<string> => {
  const res = await post(up, request(prompt))
  const json: unknown = await res.json()
  const content = typeof json === "object" && json !== null && "content" in json ? json.content : undefined
  return textOf(content)
}

describe("scripted upstream", () => {
  let up: Upstream | undefined
  afterEach(async () => {
    await up?.close()
    up = undefined
  })

  it("streams SSE events in order with the deltas", async () => {
    up = await startUpstream()
    up.on("TOOLS", {
      kind: "message",
      blocks: [
        { type: "thinking", thinking: ["hm", "m"] },
        { type: "text", text: ["Hel", "lo"] },
        { type: "tool_use", name: "Read", input: { file_path: "/x" }, chunks: 3 }
      ],
      usage: { output_tokens: 7 },
      interDeltaMs: 1
    })
    const res = await post(up, request("run TOOLS", { stream: true }))
    expect(res.headers.get("content-type")).toBe("text/event-stream")
    const sse = await res.text()
    const events = [...sse.matchAll(/^event: (\S+)$/gm)].map((m) => m[1])
    expect(events).toEqual([
      "message_start",
      ...["content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop"],
      ...["content_block_start", "content_block_delta", "content_block_delta", "content_block_stop"],
      ...["content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop"],
      "message_delta",
      "message_stop"
    ])
    expect(sse).toContain(
      `data: {"type":"message_start","message":{"id":"msg_up_1","type":"message","role":"assistant","model":"claude-test-1","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}\n\n`
    )
    expect(sse).toContain(`{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}`)
    expect(sse).toContain(`"index":0,"delta":{"type":"thinking_delta","thinking":"m"}}`)
    expect(sse).toContain(`"index":0,"delta":{"type":"signature_delta","signature":"sig"}}`)
    expect(sse).toContain(`"index":1,"delta":{"type":"text_delta","text":"Hel"}}`)
    expect(sse).toContain(`"index":1,"delta":{"type":"text_delta","text":"lo"}}`)
    expect(sse).toContain(`"content_block":{"type":"tool_use","id":"toolu_up_1_2","name":"Read","input":{}}`)
    const json = [...sse.matchAll(/"partial_json":("(?:[^"\\]|\\.)*")/g)].map((m) => JSON.parse(m[1] ?? "") as string).join("")
    expect(JSON.parse(json)).toEqual({ file_path: "/x" })
    expect(sse).toContain(
      `event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":7}}\n\n`
    )
    expect(sse.endsWith(`event: message_stop\ndata: {"type":"message_stop"}\n\n`)).toBe(true)

    const [recorded] = up.requestsFor("TOOLS")
    expect(recorded?.path).toBe("/v1/messages?beta=true")
    expect(systemText(recorded?.body)).toBe("sys A\nsys B")
    expect(messagesOf(recorded?.body).map((m) => textOf(m.content))).toEqual(["earlier", "ok", "run TOOLS"])
  })

  it("answers non-streaming requests with a JSON Message", async () => {
    up = await startUpstream({ defaultReply: { kind: "message", blocks: [{ type: "text", text: ["a", "b", "c"] }], model: "m-x" } })
    const res = await post(up, request("hi"))
    expect(res.headers.get("content-type")).toBe("application/json")
    expect(await res.json()).toEqual({
      id: "msg_up_1",
      type: "message",
      role: "assistant",
      model: "m-x",
      content: [{ type: "text", text: "abc" }],
      stop_reason: "end_turn",
      stop_sequence: null,
      usage: { input_tokens: 12, output_tokens: 5, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 }
    })
  })

  it("consumes marker replies in order and reuses the last one", async () => {
    up = await startUpstream()
    const text = (t: string) => ({ kind: "message", blocks: [{ type: "text", text: t }] }) as const
    up.on("MARK", text("one"), text("two"))
    expect(await ask(up, "x MARK 1")).toBe("one")
    expect(await ask(up, "nothing")).toBe("OK")
    expect(await ask(up, "x MARK 2")).toBe("two")
    expect(await ask(up, "x MARK 3")).toBe("two")
    expect(up.requests).toHaveLength(4)
    expect(up.requestsFor("MARK").map((r) => textOf(messagesOf(r.body).at(-1)?.content))).toEqual(["x MARK 1", "x MARK 2", "x MARK 3"])
  })

  it("returns error replies with x-should-retry: false", async () => {
    up = await startUpstream()
    up.on("FAIL", { kind: "error", status: 529, type: "overloaded_error", message: "Overloaded" })
    up.on("RETRY", { kind: "error", status: 500, type: "api_error", message: "boom", headers: { "X-Should-Retry": "true" } })
    const res = await post(up, request("FAIL", { stream: true }))
    expect(res.status).toBe(529)
    expect(res.headers.get("x-should-retry")).toBe("false")
    expect(await res.json()).toEqual({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
    const res2 = await post(up, request("RETRY"))
    expect(res2.status).toBe(500)
    expect(res2.headers.get("x-should-retry")).toBe("true")
    expect(up.requests.map((r) => r.reply.kind)).toEqual(["error", "error"])
  })

  it("serves count_tokens and 404s the rest", async () => {
    up = await startUpstream()
    const res = await post(up, request("count"), "/v1/messages/count_tokens?beta=true")
    expect(await res.json()).toEqual({ input_tokens: 10 })
    const missing = await fetch(`${up.url}/v1/models`)
    expect(missing.status).toBe(404)
    expect(await missing.json()).toMatchObject({ type: "error", error: { type: "not_found_error" } })
    expect(up.requests).toHaveLength(0)
  })

  it("close() resolves while a request hangs", async () => {
    const server = await startUpstream({ defaultReply: { kind: "hang" } })
    const pending = post(server, request("hang", { stream: true })).then(() => "answered", () => "failed")
    while (server.requests.length === 0) await new Promise((r) => setTimeout(r, 5))
    expect(server.requests[0]?.reply).toEqual({ kind: "hang" })
    await server.close()
    expect(await pending).toBe("failed")
  })

  it("close() cuts a delayed reply short", async () => {
    const server = await startUpstream({ defaultReply: { kind: "message", blocks: [{ type: "text", text: "late" }], delayMs: 60_000 } })
    const pending = post(server, request("slow")).then(() => "answered", () => "failed")
    while (server.requests.length === 0) await new Promise((r) => setTimeout(r, 5))
    const started = Date.now()
    await server.close()
    expect(await pending).toBe("failed")
    expect(Date.now() - started).toBeLessThan(2_000)
  })
})
