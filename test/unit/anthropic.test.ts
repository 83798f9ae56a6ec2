import { describe, expect, it } from "@effect/vitest"
import { Data, Effect, Either, Stream } from "effect"
import { TurnEvent, type TurnUsage } from "../../src/domain/Turn.js"
import type { AnthropicErrorBody } from "../../src/http/errors.js"
import { aggregate, displayName, eventRenderer, type MessageMeta } from "../../src/protocols/anthropic/render.js"
import { sseResponse } from "../../src/http/sse.js"
import { sseFramesOf } from "../support/sseBody.js"
import { countableText, decodeMessagesRequest, toAnthropicTurn } from "../../src/protocols/anthropic/translate.js"

class Boom extends Data.TaggedError("Boom")<{ readonly reason: string }> {}

const meta: MessageMeta = { id: "msg_test", model: "sonnet", showThinking: true }
const usage: TurnUsage = { inputTokens: 10, outputTokens: 5, cacheReadTokens: 100, cacheCreationTokens: 20 }
const started = TurnEvent.Started({ model: "claude-sonnet-5-5", sessionId: "s1" })

const toolTurn: ReadonlyArray<TurnEvent> = [
  started,
  TurnEvent.ThinkingDelta({ text: "hmm" }),
  TurnEvent.TextDelta({ text: "Let me look." }),
  TurnEvent.ToolCallStarted({ index: 0, id: "toolu_1", name: "lookup" }),
  TurnEvent.ToolCallDelta({ index: 0, arguments: "{\"q\":" }),
  TurnEvent.ToolCallDelta({ index: 0, arguments: "\"x\"}" }),
  TurnEvent.Finished({
    reason: "tool_calls",
    usage,
    costUsd: 0.1,
    sessionId: "s1",
    toolCalls: [{ id: "toolu_1", name: "lookup", arguments: "{\"q\":\"x\"}" }]
  })
]

const onError = (error: Boom): AnthropicErrorBody => ({ type: "error", error: { type: "api_error", message: error.reason } })

/** `event: <name>\ndata: <json>\n\n` frames → [name, data]. */
const parse = (frames: ReadonlyArray<string>) =>
  frames.map((frame) => {
    const match = /^event: ([a-z_]+)\ndata: (.*)\n\n$/s.exec(frame)
    expect(match, frame).not.toBeNull()
    return [match![1]!, JSON.parse(match![2]!)] as const
  })

const framesOf = <E>(events: Stream.Stream<TurnEvent, E>, handle: (error: E) => AnthropicErrorBody, m = meta) =>
  sseFramesOf(sseResponse(events, eventRenderer(m, handle), { seconds: 0, comment: "" }, {}))

