import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { InvalidRequest } from "../../src/domain/errors.js"
import { type Continuation, decodeResponsesRequest, toTurn, type Translated } from "../../src/protocols/responses/translate.js"

// Responses request → TurnRequest (through the chat translation), and the field names of its rejections.

const fresh: Continuation = { conversationId: undefined, prior: [] }

const translate = (body: Record<string, unknown>, continuation = fresh): Either.Either<Translated, InvalidRequest> =>
  Either.flatMap(decodeResponsesRequest({ model: "sonnet", ...body }), (request) =>
    toTurn(request, "claude-sonnet-5-5", continuation, { maxChoices: 1, maxHistoryMessages: 200, owner: "" }))

const ok = (body: Record<string, unknown>, continuation?: Continuation): Translated => {
  const result = translate(body, continuation)
  if (Either.isLeft(result)) throw new Error(`expected success, got ${result.left.message} (param ${result.left.param})`)
  return result.right
}

const fail = (body: Record<string, unknown>, continuation?: Continuation): InvalidRequest => {
  const result = translate(body, continuation)
  if (Either.isRight(result)) throw new Error(`expected InvalidRequest, got ${JSON.stringify(result.right.turn)}`)
  return result.left
}

const weather = { type: "function", name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } }

describe("Responses translation", () => {
  it("a string input is the user's message; instructions are the system prompt", () => {
    const { turn } = ok({ input: "hello", instructions: "Be brief." })
    expect(turn.input).toEqual([{ type: "text", text: "hello" }])
    expect(turn.launch.systemPrompt).toBe("Be brief.")
    expect(turn.conversation?.added).toEqual([{ role: "user", content: "hello" }])
  })

  it("an assistant message and the function calls after it are one assistant turn; outputs are its tool results", () => {
    const { turn } = ok({
      tools: [weather],
      input: [
        { role: "user", content: [{ type: "input_text", text: "weather?" }] },
        { type: "reasoning", id: "rs_1", summary: [] },
        { type: "message", role: "assistant", content: [{ type: "output_text", text: "Checking." }] },
        { type: "function_call", call_id: "call_1", name: "get_weather", arguments: "{\"city\":\"Paris\"}" },
        { type: "function_call_output", call_id: "call_1", output: "sunny" }
      ]
    })
    expect(turn.toolResults).toEqual([{ id: "call_1", content: "sunny" }])
    expect(turn.conversation?.history).toEqual([
      { role: "user", content: "weather?" },
      { role: "assistant", content: "Checking.", tool_calls: [{ id: "call_1", name: "get_weather", arguments: "{\"city\":\"Paris\"}" }] }
    ])
    expect(turn.conversation?.added).toEqual([{ role: "tool", content: "sunny", tool_call_id: "call_1" }])
  })

  it("with previous_response_id, outputs answer the previous response's calls (given as prior)", () => {
    const prior: Continuation = {
      conversationId: "conv_1",
      prior: [{ role: "assistant", content: null, tool_calls: [{ id: "call_9", name: "get_weather", arguments: "{}" }] }]
    }
    const { turn } = ok({ tools: [weather], input: [{ type: "function_call_output", call_id: "call_9", output: "rain" }] }, prior)
    expect(turn.conversation?.id).toBe("conv_1")
    expect(turn.toolResults).toEqual([{ id: "call_9", content: "rain" }])
    // The prior message is history: a CLI session that holds it gets only the new part.
    expect(turn.input.slice(turn.newInputFrom ?? 0)).toEqual([
      { type: "text", text: "<tool_results>\n<tool_result tool_call_id=\"call_9\">\nrain\n</tool_result>\n</tool_results>" }
    ])
  })

  it("does not count the previous response's calls twice when the client re-sends them", () => {
    const prior: Continuation = {
      conversationId: "conv_1",
      prior: [{ role: "assistant", content: null, tool_calls: [{ id: "call_9", name: "get_weather", arguments: "{}" }] }]
    }
    const { turn } = ok({
      tools: [weather],
      input: [
        { type: "function_call", call_id: "call_9", name: "get_weather", arguments: "{}" },
        { type: "function_call_output", call_id: "call_9", output: "rain" }
      ]
    }, prior)
    expect(turn.toolResults).toEqual([{ id: "call_9", content: "rain" }])
    expect(turn.conversation?.history).toEqual([{ role: "assistant", content: null, tool_calls: [{ id: "call_9", name: "get_weather", arguments: "{}" }] }])
  })

  it("leaves out hosted tools and include values, and reports them", () => {
    const { ignored, tools, turn } = ok({
      input: "x",
      tools: [{ type: "web_search" }, weather, { type: "namespace", name: "n" }],
      include: ["reasoning.encrypted_content"],
      max_tool_calls: 3
    })
    expect(tools.map((t) => t.name)).toEqual(["get_weather"])
    expect(turn.launch.tools?.map((t) => t.clientName)).toEqual(["get_weather"])
    expect(ignored.map((i) => i.param)).toEqual(["tools[0]", "tools[2]", "include[0]", "max_tool_calls"])
  })

  it("maps text.format, reasoning.effort, max_output_tokens and tool_choice onto the launch", () => {
    const schema = { type: "object", properties: { a: { type: "string" } } }
    const structured = ok({ input: "x", text: { format: { type: "json_schema", name: "a", schema } }, reasoning: { effort: "high" }, max_output_tokens: 50 })
    expect(JSON.parse(structured.turn.launch.jsonSchema!)).toEqual(schema)
    expect(structured.turn.launch.effort).toBe("high")
    expect(structured.turn.launch.maxOutputTokens).toBe(50)
    const forced = ok({ input: "x", tools: [weather], tool_choice: { type: "function", name: "get_weather" }, parallel_tool_calls: false })
    expect(forced.turn.launch.toolInstruction).toContain("mcp__client__get_weather")
    expect(forced.turn.launch.toolInstruction).toContain("at most one tool")
  })

  it("names the Responses field of every rejection", () => {
    const param = (body: Record<string, unknown>, continuation?: Continuation) => fail(body, continuation).param
    expect(param({ input: [{ type: "item_reference", id: "x" }] })).toBe("input[0].type")
    expect(param({ input: [{ role: "user", content: [{ type: "input_file", file_id: "f" }] }] })).toBe("input[0].content[0]")
    expect(param({ input: [{ role: "user", content: [{ type: "input_image", file_id: "f" }] }] })).toBe("input[0].content[0].file_id")
    expect(param({ input: [{ role: "user", content: [{ type: "input_image", image_url: "data:text/plain;base64,AAAA" }] }] })).toBe("input[0].content[0].image_url")
    expect(param({ input: [{ type: "function_call_output", call_id: "nope", output: "x" }] })).toBe("input[0].call_id")
    expect(param({ input: [{ role: "user", content: "q" }, { type: "function_call", call_id: "c1", name: "f", arguments: "{}" }, { role: "user", content: "r" }] })).toBe("input[1]")
    expect(param({ input: [{ type: "function_call", name: "f", arguments: "{}" }] })).toBe("input[0].call_id")
    expect(param({ input: "x", tools: [{ type: "web_search" }, { type: "function", name: "bad name" }] })).toBe("tools[1].name")
    expect(param({ input: "x", tools: [weather], tool_choice: { type: "function", name: "other" } })).toBe("tool_choice.name")
    expect(param({ input: "x", tool_choice: { type: "web_search" } })).toBe("tool_choice")
    expect(param({ input: "x", text: { format: { type: "yaml" } } })).toBe("text.format")
    expect(param({ input: "x", reasoning: { effort: "extreme" } })).toBe("reasoning.effort")
    expect(param({ input: "x", max_output_tokens: 0 })).toBe("max_output_tokens")
    expect(param({ input: "x", background: true })).toBe("background")
    expect(param({ input: [] })).toBe("input")
    expect(param({ input: "" })).toBe("input")
    const pendingCalls: Continuation = { conversationId: "c", prior: [{ role: "assistant", content: null, tool_calls: [{ id: "k", name: "f", arguments: "{}" }] }] }
    expect(param({ input: "next question" }, pendingCalls)).toBe("previous_response_id")
    // The message names the same field.
    expect(fail({ input: [{ type: "function_call_output", call_id: "nope", output: "x" }] }).message).toContain("'input[0].call_id'")
  })
})
