import Anthropic from "@anthropic-ai/sdk"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cliChildren, type Gateway, standbys, startGateway, waitForHealth } from "../support/gateway.js"
import { messagesOf, systemText, textOf, type Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// The Anthropic Messages dialect, driven by the official Anthropic SDK against the real app and
// the real CLI (scripted upstream).

let upstream: Upstream
let gateway: Gateway

useGateway({}, (started) => ({ upstream, gateway } = started))

const client = () => new Anthropic({ baseURL: gateway.url, apiKey: "unused", maxRetries: 0 })

const postMessages = (body: unknown, path = "/v1/messages") =>
  fetch(`${gateway.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": "unused" },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

/** The last user message the CLI sent upstream, as JSON (the CLI also adds a system-role message of its own). */
const lastUser = (body: unknown) => JSON.stringify(messagesOf(body).filter((m) => m.role === "user").at(-1)?.content)

// A 1x1 PNG.
const PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

const WEATHER_TOOL = {
  name: "get_weather",
  description: "Current weather for a city",
  input_schema: { type: "object" as const, properties: { city: { type: "string" } }, required: ["city"] }
}

describe("Anthropic Messages: messages.create", () => {
  it("answers with a Message: text, stop reason, usage, the system prompt reaching the model", async () => {
    upstream.on("ANTH-1", {
      kind: "message",
      blocks: [{ type: "text", text: ["Hello ", "from ", "Claude"] }],
      usage: { input_tokens: 21, output_tokens: 6, cache_read_input_tokens: 3 }
    })
    const { data: message, request_id, response } = await client().messages.create({
      model: "sonnet",
      max_tokens: 256,
      system: [{ type: "text", text: "You are terse." }],
      messages: [{ role: "user", content: "ANTH-1" }]
    }).withResponse()
    expect(message.type).toBe("message")
    expect(message.role).toBe("assistant")
    expect(message.id).toMatch(/^msg_/)
    expect(message.content).toEqual([{ type: "text", text: "Hello from Claude" }])
    expect(message.stop_reason).toBe("end_turn")
    expect(message.stop_sequence).toBeNull()
    expect(message.usage).toMatchObject({ input_tokens: 21, output_tokens: 6, cache_read_input_tokens: 3 })
    expect(request_id).toMatch(/^req_/)
    // The conversation the turn started, to continue by name (x-conversation-id) if the client wishes.
    const conversationId = response.headers.get("x-conversation-id")
    expect(conversationId).toBeTruthy()
    const unknown = await client().messages.create(
      { model: "sonnet", max_tokens: 10, messages: [{ role: "user", content: "x" }] },
      { headers: { "x-conversation-id": "conv_does_not_exist" } }
    ).catch((e: unknown) => e)
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError)
    const [sent] = upstream.requestsFor("ANTH-1")
    expect(systemText(sent!.body)).toContain("You are terse.")
  })

  it("stop_sequences end the answer with stop_reason stop_sequence and the sequence", async () => {
    upstream.on("ANTH-STOP", { kind: "message", blocks: [{ type: "text", text: ["one two ", "STOP three"] }] })
    const message = await client().messages.create({
      model: "sonnet",
      max_tokens: 100,
      stop_sequences: ["STOP"],
      messages: [{ role: "user", content: "ANTH-STOP" }]
    })
    expect(message.content).toEqual([{ type: "text", text: "one two " }])
    expect(message.stop_reason).toBe("stop_sequence")
    expect(message.stop_sequence).toBe("STOP")
  })

  it("output_config.format json_schema answers with the CLI's validated structured output", async () => {
    upstream.on("ANTH-JSON", {
      kind: "message",
      blocks: [{ type: "text", text: "Here you go." }, { type: "tool_use", name: "StructuredOutput", input: { name: "Ada", age: 36 } }]
    })
    const schema = {
      type: "object",
      properties: { name: { type: "string" }, age: { type: "integer" } },
      required: ["name", "age"],
      additionalProperties: false
    }
    const message = await client().messages.create({
      model: "sonnet",
      max_tokens: 200,
      output_config: { format: { type: "json_schema", schema } },
      messages: [{ role: "user", content: "ANTH-JSON who?" }]
    })
    expect(message.content).toHaveLength(1)
    const [block] = message.content
    expect(block?.type === "text" ? JSON.parse(block.text) : block).toEqual({ name: "Ada", age: 36 })
    expect(message.stop_reason).toBe("end_turn")
    const tools = (upstream.requestsFor("ANTH-JSON")[0]!.body as { tools: Array<{ name: string; input_schema: unknown }> }).tools
    expect(tools.find((t) => t.name === "StructuredOutput")?.input_schema).toMatchObject(schema)
  })

  it("a history of real turns continues the same CLI session natively", async () => {
    upstream.on("ANTH-H1", { kind: "message", blocks: [{ type: "text", text: "First answer." }] })
    upstream.on("ANTH-H2", { kind: "message", blocks: [{ type: "text", text: "Second answer." }] })
    const first = await client().messages.create({
      model: "sonnet",
      max_tokens: 100,
      messages: [{ role: "user", content: "ANTH-H1" }]
    })
    const second = await client().messages.create({
      model: "sonnet",
      max_tokens: 100,
      messages: [
        { role: "user", content: "ANTH-H1" },
        { role: "assistant", content: first.content.flatMap((b) => (b.type === "text" ? [{ type: "text" as const, text: b.text }] : [])) },
        { role: "user", content: [{ type: "text", text: "ANTH-H2" }] }
      ]
    })
    expect(second.content).toEqual([{ type: "text", text: "Second answer." }])
    const [h1] = upstream.requestsFor("ANTH-H1")
    const [h2] = upstream.requestsFor("ANTH-H2")
    // Native continuation: the second upstream request carries the first turn as real messages of
    // the same CLI session, not a transcript in the new user message.
    expect(h2!.headers["x-claude-code-session-id"]).toBe(h1!.headers["x-claude-code-session-id"])
    expect(messagesOf(h2!.body).some((m) => m.role === "assistant" && textOf(m.content).includes("First answer."))).toBe(true)
    expect(lastUser(h2!.body)).toContain("ANTH-H2")
    expect(lastUser(h2!.body)).not.toContain("conversation_history")
  })
})

describe("Anthropic Messages: images and the beta namespace", () => {
  it("a base64 image block reaches the model as an image block, next to the text", async () => {
    upstream.on("ANTH-IMG", { kind: "message", blocks: [{ type: "text", text: "A pixel." }] })
    const message = await client().messages.create({
      model: "sonnet",
      max_tokens: 50,
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "ANTH-IMG what is this?" },
          { type: "image", source: { type: "base64", media_type: "image/png", data: PIXEL } }
        ]
      }]
    })
    expect(message.content).toEqual([{ type: "text", text: "A pixel." }])
    const [sent] = upstream.requestsFor("ANTH-IMG")
    expect(lastUser(sent!.body)).toContain(`"media_type":"image/png","data":"${PIXEL}"`)
  })

  it("client.beta.messages (POST /v1/messages?beta=true, anthropic-beta header) is the same endpoint", async () => {
    upstream.on("ANTH-BETA", { kind: "message", blocks: [{ type: "text", text: "beta ok" }] })
    const message = await client().beta.messages.create({
      model: "sonnet",
      max_tokens: 50,
      betas: ["context-management-2025-06-27"],
      messages: [{ role: "user", content: "ANTH-BETA" }]
    })
    expect(message.content).toEqual([{ type: "text", text: "beta ok" }])
  })
})

describe("Anthropic Messages: messages.stream", () => {
  it("streams Anthropic's events in order and finalMessage() assembles the answer", async () => {
    upstream.on("ANTH-S1", {
      kind: "message",
      blocks: [
        { type: "thinking", thinking: ["Let me ", "think."] },
        { type: "text", text: ["one ", "two ", "three"] }
      ],
      usage: { input_tokens: 9, output_tokens: 7 }
    })
    const stream = client().messages.stream({
      model: "sonnet",
      max_tokens: 4096,
      thinking: { type: "enabled", budget_tokens: 2048 },
      messages: [{ role: "user", content: "ANTH-S1" }]
    })
    const types: Array<string> = []
    const deltas: Array<string> = []
    for await (const event of stream) {
      types.push(event.type)
      if (event.type === "content_block_delta") deltas.push(event.delta.type)
    }
    const final = await stream.finalMessage()
    expect(types[0]).toBe("message_start")
    expect(types.slice(-2)).toEqual(["message_delta", "message_stop"])
    // Blocks open, take deltas and close in order: start, deltas, stop — thinking first, then text.
    const blocks = types.filter((t) => t.startsWith("content_block"))
    expect(blocks[0]).toBe("content_block_start")
    expect(blocks.filter((t) => t === "content_block_start")).toHaveLength(2)
    expect(blocks.filter((t) => t === "content_block_stop")).toHaveLength(2)
    expect(deltas.filter((d) => d === "text_delta").length).toBeGreaterThanOrEqual(3)
    expect(deltas).toContain("thinking_delta")
    expect(deltas.indexOf("thinking_delta")).toBeLessThan(deltas.indexOf("text_delta"))
    expect(final.content).toEqual([
      { type: "thinking", thinking: "Let me think.", signature: "" },
      { type: "text", text: "one two three" }
    ])
    expect(final.stop_reason).toBe("end_turn")
    expect(final.usage).toMatchObject({ input_tokens: 9, output_tokens: 7 })
  })

  it("leaves thinking out when the client did not ask for it", async () => {
    upstream.on("ANTH-S2", {
      kind: "message",
      blocks: [{ type: "thinking", thinking: "hidden" }, { type: "text", text: "visible" }]
    })
    const final = await client().messages.stream({
      model: "sonnet",
      max_tokens: 100,
      messages: [{ role: "user", content: "ANTH-S2" }]
    }).finalMessage()
    expect(final.content).toEqual([{ type: "text", text: "visible" }])
  })

  it("an upstream error before the first byte is a typed error with Anthropic's envelope", async () => {
    upstream.on("ANTH-S429", { kind: "error", status: 429, type: "rate_limit_error", message: "slow down" })
    const error = await client().messages.stream({
      model: "sonnet",
      max_tokens: 100,
      messages: [{ role: "user", content: "ANTH-S429" }]
    }).finalMessage().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Anthropic.RateLimitError)
    expect((error as InstanceType<typeof Anthropic.RateLimitError>).error).toMatchObject({
      type: "error",
      error: { type: "rate_limit_error", message: expect.stringContaining("slow down") }
    })
  })
})

describe("Anthropic Messages: client tools", () => {
  it("tool_use / tool_result round trip: the parked CLI turn continues with the result", async () => {
    upstream.on("ANTH-TOOL", {
      kind: "message",
      blocks: [
        { type: "text", text: "Checking. " },
        { type: "tool_use", name: "mcp__client__get_weather", input: { city: "Paris" }, chunks: 3 }
      ]
    })
    upstream.on("ANTH-WEATHER", { kind: "message", blocks: [{ type: "text", text: "Sunny in Paris, says the tool." }] })
    const messages: Array<Anthropic.MessageParam> = [{ role: "user", content: "ANTH-TOOL" }]
    const first = await client().messages.stream({ model: "sonnet", max_tokens: 200, tools: [WEATHER_TOOL], messages }).finalMessage()
    expect(first.stop_reason).toBe("tool_use")
    const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use")
    expect(use).toMatchObject({ type: "tool_use", name: "get_weather", input: { city: "Paris" } })
    expect(use!.id).not.toBe("")
    expect(first.content[0]).toEqual({ type: "text", text: "Checking. " })

    const second = await client().messages.create({
      model: "sonnet",
      max_tokens: 200,
      tools: [WEATHER_TOOL],
      messages: [
        ...messages,
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: use!.id, content: "ANTH-WEATHER: sunny, 24 C" }] }
      ]
    })
    expect(second.content).toEqual([{ type: "text", text: "Sunny in Paris, says the tool." }])
    expect(second.stop_reason).toBe("end_turn")
    // The same CLI session served both requests, and the model saw the client's result.
    const [asked] = upstream.requestsFor("ANTH-TOOL")
    const [answered] = upstream.requestsFor("ANTH-WEATHER")
    expect(answered!.headers["x-claude-code-session-id"]).toBe(asked!.headers["x-claude-code-session-id"])
    expect(lastUser(answered!.body)).toContain("sunny, 24 C")
  })

  it("tool_choice 'tool' tells the model which tool to call", async () => {
    upstream.on("ANTH-CHOICE", { kind: "message", blocks: [{ type: "tool_use", name: "mcp__client__get_weather", input: { city: "Oslo" } }] })
    const message = await client().messages.create({
      model: "sonnet",
      max_tokens: 100,
      tools: [WEATHER_TOOL],
      tool_choice: { type: "tool", name: "get_weather" },
      messages: [{ role: "user", content: "ANTH-CHOICE" }]
    })
    expect(message.content).toMatchObject([{ type: "tool_use", name: "get_weather", input: { city: "Oslo" } }])
    const [sent] = upstream.requestsFor("ANTH-CHOICE")
    expect(systemText(sent!.body)).toContain("you must call the tool mcp__client__get_weather")
  })
})

describe("Anthropic Messages: count_tokens", () => {
  it("countTokens answers the upstream's count of the request, measured through the CLI", async () => {
    // The scripted upstream counts characters of what it is asked about: a count that depends on the input.
    upstream.countWith((body) => JSON.stringify(messagesOf(body).map((m) => textOf(m.content))).length)
    const ask = (text: string) =>
      client().messages.countTokens({
        model: "sonnet",
        system: "Be brief.",
        messages: [{ role: "user", content: text }]
      })
    const short = await ask("ANTH-COUNT short")
    const long = await ask("ANTH-COUNT a much longer question with many more words in it")
    expect(short.input_tokens).toBeGreaterThan(0)
    expect(long.input_tokens - short.input_tokens).toBe("a much longer question with many more words in it".length - "short".length)
    const counted = upstream.countRequests.map((body) => JSON.stringify(body))
    expect(counted.some((body) => body.includes("Be brief.") && body.includes("ANTH-COUNT short"))).toBe(true)
    // Counting is not a turn.
    expect(upstream.requestsFor("ANTH-COUNT")).toHaveLength(0)
  })

  it("refuses what it cannot count with a 400 naming the field", async () => {
    const response = await postMessages({
      model: "sonnet",
      messages: [{ role: "user", content: [{ type: "text", text: "x" }, { type: "image", source: { type: "url", url: "https://example.com/a.png" } }] }]
    }, "/v1/messages/count_tokens")
    expect(response.status).toBe(400)
    expect(await response.json()).toEqual({
      type: "error",
      error: { type: "invalid_request_error", message: expect.stringContaining("messages[0].content[1]") }
    })
  })
})

describe("Anthropic Messages: errors", () => {
  it("a bad request raises the SDK's typed BadRequestError naming the field", async () => {
    const error = await client().messages.create({
      model: "sonnet",
      max_tokens: 100,
      messages: [{ role: "user", content: [{ type: "text", text: "hi" }, { type: "document", source: { type: "text", media_type: "text/plain", data: "d" } }] }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Anthropic.BadRequestError)
    const typed = error as InstanceType<typeof Anthropic.BadRequestError>
    expect(typed.status).toBe(400)
    expect(typed.error).toMatchObject({ type: "error", error: { type: "invalid_request_error" } })
    expect(typed.message).toContain("messages[0].content[1].type")
  })

  it.each([
    [{ model: "sonnet", messages: [{ role: "user", content: "x" }] }, "max_tokens"],
    [{ model: "sonnet", max_tokens: 0, messages: [{ role: "user", content: "x" }] }, "max_tokens"],
    [{ model: "sonnet", max_tokens: 10, messages: [{ role: "assistant", content: "x" }] }, "messages[0].role"],
    [{ model: "sonnet", max_tokens: 10, messages: [{ role: "user", content: "x" }], tools: [{ name: "bad name!", input_schema: { type: "object" } }] }, "tools[0].name"],
    [{ model: "sonnet", max_tokens: 10, messages: [{ role: "user", content: "x" }], tools: [{ type: "web_search_20250305", name: "web_search" }] }, "tools[0].type"],
    [{ model: "sonnet", max_tokens: 10, messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/tiff", data: "AAAA" } }] }] }, "messages[0].content[0].source"],
    [{
      model: "sonnet",
      max_tokens: 10,
      messages: [
        { role: "user", content: "x" },
        { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "f", input: {} }] },
        { role: "user", content: "no result" }
      ]
    }, "messages[1].content"],
    [{ model: "sonnet", max_tokens: 10, messages: [{ role: "user", content: "x" }], thinking: { type: "enabled" } }, "thinking"]
  ])("400 invalid_request_error in Anthropic's envelope, naming '%s'", async (body, field) => {
    const response = await postMessages(body)
    expect(response.status).toBe(400)
    const json = (await response.json()) as { type: string; error: { type: string; message: string } }
    expect(json.type).toBe("error")
    expect(json.error.type).toBe("invalid_request_error")
    expect(json.error.message).toContain(field)
  })

  it("unknown model: 404 not_found_error; bad JSON: 400; unknown route: 404, all in Anthropic's envelope", async () => {
    const model = await postMessages({ model: "no-such-model", max_tokens: 10, messages: [{ role: "user", content: "x" }] })
    expect(model.status).toBe(404)
    expect(await model.json()).toMatchObject({ type: "error", error: { type: "not_found_error" } })
    const json = await postMessages("{not json")
    expect(json.status).toBe(400)
    expect(await json.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error" } })
    const route = await postMessages({}, "/v1/messages/batches")
    expect(route.status).toBe(404)
    expect(await route.json()).toMatchObject({ type: "error", error: { type: "not_found_error" } })
  })

  it("an upstream failure keeps its meaning: overloaded_error with the SDK's typed error", async () => {
    upstream.on("ANTH-529", { kind: "error", status: 529, type: "overloaded_error", message: "Overloaded" })
    const error = await client().messages.create({
      model: "sonnet",
      max_tokens: 100,
      messages: [{ role: "user", content: "ANTH-529" }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Anthropic.APIError)
    expect((error as InstanceType<typeof Anthropic.APIError>).status).toBe(503)
    expect((error as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: "error", error: { type: "overloaded_error" } })
  })
})

describe("GET /v1/models in Anthropic's shape", () => {
  it("models.list() gets type 'model', display_name, has_more; OpenAI clients keep their shape", async () => {
    const page = await client().models.list()
    expect(page.data.length).toBeGreaterThan(0)
    for (const model of page.data) {
      expect(model.type).toBe("model")
      expect(typeof model.display_name).toBe("string")
      expect(Number.isNaN(Date.parse(model.created_at))).toBe(false)
    }
    expect(page.data.map((m) => m.id)).toContain("sonnet")
    const raw = (await (await fetch(`${gateway.url}/v1/models`, { headers: { "anthropic-version": "2023-06-01" } })).json()) as Record<string, unknown>
    expect(raw.has_more).toBe(false)
    expect(raw.first_id).toBe(page.data[0]!.id)
    const openai = (await (await fetch(`${gateway.url}/v1/models`)).json()) as Record<string, unknown>
    expect(openai.object).toBe("list")
    const one = await client().models.retrieve("sonnet")
    expect(one).toMatchObject({ id: "sonnet", type: "model", display_name: "Sonnet" })
  })
})

// Long enough for a turn on a loaded machine; the stall test waits it out once.
const DEADLINE_SECONDS = 8

// A second gateway: API keys, and a short turn deadline.
describe("API keys and a mid-stream failure on Anthropic routes", () => {
  let keyed: Gateway
  beforeAll(async () => {
    keyed = await startGateway({
      upstreamUrl: upstream.url,
      config: { server: { api_keys: ["anth-key"] }, claude: { timeout_seconds: DEADLINE_SECONDS } }
    })
    // The deadline counts from admission: a standby first, so that no test pays a cold start.
    await waitForHealth(keyed, (h) => standbys(h) >= 1, 30_000)
  })
  afterAll(async () => {
    await keyed.close()
  })

  it("accepts x-api-key (the SDK's header); a wrong key is an AuthenticationError in Anthropic's envelope", async () => {
    upstream.on("ANTH-KEY", { kind: "message", blocks: [{ type: "text", text: "keyed" }] })
    const good = new Anthropic({ baseURL: keyed.url, apiKey: "anth-key", maxRetries: 0 })
    const message = await good.messages.create({ model: "sonnet", max_tokens: 10, messages: [{ role: "user", content: "ANTH-KEY" }] })
    expect(message.content).toEqual([{ type: "text", text: "keyed" }])
    const bad = new Anthropic({ baseURL: keyed.url, apiKey: "wrong", maxRetries: 0 })
    const error = await bad.messages.create({ model: "sonnet", max_tokens: 10, messages: [{ role: "user", content: "x" }] }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Anthropic.AuthenticationError)
    expect((error as InstanceType<typeof Anthropic.AuthenticationError>).error).toMatchObject({
      type: "error",
      error: { type: "authentication_error" }
    })
    const models = await bad.models.list().catch((e: unknown) => e)
    expect(models).toBeInstanceOf(Anthropic.AuthenticationError)
  })

  it("a failure after the first byte ends the stream with an `error` event the SDK raises", async () => {
    upstream.on("ANTH-STALL", { kind: "message", blocks: [{ type: "text", text: ["first ", "never"] }], stallAfterDeltas: 1 })
    const client = new Anthropic({ baseURL: keyed.url, apiKey: "anth-key", maxRetries: 0 })
    const stream = client.messages.stream({ model: "sonnet", max_tokens: 10, messages: [{ role: "user", content: "ANTH-STALL" }] })
    const texts: Array<string> = []
    const types: Array<string> = []
    // Both gateways of this file keep idle CLIs: the request's CLI is one of those running mid-stream.
    let during: Array<number> = []
    const error = await (async () => {
      for await (const event of stream) {
        types.push(event.type)
        if (event.type === "content_block_delta" && event.delta.type === "text_delta") {
          texts.push(event.delta.text)
          during = cliChildren()
        }
      }
    })().catch((e: unknown) => e)
    expect(texts.join("")).toBe("first ")
    expect(types[0]).toBe("message_start")
    expect(types).not.toContain("message_stop")
    expect(error).toBeInstanceOf(Anthropic.APIError)
    expect((error as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: "error",
      error: { type: "timeout_error", message: expect.stringContaining(`did not finish within ${DEADLINE_SECONDS} s`) }
    })
    // The request's CLI (it may be stuck) is killed with it, not kept: one of those running mid-stream is gone.
    expect(during.length).toBeGreaterThan(0)
    const gone = () => during.filter((pid) => !cliChildren().includes(pid))
    const deadline = Date.now() + 3000
    while (gone().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(gone()).toHaveLength(1)
  })
})