describe("Anthropic render", () => {
  it.effect("aggregates blocks in order, tool input parsed, stop reason and usage in Anthropic's terms", () =>
    Effect.gen(function*() {
      const { costUsd, message } = yield* aggregate(Stream.fromIterable(toolTurn), meta)
      expect(costUsd).toBe(0.1)
      expect(message).toEqual({
        id: "msg_test",
        type: "message",
        role: "assistant",
        model: "claude-sonnet-5-5",
        content: [
          { type: "thinking", thinking: "hmm", signature: "" },
          { type: "text", text: "Let me look." },
          { type: "tool_use", id: "toolu_1", name: "lookup", input: { q: "x" } }
        ],
        stop_reason: "tool_use",
        stop_sequence: null,
        usage: { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 20, cache_read_input_tokens: 100 }
      })
    }))

  it.effect("streams named events: message_start, ping, blocks with their deltas, message_delta, message_stop", () =>
    Effect.gen(function*() {
      const events = parse(yield* framesOf(Stream.fromIterable(toolTurn), onError))
      expect(events.map(([name]) => name)).toEqual([
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop"
      ])
      // Every data payload carries its event name as `type`.
      for (const [name, data] of events) expect(data.type).toBe(name)
      expect(events[0]![1].message).toMatchObject({ id: "msg_test", model: "claude-sonnet-5-5", content: [], stop_reason: null })
      expect(events.filter(([name]) => name === "content_block_start").map(([, d]) => [d.index, d.content_block.type])).toEqual([
        [0, "thinking"],
        [1, "text"],
        [2, "tool_use"]
      ])
      expect(events[9]![1]).toEqual({ type: "content_block_delta", index: 2, delta: { type: "input_json_delta", partial_json: "{\"q\":" } })
      expect(events[12]![1]).toEqual({
        type: "message_delta",
        delta: { stop_reason: "tool_use", stop_sequence: null },
        usage: { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 20, cache_read_input_tokens: 100 }
      })
    }))

  it.effect("a failure after the first byte becomes an `error` event that ends the stream", () =>
    Effect.gen(function*() {
      const failing = Stream.concat(
        Stream.fromIterable([started, TurnEvent.TextDelta({ text: "partial" })]),
        Stream.fail(new Boom({ reason: "CLI died" }))
      )
      const events = parse(yield* framesOf(failing, onError))
      expect(events.at(-1)).toEqual(["error", { type: "error", error: { type: "api_error", message: "CLI died" } }])
      expect(events.map(([name]) => name)).not.toContain("message_stop")
    }))

  it.effect("a stop sequence is reported as such; thinking is left out unless asked for", () =>
    Effect.gen(function*() {
      const turn = Stream.fromIterable([
        started,
        TurnEvent.ThinkingDelta({ text: "secret" }),
        TurnEvent.TextDelta({ text: "a" }),
        TurnEvent.Finished({ reason: "stop", usage, costUsd: undefined, sessionId: "s1", stopSequence: "END" })
      ])
      const { message } = yield* aggregate(turn, { ...meta, showThinking: false })
      expect(message.content).toEqual([{ type: "text", text: "a" }])
      expect([message.stop_reason, message.stop_sequence]).toEqual(["stop_sequence", "END"])
    }))

  it("names models for display", () => {
    expect(displayName("claude-opus-5-5")).toBe("Claude Opus 5.5")
    expect(displayName("sonnet")).toBe("Sonnet")
    expect(displayName("claude-haiku-4-5-20251001")).toBe("Claude Haiku 4.5.20251001")
  })
})

const request = (body: Record<string, unknown>) =>
  Either.getOrThrow(decodeMessagesRequest({ model: "sonnet", max_tokens: 100, ...body }))

const translate = (body: Record<string, unknown>) =>
  toAnthropicTurn(request(body), "sonnet", { maxChoices: 1, maxHistoryMessages: 200 })

const paramOf = (body: Record<string, unknown>) =>
  Either.match(translate(body), { onLeft: (error) => error.param, onRight: () => "accepted" })

