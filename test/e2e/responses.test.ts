import OpenAI from "openai"
import type { FunctionTool, ResponseInputItem, ResponseStreamEvent } from "openai/resources/responses/responses"
import { zodTextFormat } from "openai/helpers/zod"
import { z } from "zod"
import { afterAll, describe, expect, it } from "vitest"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { cliChildren, type Gateway, startGateway } from "../support/gateway.js"
import { messagesOf, textOf, type Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// The OpenAI Responses dialect (POST /v1/responses and its stored objects) with real clients:
// the openai SDK here; the Agents SDK and Codex CLI below. Real CLI, scripted upstream.

let upstream: Upstream
let gateway: Gateway
let client: OpenAI

const execFileAsync = promisify(execFile)
/** The pinned Codex CLI (devDependency @openai/codex). */
const CODEX_BIN = fileURLToPath(new URL("../../node_modules/.bin/codex", import.meta.url))

useGateway({}, (started) => ({ upstream, gateway, client } = started))

const sessionOf = (marker: string) => upstream.requestsFor(marker).map((r) => r.headers["x-claude-code-session-id"])

/** The last user message upstream got for `marker`, as text (tool results included). */
const lastUserText = (marker: string) => {
  const request = upstream.requestsFor(marker).at(-1)!
  const content = messagesOf(request.body).filter((m) => m.role === "user").at(-1)?.content
  return JSON.stringify(content)
}

const weather: FunctionTool = {
  type: "function",
  name: "get_weather",
  description: "Current weather for a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
  strict: true
}

const post = (body: unknown) =>
  fetch(`${gateway.baseURL}/responses`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })

describe("responses.create", () => {
  it("answers a string input with a completed response, stored for GET, input_items and DELETE", async () => {
    upstream.on("RESP-1", { kind: "message", blocks: [{ type: "text", text: ["Hello ", "there."] }], usage: { input_tokens: 20, output_tokens: 3 } })
    const response = await client.responses.create({
      model: "sonnet",
      instructions: "Be brief.",
      input: "RESP-1 say hello",
      metadata: { ticket: "42" }
    })
    expect(response).toMatchObject({ object: "response", status: "completed", instructions: "Be brief.", metadata: { ticket: "42" }, error: null })
    expect(response.id).toMatch(/^resp_/)
    expect(response.output_text).toBe("Hello there.")
    expect(response.output).toEqual([
      expect.objectContaining({ type: "message", role: "assistant", status: "completed", content: [expect.objectContaining({ type: "output_text", text: "Hello there." })] })
    ])
    expect(response.usage).toMatchObject({ input_tokens: 20, output_tokens: 3, total_tokens: 23 })
    // The instructions are the CLI's system prompt.
    expect(JSON.stringify((upstream.requestsFor("RESP-1")[0]!.body as { system: unknown }).system)).toContain("Be brief.")

    const retrieved = await client.responses.retrieve(response.id)
    expect(retrieved.id).toBe(response.id)
    expect(retrieved.output_text).toBe("Hello there.")
    const items = await client.responses.inputItems.list(response.id)
    expect(items.data).toEqual([expect.objectContaining({ type: "message", role: "user", content: [{ type: "input_text", text: "RESP-1 say hello" }] })])

    await client.responses.delete(response.id)
    const gone = await client.responses.retrieve(response.id).catch((e: unknown) => e)
    expect(gone).toMatchObject({ status: 404, code: "response_not_found" })
  })

  it("leaves out tool types and include values it cannot serve, and says so", async () => {
    upstream.on("RESP-IGNORED", { kind: "message", blocks: [{ type: "text", text: "Fine." }] })
    const response = await client.responses.create({
      model: "sonnet",
      input: [{ role: "user", content: [{ type: "input_text", text: "RESP-IGNORED" }] }],
      tools: [{ type: "web_search" }, weather],
      include: ["reasoning.encrypted_content"]
    })
    expect(response.output_text).toBe("Fine.")
    expect((response as unknown as { ignored: unknown }).ignored).toEqual([
      { param: "tools[0]", reason: expect.stringContaining("web_search") },
      { param: "include[0]", reason: expect.stringContaining("reasoning.encrypted_content") }
    ])
    expect(response.tools).toEqual([expect.objectContaining({ type: "function", name: "get_weather" })])
    const offered = (upstream.requestsFor("RESP-IGNORED")[0]!.body as { tools: Array<{ name: string }> }).tools.map((t) => t.name)
    expect(offered).toContain("mcp__client__get_weather")
  })

  it("rejects bad input with a 400 naming the Responses field", async () => {
    const badItem = await client.responses.create({
      model: "sonnet",
      // @ts-expect-error an item type that does not exist
      input: [{ type: "bogus_item" }]
    }).catch((e: unknown) => e)
    expect(badItem).toMatchObject({ status: 400, param: "input[0].type", code: "unsupported_input_item" })

    const badCall = await post({
      model: "sonnet",
      input: [{ type: "function_call_output", call_id: "call_nope", output: "x" }]
    })
    expect(badCall.status).toBe(400)
    expect(await badCall.json()).toMatchObject({ error: { type: "invalid_request_error", param: "input[0].call_id" } })

    const badTool = await post({ model: "sonnet", input: "hi", tools: [{ type: "function", name: "bad name!" }] })
    expect(await badTool.json()).toMatchObject({ error: { param: "tools[0].name" } })

    const missing = await post({ model: "sonnet" })
    expect(missing.status).toBe(400)
    expect(await missing.json()).toMatchObject({ error: { param: "input", code: "missing_required_parameter" } })

    const unknownPrevious = await client.responses.create({ model: "sonnet", input: "x", previous_response_id: "resp_nope" }).catch((e: unknown) => e)
    expect(unknownPrevious).toMatchObject({ status: 404, param: "previous_response_id" })
  })
})

