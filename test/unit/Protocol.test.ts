import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Option, Stream } from "effect"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { type CliMessage, decodeCliLine, ProtocolError } from "../../src/cli/Protocol.js"
import { finishReason, toTurnEvents, turnEventPull } from "../../src/cli/TurnEvents.js"
import type { TurnEvent } from "../../src/domain/Turn.js"

/**
 * Fixtures: stdout of the real CLI (2.1.331, `-p --input-format stream-json --output-format stream-json --verbose
 * --include-partial-messages --model sonnet`) against the scripted upstream of test/support/upstream.ts.
 * - text.jsonl: one user line "hi", upstream text "Hello " "from " "upstream"
 * - thinking.jsonl: upstream thinking "Let me " "think." then text "Answer" "."
 * - error529.jsonl: upstream 529 overloaded_error with x-should-retry: false (CLAUDE_CODE_MAX_RETRIES=0)
 * - initialize.jsonl: the control_response to {"type":"control_request","request_id":"c1","request":{"subtype":"initialize"}}
 * - client_tools.jsonl: `--tools "" --mcp-config <sdk server "client"> --strict-mcp-config --allowedTools …`; upstream
 *   text "Checking." + tool_use get_weather {"city":"Paris"} (2 argument pieces) + tool_use get_time {}; both
 *   tools/call answered "RESULT-42" over mcp_message (control lines left out); then text "Sunny " "at noon."
 */
const FIXTURES = ["text", "thinking", "error529", "initialize", "client_tools"] as const
type Fixture = typeof FIXTURES[number]

const fixtureLines = (name: Fixture): ReadonlyArray<string> =>
  fs.readFileSync(fileURLToPath(new URL(`../fixtures/cli/${name}.jsonl`, import.meta.url)), "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")

const decodeOk = (line: string): CliMessage => {
  const decoded = decodeCliLine(line)
  if (Either.isLeft(decoded)) throw new Error(`${decoded.left.message}: ${decoded.left.line.slice(0, 200)}`)
  return decoded.right
}

const decodeErr = (line: string): ProtocolError => {
  const decoded = decodeCliLine(line)
  if (Either.isRight(decoded)) throw new Error(`expected a ProtocolError, got ${decoded.right._tag}`)
  return decoded.left
}

const messagesOf = (name: Fixture): ReadonlyArray<CliMessage> => fixtureLines(name).map(decodeOk)

/** Tags with consecutive repeats collapsed. */
const tagRuns = (messages: ReadonlyArray<CliMessage>): ReadonlyArray<string> =>
  messages.map((m) => m._tag).filter((tag, i, tags) => i === 0 || tags[i - 1] !== tag)

const find = <T extends CliMessage["_tag"]>(messages: ReadonlyArray<CliMessage>, tag: T) => {
  const found = messages.filter((m): m is Extract<CliMessage, { _tag: T }> => m._tag === tag)
  expect(found.length, `${tag} messages`).toBeGreaterThan(0)
  return found
}

/** Decoded fixture lines → TurnEvents, with a failure kept as the final Left. */
const turnOf = (name: Fixture) =>
  toTurnEvents(Stream.fromIterable(messagesOf(name))).pipe(
    Stream.either,
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray)
  )

const eventsOnly = (items: ReadonlyArray<Either.Either<TurnEvent, unknown>>): ReadonlyArray<TurnEvent> =>
  items.flatMap((item) => (Either.isRight(item) ? [item.right] : []))