describe("Anthropic translate", () => {
  it("a tool_result answering the last tool_use is the turn's tool results; history keeps the roles", () => {
    const turn = Either.getOrThrow(translate({
      system: "Be brief.",
      tools: [{ name: "lookup", input_schema: { type: "object", properties: { q: { type: "string" } } } }],
      tool_choice: { type: "any", disable_parallel_tool_use: true },
      messages: [
        { role: "user", content: "find x" },
        { role: "assistant", content: [{ type: "thinking", thinking: "t", signature: "s" }, { type: "tool_use", id: "toolu_1", name: "lookup", input: { q: "x" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "found" }], is_error: true }] }
      ],
      stop_sequences: ["a", "b", "c", "d", "e"]
    })).turn
    expect(turn.toolResults).toEqual([{ id: "toolu_1", content: "Error: found" }])
    expect(turn.stop).toEqual(["a", "b", "c", "d", "e"])
    expect(turn.launch.systemPrompt).toBe("Be brief.")
    expect(turn.launch.maxOutputTokens).toBe(100)
    expect(turn.launch.tools?.map((tool) => tool.clientName)).toEqual(["lookup"])
    expect(turn.launch.toolInstruction).toContain("must call at least one")
    expect(turn.launch.toolInstruction).toContain("at most one tool")
    expect(turn.conversation?.history.map((m) => m.role)).toEqual(["system", "user", "assistant"])
    expect(turn.conversation?.added).toEqual([{ role: "tool", content: "Error: found", tool_call_id: "toolu_1" }])
  })

  it("accepts and ignores Anthropic's platform and caching fields", () => {
    expect(paramOf({
      messages: [{ role: "user", content: [{ type: "text", text: "x", cache_control: { type: "ephemeral" } }] }],
      cache_control: { type: "ephemeral" },
      context_management: { edits: [] },
      metadata: { user_id: "u1" },
      temperature: 0.2,
      top_k: 5,
      service_tier: "auto",
      speed: "fast",
      workspace_id: "w"
    })).toBe("accepted")
  })

  it("thinking budgets and output_config.effort choose the CLI's effort", () => {
    const effort = (body: Record<string, unknown>) =>
      Either.getOrThrow(translate({ messages: [{ role: "user", content: "x" }], ...body })).turn.launch.effort
    expect(effort({ thinking: { type: "enabled", budget_tokens: 2048 } })).toBe("low")
    expect(effort({ thinking: { type: "enabled", budget_tokens: 8000 } })).toBe("medium")
    expect(effort({ thinking: { type: "enabled", budget_tokens: 32000 } })).toBe("high")
    expect(effort({ output_config: { effort: "max" } })).toBe("max")
    expect(effort({})).toBeUndefined()
  })

  it("rejections name the Anthropic field, also those of the shared chat translation", () => {
    const user = { role: "user", content: "x" }
    expect(paramOf({ messages: [user], tools: [{ name: "a b", input_schema: { type: "object" } }] })).toBe("tools[0].name")
    expect(paramOf({ messages: [user], tools: [{ name: "f", input_schema: { type: "string" } }] })).toBe("tools[0].input_schema")
    expect(paramOf({ messages: [user], tools: [{ name: "f", input_schema: {} }], tool_choice: { type: "tool", name: "g" } })).toBe("tool_choice.name")
    expect(paramOf({ messages: [user], output_config: { effort: "extreme" } })).toBe("output_config.effort")
    expect(paramOf({
      messages: [user, { role: "assistant", content: "ok" }, {
        role: "user",
        content: [{ type: "text", text: "see" }, { type: "image", source: { type: "base64", media_type: "image/png", data: "!!" } }]
      }]
    })).toBe("messages[2].content[1].source")
    expect(paramOf({ messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "nope" }] }] })).toBe("messages[0].content[0].tool_use_id")
    expect(paramOf({ messages: [{ role: "user", content: [] }] })).toBe("messages[0].content")
    expect(paramOf({ system: [{ type: "image" }], messages: [user] })).toBe("system[0].type")
    expect(paramOf({ system: "a\u0000b", messages: [user] })).toBe("system")
    expect(paramOf({ messages: [user], thinking: { type: "enabled", budget_tokens: 0 } })).toBe("thinking.budget_tokens")
    expect(paramOf({ messages: [{ role: "user", content: [{ type: "image", source: { type: "file", file_id: "f1" } }] }] }))
      .toMatch(/^messages\[0\]\.content\[0\]\.source/)
    expect(paramOf({
      messages: [user],
      tools: [{ name: "f", input_schema: { type: "object" } }],
      output_config: { format: { type: "json_schema", schema: { type: "object" } } }
    })).toBe("output_config.format")
  })

  it("count_tokens text holds the system prompt, every message with its role, tool calls and tools", () => {
    const text = Either.getOrThrow(countableText({
      model: "sonnet",
      system: "SYS",
      tools: [{ name: "lookup", input_schema: { type: "object" } }],
      messages: [
        { role: "user", content: "Q1" },
        { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "lookup", input: { q: 1 } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "R1" }, { type: "text", text: "Q2" }] }
      ]
    }))
    for (const part of ["system: SYS", "user: Q1", "\"lookup\"", "{\\\"q\\\":1}", "tool: R1", "user: Q2"]) expect(text).toContain(part)
  })

  it("count_tokens refuses more text than the counting CLI's argv can carry, naming the field", () => {
    const error = Either.flip(countableText({ model: "sonnet", messages: [{ role: "user", content: "x".repeat(200_000) }] }))
    expect(Either.getOrThrow(error).param).toBe("messages")
  })
})