describe("responses.stream", () => {
  it("streams the documented events in order, each with the next sequence_number", async () => {
    upstream.on("RESP-STREAM", {
      kind: "message",
      blocks: [{ type: "thinking", thinking: ["Let me ", "think."] }, { type: "text", text: ["one ", "two ", "three"] }]
    })
    const stream = client.responses.stream({ model: "sonnet", input: "RESP-STREAM", reasoning: { effort: "high", summary: "auto" } })
    const events: Array<ResponseStreamEvent> = []
    for await (const event of stream) events.push(event)
    const final = await stream.finalResponse()

    const types = events.map((e) => e.type)
    const distinct = types.filter((type, i) => type !== types[i - 1])
    expect(distinct).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.reasoning_summary_part.added",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed"
    ])
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i))
    expect(events.filter((e) => e.type === "response.output_text.delta").map((e) => "delta" in e ? e.delta : "")).toEqual(["one ", "two ", "three"])
    expect(final.output_text).toBe("one two three")
    expect(final.output[0]).toMatchObject({ type: "reasoning", summary: [{ type: "summary_text", text: "Let me think." }] })
    expect(final.status).toBe("completed")
    // reasoning.effort is the CLI's effort.
    expect(upstream.requestsFor("RESP-STREAM")[0]!.body).toMatchObject({ output_config: { effort: "high" } })
  })

  it("streams a function call's arguments and ends with the call", async () => {
    upstream.on("RESP-SCALL", {
      kind: "message",
      blocks: [{ type: "tool_use", name: "mcp__client__get_weather", input: { city: "Oslo" }, chunks: 3 }]
    })
    const stream = client.responses.stream({ model: "sonnet", input: "RESP-SCALL", tools: [weather] })
    const types: Array<string> = []
    for await (const event of stream) types.push(event.type)
    const final = await stream.finalResponse()
    expect(types.filter((type, i) => type !== types[i - 1])).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed"
    ])
    expect(final.output).toEqual([expect.objectContaining({ type: "function_call", name: "get_weather", status: "completed" })])
    const call = final.output[0]!
    if (call.type !== "function_call") throw new Error("expected a function call")
    expect(JSON.parse(call.arguments)).toEqual({ city: "Oslo" })
  })

  it("keeps the HTTP status of an upstream failure that comes before the first byte", async () => {
    upstream.on("RESP-FAIL", { kind: "error", status: 400, type: "invalid_request_error", message: "nope" })
    const response = await post({ model: "sonnet", input: "RESP-FAIL", stream: true })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ error: { type: "invalid_request_error" } })
  })
})

