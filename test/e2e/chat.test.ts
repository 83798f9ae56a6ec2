import OpenAI from "openai"
import { describe, expect, it } from "vitest"
import { cliChildren, cliProcesses, type Gateway, postChat, waitForHealth } from "../support/gateway.js"
import { messagesOf, systemText, textOf, type Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// Real Claude Code CLI → scripted Anthropic upstream; real app; official openai client.

let upstream: Upstream
let gateway: Gateway
let client: OpenAI

// No CLI kept between turns or reused here, and one standby at most: these tests watch each request's
// own process, taken from the one standby (reuse.test.ts has the reused ones).
useGateway(
  { config: { models: { aliases: { "gpt-4o-mini": "haiku" } }, conversation: { max_live: 0 }, pool: { reuse: false, max_standby: 1 } } },
  (started) => ({ upstream, gateway, client } = started)
)

const hello = (marker: string) =>
  upstream.on(marker, {
    kind: "message",
    blocks: [{ type: "text", text: ["Hello ", "from ", "upstream"] }],
    usage: { input_tokens: 21, output_tokens: 7, cache_read_input_tokens: 4 }
  })

const lastUserText = (marker: string) => {
  const [request] = upstream.requestsFor(marker)
  const messages = messagesOf(request?.body).filter((m) => m.role === "user")
  return textOf(messages.at(-1)?.content)
}

describe("chat completions through the real CLI", () => {
  it("answers a non-streaming request with a faithful chat.completion", async () => {
    hello("NS-1")
    const completion = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "NS-1 say hello" }]
    })
    expect(completion.id).toMatch(/^chatcmpl-/)
    expect(completion.object).toBe("chat.completion")
    expect(completion.model).toBe("claude-sonnet-5-5")
    expect(Math.abs(completion.created - Date.now() / 1000)).toBeLessThan(60)
    expect(completion.choices).toHaveLength(1)
    expect(completion.choices[0]!.message).toMatchObject({ role: "assistant", content: "Hello from upstream", refusal: null })
    expect(completion.choices[0]!.finish_reason).toBe("stop")
    expect(completion.usage).toEqual({
      prompt_tokens: 25,
      completion_tokens: 7,
      total_tokens: 32,
      prompt_tokens_details: { cached_tokens: 4 },
      completion_tokens_details: { reasoning_tokens: 0 }
    })
    expect(lastUserText("NS-1")).toContain("NS-1 say hello")
    expect(upstream.requestsFor("NS-1")[0]!.body).toMatchObject({ model: "claude-sonnet-5-5" })
  })

  it("echoes the client's x-request-id and reports the CLI's cost estimate in x-claude-cost-usd", async () => {
    hello("NS-HEADERS")
    const { response } = await client.chat.completions.create(
      { model: "sonnet", messages: [{ role: "user", content: "NS-HEADERS" }] },
      { headers: { "x-request-id": "req_client_chosen_1" } }
    ).withResponse()
    expect(response.headers.get("x-request-id")).toBe("req_client_chosen_1")
    expect(Number(response.headers.get("x-claude-cost-usd"))).toBeGreaterThan(0)
    const generated = await postChat(gateway, { model: "sonnet", messages: [{ role: "user", content: "NS-HEADERS" }] })
    expect(generated.headers.get("x-request-id")).toMatch(/^req_[0-9a-f]{32}$/)
  })

  it("streams the CLI's real deltas: role first, one chunk per delta, finish_reason, [DONE]", async () => {
    hello("ST-1")
    const stream = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "ST-1 say hello" }],
      stream: true
    })
    const chunks: Array<OpenAI.Chat.Completions.ChatCompletionChunk> = []
    for await (const chunk of stream) chunks.push(chunk)
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant")
    const contents = chunks.flatMap((c) => c.choices.flatMap((choice) => choice.delta.content ? [choice.delta.content] : []))
    expect(contents).toEqual(["Hello ", "from ", "upstream"])
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe("stop")
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1)
    expect(chunks.every((c) => c.object === "chat.completion.chunk" && c.model === "claude-sonnet-5-5")).toBe(true)
    expect(chunks.every((c) => c.usage === undefined)).toBe(true)
  })

  it("streams text equal to the non-stream text and ends the SSE body with [DONE]", async () => {
    upstream.on("EQ-1", { kind: "message", blocks: [{ type: "text", text: ["Same ", "answer ", "both ", "ways."] }] })
    const plain = await client.chat.completions.create({ model: "haiku", messages: [{ role: "user", content: "EQ-1" }] })
    const response = await postChat(gateway, { model: "haiku", messages: [{ role: "user", content: "EQ-1" }], stream: true })
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toContain("text/event-stream")
    const body = await response.text()
    expect(body.endsWith("data: [DONE]\n\n")).toBe(true)
    const streamed = body
      .split("\n\n")
      .filter((frame) => frame.startsWith("data: {"))
      .map((frame) => JSON.parse(frame.slice(6)) as OpenAI.Chat.Completions.ChatCompletionChunk)
      .map((chunk) => chunk.choices[0]?.delta.content ?? "")
      .join("")
    expect(streamed).toBe(plain.choices[0]!.message.content)
    expect(streamed).toBe("Same answer both ways.")
  })

  it("is accepted by openai-node's stream helper", async () => {
    hello("HLP-1")
    const runner = client.chat.completions.stream({
      model: "opus",
      messages: [{ role: "user", content: "HLP-1" }]
    })
    const final = await runner.finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe("Hello from upstream")
    expect(final.choices[0]!.finish_reason).toBe("stop")
    expect(final.model).toBe("claude-opus-5-5")
  })

  it("adds a usage chunk with empty choices when stream_options.include_usage is set", async () => {
    hello("USG-1")
    const stream = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "USG-1" }],
      stream: true,
      stream_options: { include_usage: true }
    })
    const chunks: Array<OpenAI.Chat.Completions.ChatCompletionChunk> = []
    for await (const chunk of stream) chunks.push(chunk)
    const last = chunks.at(-1)!
    expect(last.choices).toEqual([])
    expect(last.usage).toMatchObject({ prompt_tokens: 25, completion_tokens: 7, total_tokens: 32 })
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true)
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("stop")
  })

  it("surfaces thinking as reasoning_content, never in content", async () => {
    upstream.on("THK-1", {
      kind: "message",
      blocks: [{ type: "thinking", thinking: ["Let me ", "think."] }, { type: "text", text: ["Answer."] }]
    })
    const completion = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "THK-1" }]
    })
    const message = completion.choices[0]!.message as OpenAI.Chat.Completions.ChatCompletionMessage & { reasoning_content?: string }
    expect(message.content).toBe("Answer.")
    expect(message.reasoning_content).toBe("Let me think.")
  })

  it("passes system and developer messages to the CLI's system prompt", async () => {
    upstream.on("SYS-1", { kind: "message", blocks: [{ type: "text", text: "ok" }] })
    await client.chat.completions.create({
      model: "sonnet",
      messages: [
        { role: "system", content: "You are GATEWAY-SYSTEM-PROMPT." },
        { role: "developer", content: "Answer tersely." },
        { role: "user", content: "SYS-1" }
      ]
    })
    const [request] = upstream.requestsFor("SYS-1")
    expect(systemText(request!.body)).toContain("You are GATEWAY-SYSTEM-PROMPT.\n\nAnswer tersely.")
  })

  it("sends earlier turns of a stateless history upstream with their roles", async () => {
    upstream.on("HIST-2", { kind: "message", blocks: [{ type: "text", text: "third" }] })
    await client.chat.completions.create({
      model: "sonnet",
      messages: [
        { role: "user", content: "first question HIST-1" },
        { role: "assistant", content: "first answer" },
        { role: "user", content: "second question HIST-2" }
      ]
    })
    const text = lastUserText("HIST-2")
    expect(text).toContain(`<message role="user">\nfirst question HIST-1\n</message>`)
    expect(text).toContain(`<message role="assistant">\nfirst answer\n</message>`)
    expect(text.indexOf("first answer")).toBeLessThan(text.indexOf("second question HIST-2"))
  })

  it("passes a data-URL image to the model as an image block", async () => {
    upstream.on("IMG-1", { kind: "message", blocks: [{ type: "text", text: "a pixel" }] })
    const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    await client.chat.completions.create({
      model: "sonnet",
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "IMG-1 what is this?" },
          { type: "image_url", image_url: { url: `data:image/png;base64,${png}` } }
        ]
      }]
    })
    const [request] = upstream.requestsFor("IMG-1")
    const last = messagesOf(request!.body).filter((m) => m.role === "user").at(-1)!
    expect(JSON.stringify(last.content)).toContain(`"media_type":"image/png","data":"${png}"`)
  })
})

