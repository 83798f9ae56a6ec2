import OpenAI from "openai"
import type { ChatCompletionMessageParam, ChatCompletionTool } from "openai/resources/chat/completions"
import { describe, expect, it } from "vitest"
import { mcpName } from "../../src/protocols/openai/tools.js"
import { type Gateway, health, openaiFor, postChat, startGateway, waitForHealth } from "../support/gateway.js"
import { messagesOf, textOf, type Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// Client function tools through the CLI's in-process MCP server (real CLI, scripted upstream
// emitting tool_use, official openai client).

const PARK_TTL = 1

let upstream: Upstream
let gateway: Gateway
let client: OpenAI

// A turn is still parked here (see "shutdown", TTL 300 s): closing the gateway must end it.
useGateway({}, (started) => ({ upstream, gateway, client } = started))

const weather: ChatCompletionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
  }
}
const time: ChatCompletionTool = {
  type: "function",
  function: { name: "get_time", parameters: { type: "object", properties: { tz: { type: "string" } } } }
}

const toolUse = (name: string, input: unknown, chunks = 1) => ({ type: "tool_use" as const, name: `mcp__client__${name}`, input, chunks })

/** Tool names and the session of each upstream request whose last user message has `marker`. */
const sessionOf = (marker: string) => upstream.requestsFor(marker).map((r) => r.headers["x-claude-code-session-id"])

/** The tool_result blocks of an upstream request's last user message. */
const toolResults = (body: unknown) => {
  const content = messagesOf(body).filter((m) => m.role === "user").at(-1)?.content
  return (Array.isArray(content) ? content : []).filter((b: { type?: string }) => b.type === "tool_result") as Array<{
    tool_use_id: string
    content: unknown
  }>
}

describe("a single call", () => {
  it("returns tool_calls, parks the turn, and continues it with the result", async () => {
    upstream.on("TOOL-ONE", { kind: "message", blocks: [{ type: "text", text: "Checking." }, toolUse("get_weather", { city: "Paris" })] })
    upstream.on("WEATHER-ONE", { kind: "message", blocks: [{ type: "text", text: "Sunny in Paris." }] })
    const messages: Array<ChatCompletionMessageParam> = [{ role: "user", content: "TOOL-ONE: weather in Paris?" }]
    const first = await client.chat.completions.create({ model: "sonnet", messages, tools: [weather] })
    const choice = first.choices[0]!
    expect(choice.finish_reason).toBe("tool_calls")
    expect(choice.message.content).toBe("Checking.")
    const [call] = choice.message.tool_calls ?? []
    expect(call).toMatchObject({ type: "function", function: { name: "get_weather" } })
    if (call?.type !== "function") throw new Error("expected a function call")
    expect(JSON.parse(call.function.arguments)).toEqual({ city: "Paris" })

    // The model saw the client's function, schema and all, as an MCP tool of the CLI.
    const offered = (upstream.requestsFor("TOOL-ONE")[0]!.body as { tools: Array<{ name: string; input_schema: unknown }> }).tools
    expect(offered.find((t) => t.name === "mcp__client__get_weather")?.input_schema).toMatchObject(weather.function.parameters!)
    expect(offered.some((t) => t.name === "Bash")).toBe(false)
    expect((await health(gateway)).tools.parked).toBe(1)

    messages.push(choice.message, { role: "tool", tool_call_id: call.id, content: "WEATHER-ONE: sunny, 21 C" })
    const second = await client.chat.completions.create({ model: "sonnet", messages, tools: [weather] })
    expect(second.choices[0]!.message.content).toBe("Sunny in Paris.")
    expect(second.choices[0]!.finish_reason).toBe("stop")

    // The same CLI session went on: upstream got the real tool_result for the real tool_use id.
    const [results] = upstream.requestsFor("WEATHER-ONE").map((r) => toolResults(r.body))
    expect(results).toEqual([expect.objectContaining({ tool_use_id: call.id })])
    expect(JSON.stringify(results![0]!.content)).toContain("WEATHER-ONE: sunny, 21 C")
    expect(sessionOf("WEATHER-ONE")).toEqual(sessionOf("TOOL-ONE"))
    expect((await health(gateway)).tools.parked).toBe(0)
  })
})