describe("max_output_tokens", () => {
  it("reaches upstream as max_tokens; a cut answer is an incomplete response (streamed: response.incomplete)", async () => {
    upstream.on("RESP-MAXTOK", { kind: "message", blocks: [{ type: "text", text: ["cut ", "short"] }], stopReason: "max_tokens" })
    const response = await client.responses.create({ model: "sonnet", input: "RESP-MAXTOK", max_output_tokens: 77 })
    expect(upstream.requestsFor("RESP-MAXTOK")[0]!.body).toMatchObject({ max_tokens: 77 })
    expect(response).toMatchObject({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" }, max_output_tokens: 77 })
    expect(response.output_text).toBe("cut short")

    const stream = client.responses.stream({ model: "sonnet", input: "RESP-MAXTOK", max_output_tokens: 77 })
    const types: Array<string> = []
    for await (const event of stream) types.push(event.type)
    expect(types.at(-1)).toBe("response.incomplete")
    expect(types.at(-2)).toBe("response.output_item.done")
    const final = await stream.finalResponse()
    expect(final.status).toBe("incomplete")
    expect(final.output[0]).toMatchObject({ type: "message", status: "incomplete" })
  })
})

describe("previous_response_id", () => {
  it("continues the same CLI session natively, not with a replayed transcript", async () => {
    upstream.on("RESP-PREV-1", { kind: "message", blocks: [{ type: "text", text: "Noted: 7." }] })
    upstream.on("RESP-PREV-2", { kind: "message", blocks: [{ type: "text", text: "It was 7." }] })
    const first = await client.responses.create({ model: "sonnet", input: "RESP-PREV-1 remember 7" })
    const second = await client.responses.create({ model: "sonnet", input: "RESP-PREV-2 what was it?", previous_response_id: first.id })
    expect(second.output_text).toBe("It was 7.")
    expect(second.previous_response_id).toBe(first.id)
    expect(sessionOf("RESP-PREV-2")).toEqual(sessionOf("RESP-PREV-1"))
    // Upstream saw the earlier turn as real messages, and the new one without a history header.
    const body = upstream.requestsFor("RESP-PREV-2")[0]!.body
    expect(messagesOf(body).map((m) => textOf(m.content))).toEqual(
      expect.arrayContaining([expect.stringContaining("RESP-PREV-1"), "Noted: 7.", expect.stringContaining("RESP-PREV-2")])
    )
    expect(JSON.stringify(body)).not.toContain("conversation_history")
  })

  it("continues with store: false (nothing to GET, but the continuation works)", async () => {
    upstream.on("RESP-NOSTORE-1", { kind: "message", blocks: [{ type: "text", text: "First." }] })
    upstream.on("RESP-NOSTORE-2", { kind: "message", blocks: [{ type: "text", text: "Second." }] })
    const first = await client.responses.create({ model: "sonnet", input: "RESP-NOSTORE-1", store: false })
    expect(await client.responses.retrieve(first.id).catch((e: unknown) => e)).toMatchObject({ status: 404 })
    const second = await client.responses.create({ model: "sonnet", input: "RESP-NOSTORE-2", previous_response_id: first.id, store: false })
    expect(second.output_text).toBe("Second.")
    expect(sessionOf("RESP-NOSTORE-2")).toEqual(sessionOf("RESP-NOSTORE-1"))
  })

  it("a function call round trip: the output answers the parked call in the same CLI turn", async () => {
    upstream.on("RESP-TOOL", { kind: "message", blocks: [{ type: "text", text: "Checking." }, { type: "tool_use", name: "mcp__client__get_weather", input: { city: "Paris" } }] })
    upstream.on("RESP-WEATHER", { kind: "message", blocks: [{ type: "text", text: "Sunny in Paris." }] })
    const first = await client.responses.create({ model: "sonnet", input: "RESP-TOOL weather in Paris?", tools: [weather] })
    const call = first.output.find((item) => item.type === "function_call")
    if (call?.type !== "function_call") throw new Error("expected a function call")
    expect(call.name).toBe("get_weather")
    expect(JSON.parse(call.arguments)).toEqual({ city: "Paris" })
    expect(first.output_text).toBe("Checking.")

    const second = await client.responses.create({
      model: "sonnet",
      previous_response_id: first.id,
      tools: [weather],
      input: [{ type: "function_call_output", call_id: call.call_id, output: "RESP-WEATHER: sunny, 21 C" }]
    })
    expect(second.output_text).toBe("Sunny in Paris.")
    // Upstream got the real tool_result for the real tool_use id, in the same session.
    expect(lastUserText("RESP-WEATHER")).toContain(call.call_id)
    expect(lastUserText("RESP-WEATHER")).toContain("sunny, 21 C")
    expect(sessionOf("RESP-WEATHER")).toEqual(sessionOf("RESP-TOOL"))
  })
})

describe("a stateless client re-sending its history", () => {
  it("is continued in the same CLI session (found by its history), not told a transcript", async () => {
    upstream.on("RESP-SL-1", { kind: "message", blocks: [{ type: "text", text: "Stateless one." }] })
    upstream.on("RESP-SL-2", { kind: "message", blocks: [{ type: "text", text: "Stateless two." }] })
    const input: Array<ResponseInputItem> = [{ role: "user", content: "RESP-SL-1 first" }]
    const first = await client.responses.create({ model: "sonnet", instructions: "Be brief.", input, store: false })
    input.push(...(first.output as Array<ResponseInputItem>), { role: "user", content: "RESP-SL-2 second" })
    const second = await client.responses.create({ model: "sonnet", instructions: "Be brief.", input, store: false })
    expect(second.output_text).toBe("Stateless two.")
    expect(sessionOf("RESP-SL-2")).toEqual(sessionOf("RESP-SL-1"))
    expect(lastUserText("RESP-SL-2")).not.toContain("conversation_history")
  })
})

describe("previous_response_id from an earlier response (a branch)", () => {
  it("starts a new conversation told the messages up to that response", async () => {
    // Registered first: the branch's last user message also holds the root's text (its transcript).
    upstream.on("RESP-BR-3", { kind: "message", blocks: [{ type: "text", text: "Side line." }] })
    upstream.on("RESP-BR-1", { kind: "message", blocks: [{ type: "text", text: "Root answer." }] })
    upstream.on("RESP-BR-2", { kind: "message", blocks: [{ type: "text", text: "Main line." }] })
    const root = await client.responses.create({ model: "sonnet", input: "RESP-BR-1 root" })
    await client.responses.create({ model: "sonnet", input: "RESP-BR-2 main", previous_response_id: root.id })
    const side = await client.responses.create({ model: "sonnet", input: "RESP-BR-3 side", previous_response_id: root.id })
    expect(side.output_text).toBe("Side line.")
    const told = JSON.stringify(upstream.requestsFor("RESP-BR-3")[0]!.body)
    expect(told).toContain("conversation_history")
    expect(told).toContain("Root answer.")
    expect(told).not.toContain("Main line.")
    const conversationOf = (response: unknown) => (response as { conversation_id: string }).conversation_id
    expect(conversationOf(side)).not.toBe(conversationOf(root))
  })
})

describe("input images", () => {
  const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="

  it("sends an input_image data URL to the model as an image block", async () => {
    upstream.on("RESP-IMG", { kind: "message", blocks: [{ type: "text", text: "A pixel." }] })
    const response = await client.responses.create({
      model: "sonnet",
      input: [{ role: "user", content: [{ type: "input_text", text: "RESP-IMG what is it?" }, { type: "input_image", image_url: `data:image/png;base64,${PNG}`, detail: "auto" }] }]
    })
    expect(response.output_text).toBe("A pixel.")
    expect(lastUserText("RESP-IMG")).toContain(PNG)
  })

  it("names the Responses field of an image it refuses", async () => {
    const byFile = await client.responses.create({
      model: "sonnet",
      input: [{ role: "user", content: [{ type: "input_text", text: "x" }, { type: "input_image", file_id: "file-1", detail: "auto" }] }]
    }).catch((e: unknown) => e)
    expect(byFile).toMatchObject({ status: 400, param: "input[0].content[1].file_id" })
    const byPath = await client.responses.create({
      model: "sonnet",
      input: [{ role: "user", content: [{ type: "input_text", text: "x" }, { type: "input_image", image_url: "/etc/hostname", detail: "auto" }] }]
    }).catch((e: unknown) => e)
    expect(byPath).toMatchObject({ status: 400, code: "image_path_not_allowed", param: "input[0].content[1].image_url" })
  })
})

describe("text.format", () => {
  it("json_schema answers with the CLI's validated structured output, parsed by responses.parse", async () => {
    upstream.on("RESP-JSON", { kind: "message", blocks: [{ type: "tool_use", name: "StructuredOutput", input: { city: "Paris", days: 3 } }] })
    const Trip = z.object({ city: z.string(), days: z.number().int() })
    const response = await client.responses.parse({ model: "sonnet", input: "RESP-JSON plan a trip", text: { format: zodTextFormat(Trip, "trip") } })
    expect(response.output_parsed).toEqual({ city: "Paris", days: 3 })
    const tools = (upstream.requestsFor("RESP-JSON")[0]!.body as { tools: Array<{ name: string; input_schema: unknown }> }).tools
    expect(tools.find((t) => t.name === "StructuredOutput")?.input_schema).toMatchObject({ properties: { city: { type: "string" } } })
  })
})

describe("OpenAI Agents SDK (its default Responses model)", () => {
  const agentWithWeather = async (seen: Array<string>) => {
    const { Agent, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled, tool } = await import("@openai/agents")
    setTracingDisabled(true)
    setOpenAIAPI("responses")
    setDefaultOpenAIClient(client)
    const getWeather = tool({
      name: "get_weather",
      description: "Current weather for a city",
      parameters: z.object({ city: z.string() }),
      execute: async ({ city }) => {
        seen.push(city)
        return `${city.toUpperCase()}-WEATHER: sunny in ${city}`
      }
    })
    return new Agent({ name: "Forecaster", instructions: "Answer with the weather tool.", model: "sonnet", tools: [getWeather] })
  }

  it("runs an agent whose tool the model calls, and the gateway continues the parked turn", async () => {
    const { run } = await import("@openai/agents")
    upstream.on("AGENT-TOOL", { kind: "message", blocks: [{ type: "tool_use", name: "mcp__client__get_weather", input: { city: "Lyon" } }] })
    upstream.on("LYON-WEATHER", { kind: "message", blocks: [{ type: "text", text: "Lyon is sunny." }] })
    const seen: Array<string> = []
    const result = await run(await agentWithWeather(seen), "AGENT-TOOL weather in Lyon?")
    expect(seen).toEqual(["Lyon"])
    expect(result.finalOutput).toBe("Lyon is sunny.")
    expect(lastUserText("LYON-WEATHER")).toContain("LYON-WEATHER: sunny in Lyon")
    expect(new Set([...sessionOf("AGENT-TOOL"), ...sessionOf("LYON-WEATHER")]).size).toBe(1)
    expect(JSON.stringify((upstream.requestsFor("AGENT-TOOL")[0]!.body as { system: unknown }).system)).toContain("Answer with the weather tool.")
  })

  it("streams an agent run with a tool call", async () => {
    const { run } = await import("@openai/agents")
    upstream.on("AGENT-STREAM", { kind: "message", blocks: [{ type: "text", text: "Looking. " }, { type: "tool_use", name: "mcp__client__get_weather", input: { city: "Nice" }, chunks: 3 }] })
    upstream.on("NICE-WEATHER", { kind: "message", blocks: [{ type: "text", text: ["Nice ", "is sunny."] }] })
    const seen: Array<string> = []
    const result = await run(await agentWithWeather(seen), "AGENT-STREAM weather in Nice?", { stream: true })
    let text = ""
    for await (const delta of result.toTextStream()) text += delta
    await result.completed
    expect(seen).toEqual(["Nice"])
    expect(result.finalOutput).toBe("Nice is sunny.")
    expect(text).toContain("Nice is sunny.")
  })
})

describe("Codex CLI (custom provider, wire_api = \"responses\")", () => {
  /** A fresh CODEX_HOME whose only provider is the gateway; any other network goes to a dead proxy. */
  const codexHome = () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "codex-home-"))
    fs.writeFileSync(
      path.join(home, "config.toml"),
      [
        `model = "sonnet"`,
        `model_provider = "gateway"`,
        `[model_providers.gateway]`,
        `name = "claude-code-api"`,
        `base_url = "${gateway.baseURL}"`,
        `wire_api = "responses"`,
        `request_max_retries = 0`,
        `stream_max_retries = 0`
      ].join("\n")
    )
    return { home, work: fs.mkdtempSync(path.join(os.tmpdir(), "codex-work-")) }
  }

  /** `codex exec …` in that home; its exit code and output. */
  const codex = async (where: { readonly home: string; readonly work: string }, args: ReadonlyArray<string>) => {
    const proxy = "http://127.0.0.1:9"
    try {
      const running = execFileAsync(
        CODEX_BIN,
        ["exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "--cd", where.work, ...args],
        {
          env: { PATH: process.env.PATH, HOME: where.home, CODEX_HOME: where.home, HTTPS_PROXY: proxy, HTTP_PROXY: proxy, ALL_PROXY: proxy, NO_PROXY: "127.0.0.1,localhost" },
          timeout: 100_000
        }
      )
      // Codex reads a piped stdin to its end (appended to the prompt): there is none.
      running.child.stdin?.end()
      const result = await running
      return { ...result, code: 0 }
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string; code?: number }
      return { stdout: failed.stdout ?? "", stderr: failed.stderr ?? "", code: failed.code ?? 1 }
    }
  }

  const codexExec = async (prompt: string) => {
    const where = codexHome()
    try {
      return await codex(where, [prompt])
    } finally {
      fs.rmSync(where.home, { recursive: true, force: true })
      fs.rmSync(where.work, { recursive: true, force: true })
    }
  }

  it("answers a prompt", async () => {
    upstream.on("CODEX-HELLO", { kind: "message", blocks: [{ type: "text", text: "Hello from the gateway." }] })
    const result = await codexExec("CODEX-HELLO say hello")
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toContain("Hello from the gateway.")
  }, 120_000)

  it("runs its own shell function for the model, and the model answers from its output", async () => {
    upstream.on("CODEX-SHELL", {
      kind: "message",
      blocks: [{ type: "text", text: "Running it." }, { type: "tool_use", name: "mcp__client__exec_command", input: { cmd: "echo CODEX-OUT-$((6*7))" } }]
    })
    upstream.on("CODEX-OUT-42", { kind: "message", blocks: [{ type: "text", text: "The command printed forty-two." }] })
    const result = await codexExec("CODEX-SHELL run the command")
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toContain("The command printed forty-two.")
    // Codex's shell really ran ($((6*7)) evaluated) and its output went back as the tool_result of the same CLI turn.
    expect(lastUserText("CODEX-OUT-42")).toContain("tool_result")
    expect(new Set([...sessionOf("CODEX-SHELL"), ...sessionOf("CODEX-OUT-42")]).size).toBe(1)
  }, 120_000)

  it("exec resume re-sends the whole history, and the gateway continues the same CLI session", async () => {
    upstream.on("CODEX-R1", { kind: "message", blocks: [{ type: "text", text: "First answer." }] })
    upstream.on("CODEX-R2", { kind: "message", blocks: [{ type: "text", text: "Second answer." }] })
    const where = codexHome()
    try {
      const first = await codex(where, ["CODEX-R1 first"])
      expect(first.code, first.stderr).toBe(0)
      const second = await codex(where, ["resume", "--last", "CODEX-R2 second"])
      expect(second.code, second.stderr).toBe(0)
      expect(second.stdout).toContain("Second answer.")
    } finally {
      fs.rmSync(where.home, { recursive: true, force: true })
      fs.rmSync(where.work, { recursive: true, force: true })
    }
    // Found by its history: the second turn went to the first one's CLI session, as a real turn.
    expect(sessionOf("CODEX-R2")).toEqual(sessionOf("CODEX-R1"))
    expect(lastUserText("CODEX-R2")).not.toContain("conversation_history")
  }, 150_000)
})