describe("decodeCliLine on captured CLI output", () => {
  it.each(FIXTURES)("decodes every line of %s.jsonl into a known message", (name) => {
    const lines = fixtureLines(name)
    expect(lines.length).toBeGreaterThan(0)
    for (const line of lines) {
      const message = decodeOk(line)
      expect(message._tag).not.toBe("UnknownMessage")
    }
  })

  it("text turn: SystemInit, status, stream events, the assistant block, then the result", () => {
    const messages = messagesOf("text")
    expect(tagRuns(messages)).toEqual([
      "SystemInit",
      "SystemNotice",
      "StreamEvent",
      "AssistantMessage",
      "StreamEvent",
      "ResultMessage"
    ])
    const [init] = find(messages, "SystemInit")
    const [result] = find(messages, "ResultMessage")
    expect(init!.model).toBe("claude-sonnet-5-5")
    expect(init!.session_id).toBe(result!.session_id)
    expect(init!.tools.length).toBeGreaterThan(0)
    expect(init!.claude_code_version).toBe("2.1.331")
    expect(find(messages, "SystemNotice").map((n) => n.subtype)).toEqual(["status"])
    const eventTypes = find(messages, "StreamEvent").map((e) => e.event.type)
    expect(eventTypes).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop"
    ])
    const [assistant] = find(messages, "AssistantMessage")
    expect(assistant!.message.content).toEqual([{ type: "text", text: "Hello from upstream" }])
    expect(assistant!.parent_tool_use_id).toBeNull()
    expect(assistant!.error).toBeUndefined()
    expect(result).toMatchObject({
      subtype: "success",
      is_error: false,
      result: "Hello from upstream",
      stop_reason: "end_turn",
      num_turns: 1,
      api_error_status: null,
      usage: { input_tokens: 12, output_tokens: 5, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }
    })
  })

  it("thinking turn: thinking_tokens notices and one assistant line per block", () => {
    const messages = messagesOf("thinking")
    const runs = tagRuns(messages)
    expect(runs[0]).toBe("SystemInit")
    expect(runs.at(-1)).toBe("ResultMessage")
    expect(find(messages, "SystemNotice").map((n) => n.subtype)).toContain("thinking_tokens")
    expect(find(messages, "AssistantMessage").map((a) => a.message.content)).toEqual([
      // only declared fields survive decoding (the signature is dropped)
      [{ type: "thinking", thinking: "Let me think." }],
      [{ type: "text", text: "Answer." }]
    ])
    const deltas = find(messages, "StreamEvent").flatMap((e) =>
      e.event.type === "content_block_delta" && "delta" in e.event ? [e.event.delta.type] : []
    )
    expect(deltas).toEqual(["thinking_delta", "thinking_delta", "signature_delta", "text_delta", "text_delta"])
  })

  it("529 turn: a synthetic assistant error line and an is_error result with the status", () => {
    const messages = messagesOf("error529")
    expect(tagRuns(messages)).toEqual(["SystemInit", "SystemNotice", "AssistantMessage", "ResultMessage"])
    const [assistant] = find(messages, "AssistantMessage")
    expect(assistant!.is_api_error_message).toBe(true)
    expect(assistant!.error).toBe("server_error")
    expect(assistant!.message.model).toBe("<synthetic>")
    const [result] = find(messages, "ResultMessage")
    expect(result).toMatchObject({
      subtype: "success",
      is_error: true,
      terminal_reason: "api_error",
      api_error_status: 529,
      api_error_type: "overloaded_error"
    })
    expect(result!.result).toContain("529")
  })

  it("initialize: the control_response carries the request id and the CLI's answer", () => {
    const [message] = messagesOf("initialize")
    if (message?._tag !== "ControlResponse") throw new Error(`expected ControlResponse, got ${message?._tag}`)
    const response = message.response
    if (response.subtype !== "success") throw new Error(`expected success, got ${response.subtype}`)
    expect(response.request_id).toBe("c1")
    expect(response.response).toMatchObject({ claude_code_version: "2.1.331" })
    expect(response.response).toHaveProperty("models")
  })
})

