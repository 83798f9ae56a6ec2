import OpenAI from "openai"
import { Cause, Effect, Exit, Layer } from "effect"
import { describe, expect, it } from "vitest"
import { GatewayConfig } from "../../src/config/GatewayConfig.js"
import { ServerLive } from "../../src/Gateway.js"
import type { Gateway } from "../support/gateway.js"
import type { Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// API keys, CORS and the bind check, against the real app (real CLI behind it).

let upstream: Upstream
let gateway: Gateway

useGateway(
  { config: { server: { api_keys: ["key-one", "key-two"], cors_origins: ["http://app.example"] } } },
  (started) => ({ upstream, gateway } = started)
)

describe("API keys", () => {
  it("refuses a missing or wrong key with 401 in the OpenAI envelope", async () => {
    for (const headers of [{}, { authorization: "Bearer nope" }, { "x-api-key": "key-one-but-longer" }]) {
      const response = await fetch(`${gateway.baseURL}/models`, { headers })
      expect(response.status).toBe(401)
      expect(await response.json()).toMatchObject({ error: { type: "invalid_request_error", code: "invalid_api_key" } })
    }
  })

  it("accepts any configured key as Bearer (the openai client) or x-api-key", async () => {
    const client = new OpenAI({ baseURL: gateway.baseURL, apiKey: "key-two", maxRetries: 0 })
    upstream.on("AUTHED-1", { kind: "message", blocks: [{ type: "text", text: "hello" }] })
    const completion = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "AUTHED-1" }]
    })
    expect(completion.choices[0]!.message.content).toBe("hello")
    const response = await fetch(`${gateway.baseURL}/models`, { headers: { "x-api-key": "key-one" } })
    expect(response.status).toBe(200)
  })

  it("leaves /health open", async () => {
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200)
  })
})

describe("conversations per API key", () => {
  it("are invisible to other keys: not listed, not shown, not continued, not matched by history", async () => {
    const one = new OpenAI({ baseURL: gateway.baseURL, apiKey: "key-one", maxRetries: 0 })
    const two = new OpenAI({ baseURL: gateway.baseURL, apiKey: "key-two", maxRetries: 0 })
    upstream.on("OWNED-1", { kind: "message", blocks: [{ type: "text", text: "private" }] })
    upstream.on("OWNED-2", { kind: "message", blocks: [{ type: "text", text: "fresh" }] })
    const first = await one.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "OWNED-1" }] }) as { conversation_id?: string } & OpenAI.ChatCompletion
    const id = first.conversation_id!
    const asTwo = { authorization: "Bearer key-two" }
    expect((await fetch(`${gateway.baseURL}/conversations/${id}`, { headers: asTwo })).status).toBe(404)
    expect((await fetch(`${gateway.baseURL}/conversations/${id}`, { headers: { authorization: "Bearer key-one" } })).status).toBe(200)
    const listed = await (await fetch(`${gateway.baseURL}/conversations`, { headers: asTwo })).json() as { data: Array<{ id: string }> }
    expect(listed.data.map((c) => c.id)).not.toContain(id)
    expect((await fetch(`${gateway.baseURL}/conversations/${id}`, { method: "DELETE", headers: asTwo })).status).toBe(404)
    const continued = await two.chat.completions
      .create({ model: "sonnet", messages: [{ role: "user", content: "OWNED-2" }], conversation_id: id } as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e)
    expect((continued as { status?: number }).status).toBe(404)
    // The same history from another key starts a conversation of its own.
    const copied = await two.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "OWNED-1" }, first.choices[0]!.message, { role: "user", content: "OWNED-2" }]
    }) as { conversation_id?: string } & OpenAI.ChatCompletion
    expect(copied.conversation_id).not.toBe(id)
    expect(JSON.stringify(upstream.requestsFor("OWNED-2")[0]!.body)).toContain("<conversation_history>")
  })
})

describe("parked tool turns per API key", () => {
  it("another key's results for the same tool call ids do not reach the parked turn", async () => {
    const one = new OpenAI({ baseURL: gateway.baseURL, apiKey: "key-one", maxRetries: 0 })
    const two = new OpenAI({ baseURL: gateway.baseURL, apiKey: "key-two", maxRetries: 0 })
    const tools = [{ type: "function" as const, function: { name: "lookup", parameters: { type: "object", properties: {} } } }]
    upstream.on("STRANGER-RESULT", { kind: "message", blocks: [{ type: "text", text: "a conversation of its own" }] })
    upstream.on("PARKED-OWNED", { kind: "message", blocks: [{ type: "tool_use", name: "mcp__client__lookup", input: {} }] })
    const first = await one.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "PARKED-OWNED" }], tools })
    const call = first.choices[0]!.message.tool_calls![0]!
    const parked = async () => ((await (await fetch(`${gateway.url}/health`)).json()) as { tools: { parked: number } }).tools.parked
    const before = await parked()
    const answer = await two.chat.completions.create({
      model: "sonnet",
      tools,
      messages: [{ role: "user", content: "PARKED-OWNED" }, first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "STRANGER-RESULT" }]
    })
    expect(answer.choices[0]!.message.content).toBe("a conversation of its own")
    expect(await parked()).toBe(before)
  })
})

describe("CORS", () => {
  it("answers a preflight from an allowed origin without a key", async () => {
    const response = await fetch(`${gateway.baseURL}/chat/completions`, {
      method: "OPTIONS",
      headers: {
        origin: "http://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"
      }
    })
    expect(response.status).toBeLessThan(300)
    expect(response.headers.get("access-control-allow-origin")).toBe("http://app.example")
    expect(response.headers.get("access-control-allow-headers")).toContain("authorization")
  })

  it("adds CORS headers to answers, errors included, and never allows another origin", async () => {
    const allowed = await fetch(`${gateway.baseURL}/models`, { headers: { origin: "http://app.example" } })
    expect(allowed.status).toBe(401)
    expect(allowed.headers.get("access-control-allow-origin")).toBe("http://app.example")
    const other = await fetch(`${gateway.baseURL}/models`, { headers: { origin: "http://evil.example" } })
    expect(other.headers.get("access-control-allow-origin")).not.toBe("http://evil.example")
  })
})

describe("bind check", () => {
  const build = (server: Record<string, unknown>) =>
    Effect.runPromiseExit(Effect.scoped(Layer.build(
      ServerLive.pipe(Layer.provide(GatewayConfig.layerWith({ server: { port: 0, ...server }, pool: { enabled: false } })))
    )))

  it("refuses a non-loopback address without API keys, naming the keys to set", async () => {
    const exit = await build({ host: "0.0.0.0" })
    expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toContain("server.api_keys")
  })
})