describe("parallel calls", () => {
  it("returns several tool_calls and takes their results together", async () => {
    upstream.on("TOOL-PAR", {
      kind: "message",
      blocks: [toolUse("get_weather", { city: "Oslo" }), toolUse("get_time", { tz: "CET" })]
    })
    upstream.on("PAR-TIME", { kind: "message", blocks: [{ type: "text", text: "Cold, and it is noon." }] })
    const messages: Array<ChatCompletionMessageParam> = [{ role: "user", content: "TOOL-PAR" }]
    const first = await client.chat.completions.create({ model: "sonnet", messages, tools: [weather, time] })
    const calls = first.choices[0]!.message.tool_calls ?? []
    expect(first.choices[0]!.message.content).toBeNull()
    expect(calls.map((c) => c.type === "function" && c.function.name)).toEqual(["get_weather", "get_time"])
    messages.push(
      first.choices[0]!.message,
      { role: "tool", tool_call_id: calls[0]!.id, content: "PAR-WEATHER: -3 C" },
      { role: "tool", tool_call_id: calls[1]!.id, content: "PAR-TIME: 12:00" }
    )
    const second = await client.chat.completions.create({ model: "sonnet", messages, tools: [weather, time] })
    expect(second.choices[0]!.message.content).toBe("Cold, and it is noon.")
    const body = JSON.stringify(upstream.requestsFor("PAR-TIME")[0]!.body)
    expect(body).toContain("PAR-WEATHER: -3 C")
    expect(sessionOf("PAR-TIME")).toEqual(sessionOf("TOOL-PAR"))
  })
})

describe("streaming", () => {
  it("streams tool call deltas that openai-node's stream helper assembles, then the continuation", async () => {
    upstream.on("TOOL-STREAM", {
      kind: "message",
      blocks: [{ type: "text", text: "Let me look." }, toolUse("get_weather", { city: "Lisbon", units: "metric" }, 4)]
    })
    upstream.on("STREAM-RESULT", { kind: "message", blocks: [{ type: "text", text: ["Warm ", "in Lisbon."] }] })
    const messages: Array<ChatCompletionMessageParam> = [{ role: "user", content: "TOOL-STREAM" }]
    const stream = client.chat.completions.stream({ model: "sonnet", messages, tools: [weather] })
    const argumentPieces: Array<string> = []
    stream.on("tool_calls.function.arguments.delta", (event) => argumentPieces.push(event.arguments_delta))
    const first = await stream.finalChatCompletion()
    expect(first.choices[0]!.finish_reason).toBe("tool_calls")
    expect(first.choices[0]!.message.content).toBe("Let me look.")
    const call = first.choices[0]!.message.tool_calls![0]!
    if (call.type !== "function") throw new Error("expected a function call")
    expect(call.function.name).toBe("get_weather")
    expect(JSON.parse(call.function.arguments)).toEqual({ city: "Lisbon", units: "metric" })
    expect(argumentPieces.length).toBeGreaterThan(1)

    messages.push(first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "STREAM-RESULT: 28 C" })
    const continued = client.chat.completions.stream({ model: "sonnet", messages, tools: [weather] })
    const second = await continued.finalChatCompletion()
    expect(second.choices[0]!.message.content).toBe("Warm in Lisbon.")
    expect(second.choices[0]!.finish_reason).toBe("stop")
    expect(sessionOf("STREAM-RESULT")).toEqual(sessionOf("TOOL-STREAM"))
  })
})

describe("several rounds", () => {
  it("answers one call, gets another, and then the final answer", async () => {
    upstream.on("TOOL-ROUNDS", { kind: "message", blocks: [toolUse("get_weather", { city: "Rome" })] })
    upstream.on("ROUND-1", { kind: "message", blocks: [{ type: "text", text: "Now the time." }, toolUse("get_time", { tz: "Europe/Rome" })] })
    upstream.on("ROUND-2", { kind: "message", blocks: [{ type: "text", text: "Mild, 9 pm in Rome." }] })
    const messages: Array<ChatCompletionMessageParam> = [{ role: "user", content: "TOOL-ROUNDS" }]
    const tools = [weather, time]
    const first = await client.chat.completions.create({ model: "sonnet", messages, tools })
    messages.push(first.choices[0]!.message, { role: "tool", tool_call_id: first.choices[0]!.message.tool_calls![0]!.id, content: "ROUND-1: 15 C" })
    const second = await client.chat.completions.create({ model: "sonnet", messages, tools })
    expect(second.choices[0]!.finish_reason).toBe("tool_calls")
    expect(second.choices[0]!.message.content).toBe("Now the time.")
    const call = second.choices[0]!.message.tool_calls![0]!
    expect(call.type === "function" && call.function.name).toBe("get_time")
    messages.push(second.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "ROUND-2: 21:00" })
    const third = await client.chat.completions.create({ model: "sonnet", messages, tools })
    expect(third.choices[0]!.message.content).toBe("Mild, 9 pm in Rome.")
    expect(new Set([...sessionOf("TOOL-ROUNDS"), ...sessionOf("ROUND-1"), ...sessionOf("ROUND-2")]).size).toBe(1)
    // Usage is per answer, not the turn's running total.
    expect(third.usage!.completion_tokens).toBe(5)
  })
})