describe("decodeCliLine on other lines", () => {
  it("keeps unknown message types as UnknownMessage", () => {
    for (const line of [
      `{"type":"keep_alive"}`,
      `{"type":"control_cancel_request","request_id":"r1"}`,
      `{"type":"transcript_mirror","uuid":"u","payload":{"a":[1,2]}}`
    ]) {
      const message = decodeOk(line)
      if (message._tag !== "UnknownMessage") throw new Error(`expected UnknownMessage, got ${message._tag}`)
      expect(message.raw).toEqual(JSON.parse(line))
      expect(message.type).toBe(JSON.parse(line).type)
    }
  })

  it("keeps system lines other than init as SystemNotice with the raw line", () => {
    const line = `{"type":"system","subtype":"api_retry","attempt":1,"max_retries":2,"retry_delay_ms":546,"error_status":529,"error":"overloaded","session_id":"s","uuid":"u"}`
    const message = decodeOk(line)
    if (message._tag !== "SystemNotice") throw new Error(`expected SystemNotice, got ${message._tag}`)
    expect(message.subtype).toBe("api_retry")
    expect(message.raw).toMatchObject({ error_status: 529, attempt: 1 })
  })

  it("decodes control requests from the CLI", () => {
    const message = decodeOk(
      `{"type":"control_request","request_id":"28d6","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls"}}}`
    )
    if (message._tag !== "ControlRequest") throw new Error(`expected ControlRequest, got ${message._tag}`)
    expect(message.request_id).toBe("28d6")
    expect(message.request).toMatchObject({ subtype: "can_use_tool", tool_name: "Bash" })
  })

  it("fails with ProtocolError on a line that is not a JSON object with a type", () => {
    for (const line of ["not json", "", "[1,2]", "null", `"text"`, `{"no":"type"}`, `{"type":5}`, `{"type":"result"`]) {
      const error = decodeErr(line)
      expect(error, line).toBeInstanceOf(ProtocolError)
      expect(error._tag).toBe("ProtocolError")
      expect(error.line).toBe(line)
    }
  })

  it("fails with ProtocolError on a known type with a bad shape", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      [`{"type":"system","subtype":"init","session_id":"s"}`, "system"],
      [`{"type":"assistant","message":{"id":"m"}}`, "assistant"],
      [`{"type":"assistant","message":{"id":"m","model":"x","content":"text"}}`, "assistant"],
      [`{"type":"result","subtype":"success","session_id":"s"}`, "result"],
      [`{"type":"result","subtype":"success","is_error":"no","session_id":"s"}`, "result"],
      [`{"type":"stream_event"}`, "stream_event"],
      [`{"type":"stream_event","event":{"index":0}}`, "stream_event"],
      [`{"type":"stream_event","event":"message_stop"}`, "stream_event"],
      [`{"type":"user","message":{"content":7}}`, "user"],
      [`{"type":"control_request","request_id":"r","request":{}}`, "control_request"],
      [`{"type":"control_response","response":{"subtype":"error","request_id":"r"}}`, "control_response"]
    ]
    for (const [line, type] of cases) {
      const error = decodeErr(line)
      expect(error.message, line).toContain(`bad ${type} line`)
      expect(error.line).toBe(line)
    }
  })

  it("keeps at most 500 characters of a bad line", () => {
    const line = "x".repeat(2000)
    expect(decodeErr(line).line).toBe("x".repeat(500))
  })
})

describe("toTurnEvents over captured CLI output", () => {
  it.effect("text turn: Started, the text deltas in order, Finished with usage", () =>
    Effect.gen(function*() {
      const items = yield* turnOf("text")
      expect(items.every(Either.isRight)).toBe(true)
      const events = eventsOnly(items)
      const [init] = find(messagesOf("text"), "SystemInit")
      expect(events[0]).toEqual({ _tag: "Started", model: "claude-sonnet-5-5", sessionId: init!.session_id })
      const texts = events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : []))
      expect(texts).toEqual(["Hello ", "from ", "upstream"])
      expect(texts.join("")).toBe("Hello from upstream")
      expect(events.some((e) => e._tag === "ThinkingDelta")).toBe(false)
      const finished = events.at(-1)
      if (finished?._tag !== "Finished") throw new Error(`expected Finished last, got ${finished?._tag}`)
      expect(finished.reason).toBe("stop")
      expect(finished.usage).toEqual({ inputTokens: 12, outputTokens: 5, cacheReadTokens: 0, cacheCreationTokens: 0 })
      expect(finished.costUsd).toBeGreaterThan(0)
      expect(finished.sessionId).toBe(init!.session_id)
      expect(events.filter((e) => e._tag === "Finished")).toHaveLength(1)
    }))

  it.effect("thinking turn: ThinkingDelta before the text, never mixed into it", () =>
    Effect.gen(function*() {
      const events = eventsOnly(yield* turnOf("thinking")).filter((e) => e._tag !== "Usage")
      expect(events.map((e) => e._tag)).toEqual([
        "Started",
        "ThinkingDelta",
        "ThinkingDelta",
        "TextDelta",
        "TextDelta",
        "Finished"
      ])
      const thinking = events.flatMap((e) => (e._tag === "ThinkingDelta" ? [e.text] : [])).join("")
      const text = events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")
      expect(thinking).toBe("Let me think.")
      expect(text).toBe("Answer.")
    }))

  it.effect("529 turn: fails with UpstreamError status 529 after Started", () =>
    Effect.gen(function*() {
      const items = yield* turnOf("error529")
      expect(eventsOnly(items).map((e) => e._tag)).toEqual(["Started"])
      const last = items.at(-1)
      if (last === undefined || Either.isRight(last)) throw new Error("expected the turn to fail")
      const error = last.left
      if (error._tag !== "UpstreamError") throw new Error(`expected UpstreamError, got ${error._tag}`)
      expect(error.status).toBe(529)
      expect(error.errorType).toBe("overloaded_error")
      expect(error.message).toContain("529 Overloaded")
    }))

  it.effect("the 529 failure is the stream's error channel", () =>
    Effect.gen(function*() {
      const error = yield* Stream.runDrain(toTurnEvents(Stream.fromIterable(messagesOf("error529")))).pipe(Effect.flip)
      expect(error).toMatchObject({ _tag: "UpstreamError", status: 529 })
    }))
})