describe("conversation", () => {
  it("names a gateway conversation: its turns go on in one CLI session", async () => {
    upstream.on("RESP-CONV-1", { kind: "message", blocks: [{ type: "text", text: "One." }] })
    upstream.on("RESP-CONV-2", { kind: "message", blocks: [{ type: "text", text: "Two." }] })
    const created = await (await fetch(`${gateway.baseURL}/conversations`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).json() as { id: string }
    const first = await client.responses.create({ model: "sonnet", input: "RESP-CONV-1", conversation: created.id })
    const second = await client.responses.create({ model: "sonnet", input: "RESP-CONV-2", conversation: { id: created.id } })
    expect(second.output_text).toBe("Two.")
    expect([first, second].map((r) => (r as unknown as { conversation_id: string }).conversation_id)).toEqual([created.id, created.id])
    expect(sessionOf("RESP-CONV-2")).toEqual(sessionOf("RESP-CONV-1"))
    const both = await post({ model: "sonnet", input: "x", conversation: created.id, previous_response_id: first.id })
    expect(both.status).toBe(400)
    expect(await both.json()).toMatchObject({ error: { param: "conversation" } })
  })

  it("the endpoints are in /openapi.json", async () => {
    const paths = Object.keys(((await (await fetch(`${gateway.url}/openapi.json`)).json()) as { paths: Record<string, unknown> }).paths)
    expect(paths).toEqual(expect.arrayContaining(["/v1/responses", "/v1/responses/{id}", "/v1/responses/{id}/input_items"]))
  })
})

describe("after a restart", () => {
  it("previous_response_id still continues the same CLI session (resumed), and the stored response is still there", async () => {
    upstream.on("RESP-RESTART-1", { kind: "message", blocks: [{ type: "text", text: "Before the restart." }] })
    upstream.on("RESP-RESTART-2", { kind: "message", blocks: [{ type: "text", text: "After the restart." }] })
    const first = await startGateway({ upstreamUrl: upstream.url, config: { pool: { enabled: false } } })
    const before = await new OpenAI({ baseURL: first.baseURL, apiKey: "unused", maxRetries: 0 }).responses.create({ model: "sonnet", input: "RESP-RESTART-1" })
    await first.close({ keepHome: true })
    const second = await startGateway({ upstreamUrl: upstream.url, home: first.home, config: { pool: { enabled: false } } })
    try {
      const secondClient = new OpenAI({ baseURL: second.baseURL, apiKey: "unused", maxRetries: 0 })
      expect((await secondClient.responses.retrieve(before.id)).output_text).toBe("Before the restart.")
      const after = await secondClient.responses.create({ model: "sonnet", input: "RESP-RESTART-2", previous_response_id: before.id })
      expect(after.output_text).toBe("After the restart.")
      expect(sessionOf("RESP-RESTART-2")).toEqual(sessionOf("RESP-RESTART-1"))
      // The resumed session's real turns (the CLI adds <system-reminder> blocks of its own to user messages).
      const turns = messagesOf(upstream.requestsFor("RESP-RESTART-2")[0]!.body)
        .filter((m) => m.role === "user" || m.role === "assistant")
        .map((m) => `${m.role}: ${textOf(m.content).replace(/<system-reminder>[\s\S]*?<\/system-reminder>/g, "").trim()}`)
      expect(turns).toEqual(["user: RESP-RESTART-1", "assistant: Before the restart.", "user: RESP-RESTART-2"])
    } finally {
      await second.close()
    }
  }, 90_000)
})

describe("with API keys", () => {
  let keyed: Gateway | undefined
  afterAll(async () => {
    await keyed?.close()
  })

  it("a response belongs to the key that created it", async () => {
    keyed = await startGateway({ upstreamUrl: upstream.url, config: { server: { api_keys: ["key-one", "key-two"] }, pool: { enabled: false } } })
    upstream.on("RESP-KEY", { kind: "message", blocks: [{ type: "text", text: "Mine." }] })
    const one = new OpenAI({ baseURL: keyed.baseURL, apiKey: "key-one", maxRetries: 0 })
    const two = new OpenAI({ baseURL: keyed.baseURL, apiKey: "key-two", maxRetries: 0 })
    const response = await one.responses.create({ model: "sonnet", input: "RESP-KEY" })
    expect((await one.responses.retrieve(response.id)).output_text).toBe("Mine.")
    expect(await two.responses.retrieve(response.id).catch((e: unknown) => e)).toMatchObject({ status: 404 })
    expect(await two.responses.inputItems.list(response.id).catch((e: unknown) => e)).toMatchObject({ status: 404 })
    expect(await two.responses.delete(response.id).catch((e: unknown) => e)).toMatchObject({ status: 404 })
    expect(await two.responses.create({ model: "sonnet", input: "x", previous_response_id: response.id }).catch((e: unknown) => e))
      .toMatchObject({ status: 404, param: "previous_response_id" })
  }, 60_000)
})

/** The CLI children of one gateway (by the HOME it gives them), once they are gone or after 3 s. */
const cliChildrenOf = async (of: Gateway) => {
  const mine = () =>
    cliChildren().filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(`HOME=${of.home}`)
      } catch {
        return false // already gone
      }
    })
  const deadline = Date.now() + 3000
  while (mine().length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  return mine()
}