describe("errors use the OpenAI envelope", () => {
  const post = async (body: string) => {
    const response = await postChat(gateway, body)
    return { status: response.status, body: await response.json() as { error: Record<string, unknown> } }
  }

  it("rejects malformed JSON with 400", async () => {
    const { status, body } = await post("{not json")
    expect(status).toBe(400)
    expect(body.error).toMatchObject({ type: "invalid_request_error", code: "invalid_json", param: null })
    expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"])
  })

  it.each([
    ["missing messages", { model: "sonnet" }, "messages"],
    ["empty messages", { model: "sonnet", messages: [] }, "messages"],
    ["messages of the wrong type", { model: "sonnet", messages: "hi" }, "messages"],
    ["an unknown role", { model: "sonnet", messages: [{ role: "wizard", content: "x" }] }, "messages[0].role"],
    ["content of the wrong type", { model: "sonnet", messages: [{ role: "user", content: 42 }] }, "messages[0].content"],
    ["an unsupported content part", {
      model: "sonnet",
      messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "", format: "wav" } }] }]
    }, "messages[0].content[0].type"],
    ["stream of the wrong type", { model: "sonnet", stream: "yes", messages: [{ role: "user", content: "x" }] }, "stream"],
    ["a missing model", { messages: [{ role: "user", content: "x" }] }, "model"],
    ["a last message that is not from the user", {
      model: "sonnet",
      messages: [{ role: "user", content: "x" }, { role: "assistant", content: "y" }]
    }, "messages[1].role"]
  ])("rejects %s with 400 naming the field", async (_name, payload, param) => {
    const { status, body } = await post(JSON.stringify(payload))
    expect(status).toBe(400)
    expect(body.error).toMatchObject({ type: "invalid_request_error", param })
    expect(String(body.error.message)).toContain(param)
  })

  it("raises BadRequestError in the openai client with the param", async () => {
    const error = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: [{ type: "file", file: { file_id: "f" } }] }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.BadRequestError)
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("messages[0].content[0].type")
  })

  it("answers an unknown model with 404 model_not_found listing what exists", async () => {
    const error = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "x" }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.NotFoundError)
    expect((error as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found")
    expect((error as Error).message).toContain("sonnet")
  })

  it("answers an unknown path with a 404 envelope", async () => {
    const response = await fetch(`${gateway.url}/v1/nothing-here`)
    expect(response.status).toBe(404)
    expect(await response.json()).toMatchObject({ error: { type: "invalid_request_error", code: "unknown_url" } })
  })

  it("maps an upstream 529 to 503 overloaded with Retry-After", async () => {
    upstream.on("OVL-1", { kind: "error", status: 529, type: "overloaded_error", message: "Overloaded" })
    const response = await postChat(gateway, { model: "sonnet", messages: [{ role: "user", content: "OVL-1" }] })
    expect(response.status).toBe(503)
    expect(response.headers.get("retry-after")).toBe("5")
    const body = await response.json() as { error: { type: string; code: string; message: string } }
    expect(body.error).toMatchObject({ type: "service_unavailable_error", code: "overloaded" })
    expect(body.error.message).toContain("529")
  })

  it("maps an upstream 529 on a stream to a non-2xx status before any byte", async () => {
    upstream.on("OVL-2", { kind: "error", status: 529, type: "overloaded_error", message: "Overloaded" })
    const error = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "OVL-2" }],
      stream: true
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.InternalServerError)
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(503)
  })

  it("maps an upstream 401 to 502 with a hint to log the CLI in", async () => {
    upstream.on("AUTH-1", { kind: "error", status: 401, type: "authentication_error", message: "invalid x-api-key" })
    const error = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "AUTH-1" }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    const apiError = error as InstanceType<typeof OpenAI.APIError>
    expect(apiError.status).toBe(502)
    expect(apiError.type).toBe("upstream_authentication_error")
    expect(apiError.message).toContain("claude /login")
  })

  it("maps an upstream 429 to 429 rate_limit_error", async () => {
    upstream.on("RL-1", { kind: "error", status: 429, type: "rate_limit_error", message: "slow down" })
    const error = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "RL-1" }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.RateLimitError)
  })
})