describe("toTurnEvents over a captured client-tool turn", () => {
  const names = new Map([["mcp__client__get_weather", "get_weather"], ["mcp__client__get_time", "get_time"]])
  const events = (toolNames?: ReadonlyMap<string, string>) =>
    toTurnEvents(Stream.fromIterable(messagesOf("client_tools")), toolNames).pipe(
      Stream.runCollect,
      Effect.map((chunk) => Chunk.toReadonlyArray(chunk).filter((e) => e._tag !== "Usage"))
    )

  it.effect("the client's calls are ToolCall events and a tool_calls finish; the next round is a new answer", () =>
    Effect.gen(function*() {
      const all = yield* events(names)
      // Tags with repeats collapsed (how many argument pieces is the upstream's business).
      expect(all.map((e) => e._tag).filter((tag, i, tags) => i === 0 || tags[i - 1] !== tag)).toEqual([
        "Started",
        "TextDelta",
        "ToolCallStarted",
        "ToolCallDelta",
        "ToolCallStarted",
        "ToolCallDelta",
        "Finished",
        "TextDelta",
        "Finished"
      ])
      const [first, second] = all.filter((e): e is Extract<TurnEvent, { _tag: "Finished" }> => e._tag === "Finished")
      expect(first!.reason).toBe("tool_calls")
      expect(first!.toolCalls?.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([["get_weather", { city: "Paris" }], ["get_time", {}]])
      const started = all.filter((e) => e._tag === "ToolCallStarted")
      expect(started.map((e) => e._tag === "ToolCallStarted" && [e.index, e.name])).toEqual([[0, "get_weather"], [1, "get_time"]])
      const pieces = all.flatMap((e) => (e._tag === "ToolCallDelta" && e.index === 0 ? [e.arguments] : []))
      expect(pieces.join("")).toBe(first!.toolCalls![0]!.arguments)
      // The continuation starts a new answer: no paragraph break carried over, usage of its own round.
      const texts = all.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : []))
      expect(texts).toEqual(["Checking.", "Sunny ", "at noon."])
      expect(second!.reason).toBe("stop")
      expect(first!.usage.outputTokens + second!.usage.outputTokens).toBe(10)
    }))

  it.effect("without the client's names, the calls are the CLI's own business: one answer, one finish", () =>
    Effect.gen(function*() {
      const all = yield* events()
      expect(all.some((e) => e._tag === "ToolCallStarted")).toBe(false)
      expect(all.filter((e) => e._tag === "Finished")).toHaveLength(1)
      expect(all.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")).toBe("Checking.\n\nSunny at noon.")
    }))
})