describe("an expired parked turn", () => {
  it("is killed after its TTL, and its results then continue through a transcript", async () => {
    // The transcript holds both markers: the result's is tried first.
    upstream.on("EXPIRED-RESULT", { kind: "message", blocks: [{ type: "text", text: "Rainy in Bergen." }] })
    upstream.on("TOOL-EXPIRE", { kind: "message", blocks: [toolUse("get_weather", { city: "Bergen" })] })
    const short = await startGateway({ upstreamUrl: upstream.url, config: { tools: { park_ttl_seconds: PARK_TTL } } })
    const shortClient = openaiFor(short)
    const messages: Array<ChatCompletionMessageParam> = [{ role: "user", content: "TOOL-EXPIRE" }]
    const first = await shortClient.chat.completions.create({ model: "sonnet", messages, tools: [weather] })
    const call = first.choices[0]!.message.tool_calls![0]!
    expect((await health(short)).pool.leased).toBe(1)
    await waitForHealth(short, (h) => h.tools.parked === 0 && h.pool.leased === 0, (PARK_TTL + 3) * 1000)
    await short.close()

    messages.push(first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "EXPIRED-RESULT: rain" })
    const second = await client.chat.completions.create({ model: "sonnet", messages, tools: [weather] })
    expect(second.choices[0]!.message.content).toBe("Rainy in Bergen.")
    // A new CLI session, told the history (call and result) as a transcript.
    expect(sessionOf("EXPIRED-RESULT")[0]).not.toBe(sessionOf("TOOL-EXPIRE")[0])
    const sent = textOf(messagesOf(upstream.requestsFor("EXPIRED-RESULT")[0]!.body)[0]!.content)
    expect(sent).toContain(`<tool_call id="${call.id}" name="get_weather">`)
    expect(sent).toContain("EXPIRED-RESULT: rain")
  })
})

describe("an expired parked turn of a known conversation", () => {
  it("continues the conversation's CLI session with the results", async () => {
    upstream.on("RESUMED-RESULT", { kind: "message", blocks: [{ type: "text", text: "Foggy in London." }] })
    upstream.on("TOOL-RESUME", { kind: "message", blocks: [toolUse("get_weather", { city: "London" })] })
    const short = await startGateway({ upstreamUrl: upstream.url, config: { tools: { park_ttl_seconds: PARK_TTL } } })
    try {
      const shortClient = openaiFor(short)
      const messages: Array<ChatCompletionMessageParam> = [{ role: "user", content: "TOOL-RESUME" }]
      const first = await shortClient.chat.completions.create({ model: "sonnet", messages, tools: [weather] })
      const call = first.choices[0]!.message.tool_calls![0]!
      await waitForHealth(short, (h) => h.tools.parked === 0 && h.pool.leased === 0, (PARK_TTL + 3) * 1000)
      messages.push(first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "RESUMED-RESULT: fog" })
      const second = await shortClient.chat.completions.create({ model: "sonnet", messages, tools: [weather] })
      expect(second.choices[0]!.message.content).toBe("Foggy in London.")
      // The same CLI session, resumed: the call is a real prior tool_use, the result follows it.
      expect(sessionOf("RESUMED-RESULT")[0]).toBe(sessionOf("TOOL-RESUME")[0])
      const sent = JSON.stringify(upstream.requestsFor("RESUMED-RESULT")[0]!.body)
      expect(sent).toContain("RESUMED-RESULT: fog")
      expect(sent).not.toContain("<conversation_history>")
    } finally {
      await short.close()
    }
  })
})

