import OpenAI from "openai"
import { zodResponseFormat } from "openai/helpers/zod"
import { z } from "zod"
import { describe, expect, it } from "vitest"
import { type Gateway, type LogLine, postChat } from "../support/gateway.js"
import type { Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// Request parameters that change the answer: max_tokens, stop, reasoning_effort (real CLI).

let upstream: Upstream
let gateway: Gateway
let client: OpenAI
const logs: Array<LogLine> = []

useGateway(
  {
    config: { server: { sse_keepalive_seconds: 1 }, claude: { max_retries: 1 }, log: { level: "info" } },
    onLog: (line) => logs.push(line)
  },
  (started) => ({ upstream, gateway, client } = started)
)

const bodyOf = (marker: string) => upstream.requestsFor(marker)[0]?.body as Record<string, unknown> | undefined

describe("max_tokens", () => {
  it("reaches upstream as max_tokens and maps a max_tokens stop to finish_reason length", async () => {
    upstream.on("MAXTOK-1", {
      kind: "message",
      blocks: [{ type: "text", text: ["cut ", "short"] }],
      stopReason: "max_tokens"
    })
    const completion = await client.chat.completions.create({
      model: "sonnet",
      max_tokens: 77,
      messages: [{ role: "user", content: "MAXTOK-1" }]
    })
    expect(bodyOf("MAXTOK-1")).toMatchObject({ max_tokens: 77 })
    expect(completion.choices[0]!.finish_reason).toBe("length")
    expect(completion.choices[0]!.message.content).toContain("cut short")
  })

  it("prefers max_completion_tokens", async () => {
    upstream.on("MAXTOK-2", { kind: "message", blocks: [{ type: "text", text: "ok" }] })
    await client.chat.completions.create({
      model: "sonnet",
      max_tokens: 50,
      max_completion_tokens: 60,
      messages: [{ role: "user", content: "MAXTOK-2" }]
    })
    expect(bodyOf("MAXTOK-2")).toMatchObject({ max_tokens: 60 })
  })

  it("rejects a non-positive value with 400", async () => {
    const error = await client.chat.completions.create({
      model: "sonnet",
      max_tokens: 0,
      messages: [{ role: "user", content: "x" }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.BadRequestError)
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("max_tokens")
  })
})

describe("stop", () => {
  const script = (marker: string) =>
    upstream.on(marker, {
      kind: "message",
      blocks: [{ type: "text", text: ["Hello wor", "ld EN", "D and more ", "text"] }],
      interDeltaMs: 20
    })

  it("cuts a non-stream answer before a sequence that spans deltas", async () => {
    script("STOP-1")
    const completion = await client.chat.completions.create({
      model: "sonnet",
      stop: ["NEVER", "END"],
      messages: [{ role: "user", content: "STOP-1" }]
    })
    expect(completion.choices[0]!.message.content).toBe("Hello world ")
    expect(completion.choices[0]!.finish_reason).toBe("stop")
  })

  it("cuts a stream the same way and ends it with finish_reason stop and [DONE]", async () => {
    script("STOP-2")
    const stream = await client.chat.completions.create({
      model: "sonnet",
      stop: "END",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "STOP-2" }]
    })
    let text = ""
    let finish: string | null = null
    let usage: OpenAI.CompletionUsage | null | undefined
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ""
      finish = chunk.choices[0]?.finish_reason ?? finish
      usage = chunk.usage ?? usage
    }
    expect(text).toBe("Hello world ")
    expect(finish).toBe("stop")
    expect(usage?.prompt_tokens).toBeGreaterThan(0)
  })

  it("rejects more than four sequences with 400", async () => {
    const error = await client.chat.completions.create({
      model: "sonnet",
      stop: ["a", "b", "c", "d", "e"],
      messages: [{ role: "user", content: "x" }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.BadRequestError)
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("stop")
  })
})

describe("reasoning_effort", () => {
  it("reaches upstream as the CLI's effort", async () => {
    upstream.on("EFFORT-1", { kind: "message", blocks: [{ type: "text", text: "ok" }] })
    await client.chat.completions.create({
      model: "sonnet",
      reasoning_effort: "low",
      messages: [{ role: "user", content: "EFFORT-1" }]
    })
    expect(bodyOf("EFFORT-1")).toMatchObject({ output_config: { effort: "low" } })
  })
})

describe("SSE keep-alive", () => {
  it("sends comments during a long silence, which clients ignore", async () => {
    upstream.on("KEEP-1", { kind: "message", blocks: [{ type: "text", text: ["before ", "after"] }], interDeltaMs: 2500 })
    const response = await postChat(gateway, { model: "sonnet", stream: true, messages: [{ role: "user", content: "KEEP-1" }] })
    const body = await response.text()
    expect(body).toContain(": keep-alive\n\n")
    expect(body.endsWith("data: [DONE]\n\n")).toBe(true)
    const stream = await client.chat.completions.create({
      model: "sonnet",
      stream: true,
      messages: [{ role: "user", content: "KEEP-1 again" }]
    })
    let text = ""
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ""
    expect(text).toBe("before after")
  })
})

describe("response_format", () => {
  it("answers json_schema with the CLI's validated structured output as the content", async () => {
    upstream.on("JSON-1", {
      kind: "message",
      blocks: [{ type: "text", text: "Here you go." }, { type: "tool_use", name: "StructuredOutput", input: { name: "Ada", age: 36 } }]
    })
    const schema = {
      type: "object",
      properties: { name: { type: "string" }, age: { type: "integer" } },
      required: ["name", "age"],
      additionalProperties: false
    }
    const completion = await client.chat.completions.create({
      model: "sonnet",
      response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } },
      messages: [{ role: "user", content: "JSON-1 who?" }]
    })
    expect(JSON.parse(completion.choices[0]!.message.content!)).toEqual({ name: "Ada", age: 36 })
    expect(completion.choices[0]!.finish_reason).toBe("stop")
    const tools = (upstream.requestsFor("JSON-1")[0]!.body as { tools: Array<{ name: string; input_schema: unknown }> }).tools
    expect(tools.find((t) => t.name === "StructuredOutput")?.input_schema).toMatchObject(schema)
  })

  it("is parsed by openai-node's parse() helper with a zod schema", async () => {
    upstream.on("JSON-ZOD", { kind: "message", blocks: [{ type: "tool_use", name: "StructuredOutput", input: { city: "Paris", days: 3 } }] })
    const Trip = z.object({ city: z.string(), days: z.number().int() })
    const completion = await client.chat.completions.parse({
      model: "sonnet",
      response_format: zodResponseFormat(Trip, "trip"),
      messages: [{ role: "user", content: "JSON-ZOD plan a trip" }]
    })
    expect(completion.choices[0]!.message.parsed).toEqual({ city: "Paris", days: 3 })
  })

  it("streams the structured output as content too", async () => {
    upstream.on("JSON-2", { kind: "message", blocks: [{ type: "tool_use", name: "StructuredOutput", input: { ok: true } }] })
    const stream = await client.chat.completions.create({
      model: "sonnet",
      stream: true,
      response_format: { type: "json_object" },
      messages: [{ role: "user", content: "JSON-2" }]
    })
    let text = ""
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ""
    expect(JSON.parse(text)).toEqual({ ok: true })
  })

  it("answers an error, never unvalidated JSON, when the model gives no structured output", async () => {
    upstream.on("JSON-3", { kind: "message", blocks: [{ type: "text", text: "{\"not\": \"validated\"}" }] })
    const error = await client.chat.completions.create({
      model: "sonnet",
      response_format: { type: "json_object" },
      messages: [{ role: "user", content: "JSON-3" }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe("structured_output_missing")
  })
})

describe("n", () => {
  it("runs n independent turns, one choice each, with summed usage", async () => {
    upstream.on("CHOICES-A", { kind: "message", blocks: [{ type: "text", text: ["same ", "answer"] }], usage: { input_tokens: 10, output_tokens: 3 } })
    const completion = await client.chat.completions.create({
      model: "sonnet",
      n: 2,
      messages: [{ role: "user", content: "CHOICES-A" }]
    })
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1])
    expect(completion.choices.map((c) => c.message.content)).toEqual(["same answer", "same answer"])
    expect(completion.usage).toMatchObject({ prompt_tokens: 20, completion_tokens: 6 })
    const sessions = upstream.requestsFor("CHOICES-A").map((r) => r.headers["x-claude-code-session-id"])
    expect(new Set(sessions).size).toBe(2)
  })

  it("streams n choices, each assembled by openai-node's stream helper", async () => {
    upstream.on("CHOICES-B", { kind: "message", blocks: [{ type: "text", text: ["x", "y"] }], interDeltaMs: 20 })
    const final = await client.chat.completions.stream({
      model: "sonnet",
      n: 3,
      messages: [{ role: "user", content: "CHOICES-B" }]
    }).finalChatCompletion()
    expect(final.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual([
      [0, "xy", "stop"],
      [1, "xy", "stop"],
      [2, "xy", "stop"]
    ])
  })

  it("refuses n above claude.max_choices with 400", async () => {
    const error = await client.chat.completions.create({
      model: "sonnet",
      n: 5,
      messages: [{ role: "user", content: "x" }]
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.BadRequestError)
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("n")
  })
})

describe("retries", () => {
  it("logs each upstream retry the CLI makes, with the request id", async () => {
    upstream.on(
      "RETRY-1",
      { kind: "error", status: 529, type: "overloaded_error", message: "Overloaded", headers: { "x-should-retry": "true", "retry-after": "0" } },
      { kind: "message", blocks: [{ type: "text", text: "after a retry" }] }
    )
    const response = await postChat(gateway, { model: "sonnet", messages: [{ role: "user", content: "RETRY-1" }] })
    expect(response.status).toBe(200)
    const requestId = response.headers.get("x-request-id")
    const retry = logs.find((line) => JSON.stringify(line.message).includes("retries an upstream call"))
    expect(retry?.annotations.request_id).toBe(requestId)
    expect(JSON.stringify(retry?.message)).toContain("529")
  })
})