describe("process lifecycle", () => {
  /** The ready standby of the `sonnet` signature (no system prompt): the next such request gets it. */
  const theStandby = async () => {
    const isSonnet = (args: string) => args.includes("--model sonnet") && !args.includes("--system-prompt")
    let pid: number | undefined
    await waitForHealth(gateway, (h) => {
      const sonnets = cliProcesses().filter((p) => isSonnet(p.args))
      pid = sonnets.length === 1 ? sonnets[0]!.pid : undefined
      return h.pool.leased === 0 && pid !== undefined &&
        h.pool.signatures.some((s) => s.model === "sonnet" && s.standby === 1 && s.spawning === 0)
    })
    return pid!
  }

  it("kills the request's CLI within a second when the client disconnects mid-stream", async () => {
    upstream.on("ABORT-1", {
      kind: "message",
      blocks: [{ type: "text", text: Array.from({ length: 100 }, (_, i) => `word${i} `) }],
      interDeltaMs: 100
    })
    const pid = await theStandby()
    const controller = new AbortController()
    const stream = await client.chat.completions.create(
      { model: "sonnet", messages: [{ role: "user", content: "ABORT-1" }], stream: true },
      { signal: controller.signal }
    )
    let received = 0
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) received++
        if (received === 2) {
          expect(cliChildren()).toContain(pid)
          controller.abort()
        }
      }
    } catch {
      // the abort surfaces as an error in the iterator
    }
    // Frames that arrived in the same read as the second one are still handed out; the answer is not.
    expect(received).toBeGreaterThanOrEqual(2)
    expect(received).toBeLessThan(100)
    const started = Date.now()
    while (cliChildren().includes(pid) && Date.now() - started < 1000) await new Promise((r) => setTimeout(r, 20))
    expect(cliChildren()).not.toContain(pid)
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it("ends the request's CLI when the response is complete (conversation.max_live = 0)", async () => {
    hello("DONE-1")
    const pid = await theStandby()
    await client.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "DONE-1" }] })
    const started = Date.now()
    while (cliChildren().includes(pid) && Date.now() - started < 1000) await new Promise((r) => setTimeout(r, 20))
    expect(cliChildren()).not.toContain(pid)
  })
})

describe("models", () => {
  it("lists aliases and the full ids the CLI reports", async () => {
    const ids = []
    for await (const model of client.models.list()) ids.push(model.id)
    expect(ids).toEqual(expect.arrayContaining(["opus", "sonnet", "haiku", "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"]))
    const model = await client.models.retrieve("sonnet")
    expect(model).toMatchObject({ id: "sonnet", object: "model", owned_by: "anthropic" })
    expect(typeof model.created).toBe("number")
  })

  it("accepts and lists a configured alias, running the model it maps to", async () => {
    hello("ALIAS-1")
    const completion = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "ALIAS-1" }]
    })
    expect(completion.model).toBe("claude-haiku-5-5")
    expect(upstream.requestsFor("ALIAS-1")[0]!.body).toMatchObject({ model: "claude-haiku-5-5" })
    expect((await client.models.retrieve("gpt-4o-mini")).id).toBe("gpt-4o-mini")
  })

  it("answers an unknown model id with 404", async () => {
    const error = await client.models.retrieve("no-such-model").catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.NotFoundError)
  })

  it("reports the CLI version on /health", async () => {
    const response = await fetch(`${gateway.url}/health`)
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ status: "ok", cli: { version: "2.1.331" } })
  })
})