describe("a conversation that goes on without the results", () => {
  it("ends its parked turn, so that one session never has two CLIs", async () => {
    upstream.on("TOOL-ABANDON", { kind: "message", blocks: [toolUse("get_weather", { city: "Oslo" })] })
    upstream.on("ABANDONED", { kind: "message", blocks: [{ type: "text", text: "Never mind then." }] })
    const first = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "TOOL-ABANDON" }],
      tools: [weather]
    }) as OpenAI.ChatCompletion & { conversation_id: string }
    const parkedBefore = (await health(gateway)).tools.parked
    const next = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "ABANDONED: forget the weather" }],
      tools: [weather],
      conversation_id: first.conversation_id
    } as OpenAI.ChatCompletionCreateParamsNonStreaming)
    expect(next.choices[0]!.message.content).toBe("Never mind then.")
    expect((await health(gateway)).tools.parked).toBe(parkedBefore - 1)
    expect(sessionOf("ABANDONED")).toEqual(sessionOf("TOOL-ABANDON"))
  })
})

describe("a follow-up that offers other functions", () => {
  it("does not continue the parked CLI (tool_choice none): the results go on in a resumed session without tools", async () => {
    upstream.on("NONE-RESULT", { kind: "message", blocks: [{ type: "text", text: "Done without tools." }] })
    upstream.on("TOOL-THEN-NONE", { kind: "message", blocks: [toolUse("get_weather", { city: "Riga" })] })
    const messages: Array<ChatCompletionMessageParam> = [{ role: "user", content: "TOOL-THEN-NONE" }]
    const first = await client.chat.completions.create({ model: "sonnet", messages, tools: [weather] })
    const call = first.choices[0]!.message.tool_calls![0]!
    const parkedBefore = (await health(gateway)).tools.parked
    messages.push(first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "NONE-RESULT: 5 C" })
    const second = await client.chat.completions.create({ model: "sonnet", messages, tools: [weather], tool_choice: "none" })
    expect(second.choices[0]!.message.content).toBe("Done without tools.")
    expect((await health(gateway)).tools.parked).toBe(parkedBefore - 1)
    const body = upstream.requestsFor("NONE-RESULT")[0]!.body as { tools?: Array<{ name: string }> }
    expect((body.tools ?? []).some((t) => t.name.startsWith("mcp__client__"))).toBe(false)
    expect(sessionOf("NONE-RESULT")).toEqual(sessionOf("TOOL-THEN-NONE"))
  })
})

describe("the parked-turn cap", () => {
  it("ends the oldest parked turn when one more would pass tools.max_parked", async () => {
    // The transcript holds both markers: the result's is tried first.
    upstream.on("CAP-RESULT", { kind: "message", blocks: [{ type: "text", text: "via transcript" }] })
    upstream.on("TOOL-CAP", { kind: "message", blocks: [toolUse("get_weather", { city: "Kyiv" })] })
    const capped = await startGateway({ upstreamUrl: upstream.url, config: { tools: { max_parked: 1 }, pool: { enabled: false } } })
    try {
      const cappedClient = openaiFor(capped)
      const park = () => cappedClient.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "TOOL-CAP" }], tools: [weather] })
      const first = await park()
      await park()
      const h = await waitForHealth(capped, (h) => h.pool.leased === 1)
      expect(h.tools.parked).toBe(1)
      // The first turn is gone: its results now go through a transcript on a new CLI.
      const call = first.choices[0]!.message.tool_calls![0]!
      const answer = await cappedClient.chat.completions.create({
        model: "sonnet",
        tools: [weather],
        messages: [{ role: "user", content: "TOOL-CAP" }, first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "CAP-RESULT" }]
      })
      expect(answer.choices[0]!.message.content).toBe("via transcript")
      expect((await health(capped)).tools.parked).toBe(1)
    } finally {
      await capped.close()
    }
  })
})