describe("toTurnEvents on edge cases", () => {
  const init = `{"type":"system","subtype":"init","cwd":"/w","session_id":"s1","tools":[],"model":"claude-sonnet-5-5"}`
  const event = (e: object, parent: string | null = null) =>
    JSON.stringify({ type: "stream_event", event: e, session_id: "s1", parent_tool_use_id: parent })
  const textDelta = (text: string, parent: string | null = null) =>
    event({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text } }, parent)
  const start = event({ type: "message_start", message: { id: "m", model: "claude-sonnet-5-5" } })
  const result = (fields: object) =>
    JSON.stringify({ type: "result", subtype: "success", is_error: false, session_id: "s1", ...fields })
  const run = (lines: ReadonlyArray<string>) =>
    toTurnEvents(Stream.fromIterable(lines.map(decodeOk))).pipe(Stream.either, Stream.runCollect, Effect.map(Chunk.toReadonlyArray))

  it.effect("ignores subagent deltas and empty text, and separates a later API call's text", () =>
    Effect.gen(function*() {
      const events = eventsOnly(yield* run([
        init,
        start,
        textDelta("first"),
        textDelta("from a subagent", "toolu_1"),
        textDelta(""),
        start,
        textDelta("second"),
        result({ stop_reason: "end_turn" })
      ]))
      expect(events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : []))).toEqual(["first", "\n\nsecond"])
    }))

  it.effect("takes the finish reason from the last message_delta when the result has none", () =>
    Effect.gen(function*() {
      const events = eventsOnly(yield* run([
        init,
        event({ type: "message_delta", delta: { stop_reason: "max_tokens", stop_sequence: null } }),
        result({})
      ]))
      expect(events.at(-1)).toMatchObject({ _tag: "Finished", reason: "length", costUsd: undefined })
    }))

  it.effect("turns the CLI's own error subtypes into TurnFailed", () =>
    Effect.gen(function*() {
      const items = yield* run([
        init,
        JSON.stringify({
          type: "result",
          subtype: "error_max_turns",
          is_error: true,
          session_id: "s1",
          terminal_reason: "max_turns",
          errors: ["Reached maximum number of turns (2)"]
        })
      ])
      const last = items.at(-1)
      if (last === undefined || Either.isRight(last)) throw new Error("expected the turn to fail")
      expect(last.left).toMatchObject({
        _tag: "TurnFailed",
        subtype: "error_max_turns",
        message: "Reached maximum number of turns (2)"
      })
    }))

  it("maps stop reasons to OpenAI finish reasons", () => {
    expect(finishReason("end_turn")).toBe("stop")
    expect(finishReason("stop_sequence")).toBe("stop")
    expect(finishReason("max_tokens")).toBe("length")
    expect(finishReason("model_context_window_exceeded")).toBe("length")
    expect(finishReason("refusal")).toBe("content_filter")
    expect(finishReason(null)).toBe("stop")
    expect(finishReason(undefined)).toBe("stop")
  })
})

describe("turnEventPull (how a request reads a turn) gives what toTurnEvents gives", () => {
  const names = new Map([["mcp__client__get_weather", "get_weather"], ["mcp__client__get_time", "get_time"]])
  /** The pull's events, a failure kept as the final Left; the messages arrive `size` at a time. */
  const pulled = (messages: ReadonlyArray<CliMessage>, size: number, toolNames?: ReadonlyMap<string, string>) =>
    Effect.gen(function*() {
      let at = 0
      const source = Effect.suspend(() => {
        if (at >= messages.length) return Effect.fail(Option.none())
        const chunk = Chunk.fromIterable(messages.slice(at, at + size))
        at += size
        return Effect.succeed(chunk)
      })
      const pull = turnEventPull(source, toolNames)
      const out: Array<Either.Either<TurnEvent, unknown>> = []
      for (;;) {
        const next = yield* Effect.either(pull)
        if (Either.isRight(next)) {
          for (const event of next.right) out.push(Either.right(event))
          continue
        }
        if (Option.isSome(next.left)) out.push(Either.left(next.left.value))
        return out
      }
    })
  const streamed = (messages: ReadonlyArray<CliMessage>, toolNames?: ReadonlyMap<string, string>) =>
    toTurnEvents(Stream.fromIterable(messages), toolNames).pipe(Stream.either, Stream.runCollect, Effect.map(Chunk.toReadonlyArray))

  for (const name of ["text", "thinking", "error529", "client_tools"] as const) {
    it.effect(`${name}, one message or a burst at a time`, () =>
      Effect.gen(function*() {
        const messages = messagesOf(name)
        const toolNames = name === "client_tools" ? names : undefined
        const expected = yield* streamed(messages, toolNames)
        expect(expected.length).toBeGreaterThan(1)
        for (const size of [1, 3, messages.length]) expect(yield* pulled(messages, size, toolNames)).toEqual(expected)
      }))
  }

  it.effect("ends after the turn's end, whatever follows it in the same burst", () =>
    Effect.gen(function*() {
      const text = messagesOf("text")
      const events = yield* pulled([...text, ...text], text.length * 2)
      expect(events.filter((e) => Either.isRight(e) && e.right._tag === "Finished")).toHaveLength(1)
      expect(events).toEqual(yield* streamed(text))
    }))
})