describe("a failure after the first byte", () => {
  let slow: Gateway | undefined
  afterAll(async () => {
    await slow?.close()
  })

  it("ends the stream with error and response.failed, and the CLI is gone", async () => {
    // The deadline also covers the CLI's start, which is slow on a loaded machine: headroom for the first delta.
    slow = await startGateway({ upstreamUrl: upstream.url, config: { claude: { timeout_seconds: 12 }, pool: { enabled: false } } })
    upstream.on("RESP-STALL", { kind: "message", blocks: [{ type: "text", text: ["first ", "never"] }], stallAfterDeltas: 1 })
    const response = await fetch(`${slow.baseURL}/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "sonnet", input: "RESP-STALL", stream: true })
    })
    expect(response.status).toBe(200)
    const events = (await response.text()).split("\n\n").flatMap((frame) => {
      const data = frame.split("\n").find((line) => line.startsWith("data: "))
      return data === undefined ? [] : [JSON.parse(data.slice(6)) as { type: string; sequence_number: number; delta?: string; response?: { status: string; error: { code: string } } }]
    })
    expect(events.find((e) => e.type === "response.output_text.delta")?.delta).toBe("first ")
    expect(events.slice(-2).map((e) => e.type)).toEqual(["error", "response.failed"])
    expect(events.at(-1)?.response).toMatchObject({ status: "failed", error: { code: "timeout" } })
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i))
    expect(await cliChildrenOf(slow)).toEqual([])
  }, 60_000)
})