describe("tool_choice", () => {
  it("none: the functions are not offered", async () => {
    upstream.on("TOOL-NONE", { kind: "message", blocks: [{ type: "text", text: "no tools" }] })
    const completion = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "TOOL-NONE" }],
      tools: [weather],
      tool_choice: "none"
    })
    expect(completion.choices[0]!.message.content).toBe("no tools")
    const offered = (upstream.requestsFor("TOOL-NONE")[0]!.body as { tools?: Array<{ name: string }> }).tools ?? []
    expect(offered.some((t) => t.name.startsWith("mcp__client__"))).toBe(false)
  })

  it("a named function and parallel_tool_calls=false are instructed to the model", async () => {
    upstream.on("TOOL-NAMED", { kind: "message", blocks: [toolUse("get_time", {})] })
    const completion = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "TOOL-NAMED" }],
      tools: [weather, time],
      tool_choice: { type: "function", function: { name: "get_time" } },
      parallel_tool_calls: false
    })
    const call = completion.choices[0]!.message.tool_calls![0]!
    expect(call.type === "function" && call.function.arguments).toBe("{}")
    const system = JSON.stringify((upstream.requestsFor("TOOL-NAMED")[0]!.body as { system: unknown }).system)
    expect(system).toContain("you must call the tool mcp__client__get_time")
    expect(system).toContain("Call at most one tool per reply.")
  })
})

describe("names MCP cannot carry", () => {
  it("are mapped for the CLI and back for the client", async () => {
    const long = `lookup_${"x".repeat(56)}`
    upstream.on("TOOL-LONG", { kind: "message", blocks: [toolUse(mcpName(long), { q: 1 })] })
    const completion = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "TOOL-LONG" }],
      tools: [{ type: "function", function: { name: long, parameters: { type: "object", properties: { q: { type: "number" } } } } }]
    })
    const call = completion.choices[0]!.message.tool_calls![0]!
    expect(call.type === "function" && call.function.name).toBe(long)
    expect(`mcp__client__${mcpName(long)}`.length).toBeLessThanOrEqual(64)
  })
})

describe("bad tool requests", () => {
  const ask = (body: Record<string, unknown>) =>
    postChat(gateway, { model: "sonnet", messages: [{ role: "user", content: "hi" }], ...body })

  it("rejects a parameters schema that is not a JSON Schema object", async () => {
    for (const parameters of [{ type: "string" }, { type: "object", required: "city" }]) {
      const response = await ask({ tools: [{ type: "function", function: { name: "f", parameters } }] })
      expect(response.status).toBe(400)
      const { error } = await response.json() as { error: { param: string; code: string } }
      expect(error).toMatchObject({ param: "tools[0].function.parameters", code: "invalid_function_parameters" })
    }
  })

  it("rejects a bad function name and an unknown named tool_choice", async () => {
    const badName = await ask({ tools: [{ type: "function", function: { name: "has space" } }] })
    expect(badName.status).toBe(400)
    expect(((await badName.json()) as { error: { param: string } }).error.param).toBe("tools[0].function.name")
    const badChoice = await ask({ tools: [weather], tool_choice: { type: "function", function: { name: "nope" } } })
    expect(badChoice.status).toBe(400)
    expect(((await badChoice.json()) as { error: { param: string } }).error.param).toBe("tool_choice.function.name")
  })

  /** A history whose assistant message called get_weather as `call_a`, then `next`. */
  const afterCall = (next: unknown) =>
    postChat(gateway, {
      model: "sonnet",
      tools: [weather],
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_a", type: "function", function: { name: "get_weather", arguments: "{}" } }] },
        next
      ]
    })

  it("rejects a tool message whose id answers no call of the assistant message before it", async () => {
    const response = await afterCall({ role: "tool", tool_call_id: "call_b", content: "x" })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ error: { param: "messages[2].tool_call_id", code: "unknown_tool_call_id" } })
  })

  it("rejects an assistant tool call left unanswered", async () => {
    const response = await afterCall({ role: "user", content: "well?" })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ error: { param: "messages[1].tool_calls" } })
  })
})

describe("shutdown", () => {
  it("leaves a turn parked for afterAll, which must end it with the gateway", async () => {
    upstream.on("TOOL-SHUTDOWN", { kind: "message", blocks: [toolUse("get_weather", { city: "Nuuk" })] })
    const completion = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "TOOL-SHUTDOWN" }],
      tools: [weather]
    })
    expect(completion.choices[0]!.finish_reason).toBe("tool_calls")
    expect((await health(gateway)).tools.parked).toBeGreaterThanOrEqual(1)
  })
})
