import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import type { InputBlock } from "../../src/domain/Turn.js"
import { InvalidRequest } from "../../src/domain/errors.js"
import { decodeChatRequest, MAX_IMAGE_BYTES, type PendingTurn, toTurnRequest } from "../../src/protocols/openai/translate.js"

const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
const pngUrl = `data:image/png;base64,${PNG}`

const HISTORY_HEADER =
  "<conversation_history>\nThe conversation so far, oldest first. Continue it: answer the final user message that follows the history.\n"

const translate = (body: unknown, model = "claude-sonnet-5-5"): Either.Either<PendingTurn, InvalidRequest> =>
  Either.flatMap(decodeChatRequest(body), (request) => toTurnRequest(request, model))

const ok = (body: unknown, model?: string): PendingTurn => {
  const result = translate(body, model)
  if (Either.isLeft(result)) throw new Error(`expected success, got ${result.left.message} (param ${result.left.param})`)
  return result.right
}

const fail = (body: unknown): InvalidRequest => {
  const result = translate(body)
  if (Either.isRight(result)) throw new Error(`expected InvalidRequest, got ${JSON.stringify(result.right)}`)
  expect(result.left).toBeInstanceOf(InvalidRequest)
  return result.left
}

const chat = (messages: ReadonlyArray<unknown>, extra: Record<string, unknown> = {}) => ({
  model: "sonnet",
  messages,
  ...extra
})

const user = (content: unknown) => ({ role: "user", content })
const image = (url: string) => ({ type: "image_url", image_url: { url } })
const text = (t: string) => ({ type: "text", text: t })
const pngBlock = (data = PNG): InputBlock => ({ type: "image", source: { type: "base64", media_type: "image/png", data } })

describe("toTurnRequest: prompt and input", () => {
  it("sends a lone user message as the input, with no system prompt", () => {
    const turn = ok(chat([user("hi")]), "claude-opus-5-5")
    expect(turn).toEqual({
      launch: { model: "claude-opus-5-5", systemPrompt: undefined, effort: undefined, maxOutputTokens: undefined },
      input: [{ type: "text", text: "hi" }],
      newInputFrom: 0,
      stop: [],
      conversation: { id: undefined, owner: "", history: [], added: [{ role: "user", content: "hi" }] }
    })
  })

  it("joins system and developer messages with a blank line into the system prompt", () => {
    const turn = ok(chat([
      { role: "system", content: "You are terse." },
      { role: "developer", content: [text("Answer in "), text("French.")] },
      user("hi")
    ]))
    expect(turn.launch.systemPrompt).toBe("You are terse.\n\nAnswer in French.")
    expect(turn.input).toEqual([{ type: "text", text: "hi" }])
  })

  it("keeps the last user message's parts in order, images as base64 blocks", () => {
    const turn = ok(chat([user([text("what is "), image(pngUrl), text("this?"), image(`data:IMAGE/JPEG;base64,${PNG}`)])]))
    expect(turn.input).toEqual([
      { type: "text", text: "what is " },
      pngBlock(),
      { type: "text", text: "this?" },
      { type: "image", source: { type: "base64", media_type: "image/jpeg", data: PNG } }
    ])
  })

  it("accepts every supported image media type", () => {
    for (const mediaType of ["image/png", "image/jpeg", "image/gif", "image/webp"] as const) {
      const turn = ok(chat([user([image(`data:${mediaType};base64,${PNG}`)])]))
      expect(turn.input).toEqual([{ type: "image", source: { type: "base64", media_type: mediaType, data: PNG } }])
    }
  })

  it("sends earlier turns as a delimited transcript with role tags, before the final input", () => {
    const turn = ok(chat([
      { role: "system", content: "sys" },
      user("u1"),
      { role: "assistant", content: "a1" },
      user("u2"),
      { role: "assistant", content: [text("a"), { type: "refusal", refusal: "2" }] },
      user("final")
    ]))
    expect(turn.launch.systemPrompt).toBe("sys")
    expect(turn.input).toEqual([
      { type: "text", text: HISTORY_HEADER },
      {
        type: "text",
        text: [
          `<message role="user">\nu1\n</message>\n`,
          `<message role="assistant">\na1\n</message>\n`,
          `<message role="user">\nu2\n</message>\n`,
          `<message role="assistant">\na2\n</message>\n`,
          `</conversation_history>\n`
        ].join("")
      },
      { type: "text", text: "final" }
    ])
  })

  it("keeps images of earlier turns in place inside the transcript", () => {
    const turn = ok(chat([
      user([text("look: "), image(pngUrl), text(" ok?")]),
      { role: "assistant", content: "a cat" },
      user([image(pngUrl), text("and now?")])
    ]))
    expect(turn.input).toEqual([
      { type: "text", text: HISTORY_HEADER },
      { type: "text", text: `<message role="user">\nlook: ` },
      pngBlock(),
      {
        type: "text",
        text: ` ok?\n</message>\n<message role="assistant">\na cat\n</message>\n</conversation_history>\n`
      },
      pngBlock(),
      { type: "text", text: "and now?" }
    ])
  })

  it("renders an assistant message without content as an empty turn", () => {
    const turn = ok(chat([user("u1"), { role: "assistant", content: null }, user("u2")]))
    expect(turn.input[1]).toEqual({
      type: "text",
      text: `<message role="user">\nu1\n</message>\n<message role="assistant">\n\n</message>\n</conversation_history>\n`
    })
  })

  it("accepts the sampling knobs clients send by default and supported values of checked fields", () => {
    const turn = ok(chat([user("hi")], {
      temperature: 0.2,
      top_p: 1,
      n: 1,
      logprobs: false,
      tools: [],
      response_format: { type: "text" },
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: null
    }))
    expect(turn.input).toEqual([{ type: "text", text: "hi" }])
  })
})

describe("toTurnRequest: images that are refused", () => {
  const at = "messages[0].content[1].image_url.url"

  it("refuses an unsupported media type", () => {
    const error = fail(chat([user([text("x"), image(`data:image/svg+xml;base64,${PNG}`)])]))
    expect(error.param).toBe(at)
    expect(error.code).toBe("unsupported_image_type")
    expect(error.message).toContain("image/svg+xml")
  })

  it("refuses data that is not base64", () => {
    const error = fail(chat([user([text("x"), image("data:image/png;base64,not base64!")])]))
    expect(error.param).toBe(at)
    expect(error.code).toBe("invalid_value")
  })

  it("refuses a data URL that is not base64-encoded", () => {
    const error = fail(chat([user([text("x"), image("data:image/png,rawbytes")])]))
    expect(error.param).toBe(at)
    expect(error.code).toBe("unsupported_image_url")
  })

  it("refuses an image larger than the limit, and accepts one at the limit", () => {
    // floor(len * 3 / 4) is the decoded size the check uses
    const atLimit = "A".repeat(Math.floor(MAX_IMAGE_BYTES / 3) * 4)
    expect(Math.floor(atLimit.length * 3 / 4)).toBeLessThanOrEqual(MAX_IMAGE_BYTES)
    const accepted = ok(chat([user([image(`data:image/png;base64,${atLimit}`)])]))
    expect(accepted.input).toHaveLength(1)
    const error = fail(chat([user([text("x"), image(`data:image/png;base64,${atLimit}AAAA`)])]))
    expect(error.param).toBe(at)
    expect(error.code).toBe("image_too_large")
  })

  it("leaves http(s) URLs and paths as references for the ImageFetcher, naming their part", () => {
    for (const url of ["http://example.com/cat.png", "https://example.com/cat.png", "/srv/images/cat.png"]) {
      const turn = ok(chat([user([text("x"), image(url)])]))
      expect(turn.input).toContainEqual({ type: "image_ref", url, param: at })
    }
  })

  it("names the exact part of an earlier message", () => {
    const error = fail(chat([
      { role: "system", content: "s" },
      user([text("a"), text("b"), image("data:image/png,notbase64")]),
      { role: "assistant", content: "ok" },
      user("final")
    ]))
    expect(error.param).toBe("messages[1].content[2].image_url.url")
  })

  it("refuses content parts other than text and image_url", () => {
    const error = fail(chat([user([text("x"), { type: "input_audio", input_audio: { data: "", format: "wav" } }])]))
    expect(error.param).toBe("messages[0].content[1].type")
    expect(error.code).toBe("unsupported_content_type")
  })

  it("refuses an image_url part without a url", () => {
    const error = fail(chat([user([{ type: "image_url", image_url: {} }])]))
    expect(error.param).toBe("messages[0].content[0].image_url.url")
    expect(error.code).toBe("missing_required_parameter")
  })
})

describe("toTurnRequest: unsupported request fields", () => {
  const cases: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
    ["logprobs", { logprobs: true }],
    ["functions", { functions: [{ name: "f" }] }],
    ["function_call", { function_call: "auto" }],
    ["response_format", { response_format: { type: "xml" } }],
    ["modalities", { modalities: ["text", "audio"] }],
    ["audio", { audio: { voice: "alloy", format: "mp3" } }]
  ]
  it.each(cases)("refuses %s with the field as param", (param, extra) => {
    const error = fail(chat([user("hi")], extra))
    expect(error.param).toBe(param)
    expect(error.code).toBe("unsupported_parameter")
    expect(error.message).toContain(`'${param}'`)
  })
})

describe("toTurnRequest: message roles", () => {
  it("refuses an assistant message last, naming its role", () => {
    const error = fail(chat([user("hi"), { role: "assistant", content: "hello" }]))
    expect(error.param).toBe("messages[1].role")
    expect(error.message).toContain("'assistant'")
  })

  it("refuses a system message last", () => {
    const error = fail(chat([{ role: "system", content: "s" }]))
    expect(error.param).toBe("messages[0].role")
  })

  it("refuses an unknown role and a missing role", () => {
    const unknown = fail(chat([{ role: "robot", content: "beep" }]))
    expect(unknown.param).toBe("messages[0].role")
    const missing = fail(chat([user("a"), { content: "no role" }]))
    expect(missing.param).toBe("messages[1].role")
    expect(missing.code).toBe("missing_required_parameter")
  })

  it("refuses user content that is neither a string nor parts", () => {
    const error = fail(chat([user(42)]))
    expect(error.param).toBe("messages[0].content")
  })
})

describe("decodeChatRequest", () => {
  it("names a missing model and empty messages", () => {
    const model = fail({ messages: [user("hi")] })
    expect(model.param).toBe("model")
    expect(model.code).toBe("missing_required_parameter")
    expect(model.message).toBe("Missing required parameter: 'model'.")
    const messages = fail({ model: "sonnet", messages: [] })
    expect(messages.param).toBe("messages")
    expect(messages.code).toBe("invalid_value")
  })

  it("names a field of the wrong type", () => {
    const error = fail(chat([user("hi")], { temperature: "hot" }))
    expect(error.param).toBe("temperature")
    expect(error.message).toContain("'temperature'")
  })

  it("reports a body that is not an object without a param", () => {
    const error = fail("not an object")
    expect(error.param).toBeNull()
    expect(error.message).toContain("JSON object")
  })
})

describe("toTurnRequest: response_format", () => {
  it("launches the CLI with the schema for json_schema, and a plain object schema for json_object", () => {
    const schema = { type: "object", properties: { a: { type: "string" } } }
    const withSchema = ok({ model: "m", messages: [{ role: "user", content: "x" }], response_format: { type: "json_schema", json_schema: { name: "n", schema } } })
    expect(withSchema.launch.jsonSchema).toBe(JSON.stringify(schema))
    const object = ok({ model: "m", messages: [{ role: "user", content: "x" }], response_format: { type: "json_object" } })
    expect(object.launch.jsonSchema).toBe(JSON.stringify({ type: "object" }))
    const text = ok({ model: "m", messages: [{ role: "user", content: "x" }], response_format: { type: "text" } })
    expect(text.launch.jsonSchema).toBeUndefined()
  })
})

describe("toTurnRequest: n", () => {
  const body = (n: number) => ({ model: "m", n, messages: [{ role: "user", content: "x" }] })
  it("accepts n up to maxChoices and refuses more, naming n", () => {
    expect(Either.isRight(toTurnRequest(Either.getOrThrow(decodeChatRequest(body(3))), "m", { maxChoices: 3, maxHistoryMessages: 200 }))).toBe(true)
    const refused = toTurnRequest(Either.getOrThrow(decodeChatRequest(body(4))), "m", { maxChoices: 3, maxHistoryMessages: 200 })
    expect(Either.isLeft(refused) && refused.left.param).toBe("n")
    const zero = toTurnRequest(Either.getOrThrow(decodeChatRequest(body(0))), "m", { maxChoices: 3, maxHistoryMessages: 200 })
    expect(Either.isLeft(zero) && zero.left.message).toContain("from 1 to 3")
  })
})

describe("toTurnRequest: client tools", () => {
  const fn = (name: string, parameters?: unknown) => ({ type: "function", function: { name, ...(parameters ? { parameters } : {}) } })
  const toolCall = (id: string, name = "f") => ({ id, type: "function", function: { name, arguments: "{\"a\":1}" } })

  it("offers the functions as MCP tools, with an object schema by default", () => {
    const turn = ok(chat([user("hi")], { tools: [fn("f"), fn("g", { type: "object", properties: { x: { type: "string" } } })] }))
    expect(turn.launch.tools).toEqual([
      { name: "f", clientName: "f", description: undefined, parameters: { type: "object", properties: {} } },
      { name: "g", clientName: "g", description: undefined, parameters: { type: "object", properties: { x: { type: "string" } } } }
    ])
    expect(turn.launch.toolInstruction).toBeUndefined()
  })

  it("maps names MCP cannot carry to short unique ones", () => {
    const long = "a".repeat(60)
    const turn = ok(chat([user("hi")], { tools: [fn(long), fn("x__y")] }))
    const [first, second] = turn.launch.tools!
    expect(first!.clientName).toBe(long)
    expect(`mcp__client__${first!.name}`.length).toBeLessThanOrEqual(64)
    expect(second!.name).not.toContain("__")
  })

  it("accepts a schema that declares another draft", () => {
    const parameters = { $schema: "https://json-schema.org/draft/2020-12/schema", type: "object", properties: {} }
    expect(ok(chat([user("hi")], { tools: [fn("f", parameters)] })).launch.tools).toHaveLength(1)
  })

  it("tool_choice none offers nothing; required and parallel_tool_calls=false are instructions", () => {
    expect(ok(chat([user("hi")], { tools: [fn("f")], tool_choice: "none" })).launch.tools).toBeUndefined()
    const required = ok(chat([user("hi")], { tools: [fn("f")], tool_choice: "required", parallel_tool_calls: false }))
    expect(required.launch.toolInstruction).toContain("must call at least one")
    expect(required.launch.toolInstruction).toContain("at most one tool")
  })

  it("refuses what it cannot honour with tools: n > 1, JSON output, tool_choice without tools", () => {
    expect(fail(chat([user("hi")], { tools: [fn("f")], n: 2 })).param).toBe("n")
    expect(fail(chat([user("hi")], { tools: [fn("f")], response_format: { type: "json_object" } })).param).toBe("response_format")
    expect(fail(chat([user("hi")], { tool_choice: "required" })).param).toBe("tool_choice")
    expect(fail(chat([user("hi")], { tools: [fn("f"), fn("f")] })).param).toBe("tools[1].function.name")
  })

  it("puts earlier calls and results into the transcript", () => {
    const turn = ok(chat([
      user("a"),
      { role: "assistant", content: null, tool_calls: [toolCall("call_1")] },
      { role: "tool", tool_call_id: "call_1", content: "42" },
      { role: "assistant", content: "done" },
      user("b")
    ]))
    const history = (turn.input[0] as { text: string }).text + (turn.input[1] as { text: string }).text
    expect(history).toContain(`<tool_call id="call_1" name="f">{"a":1}</tool_call>`)
    expect(history).toContain(`<message role="tool" tool_call_id="call_1">\n42\n</message>`)
    expect(turn.toolResults).toBeUndefined()
  })

  it("ends with tool results: they are the turn's results, the history its fallback input", () => {
    const turn = ok(chat([
      user("a"),
      { role: "assistant", content: "let me see", tool_calls: [toolCall("call_1"), toolCall("call_2")] },
      { role: "tool", tool_call_id: "call_1", content: "one" },
      { role: "tool", tool_call_id: "call_2", content: [{ type: "text", text: "two" }] }
    ], { tools: [fn("f")] }))
    expect(turn.toolResults).toEqual([{ id: "call_1", content: "one" }, { id: "call_2", content: "two" }])
    expect((turn.input[0] as { text: string }).text).toContain("It ends with your tool calls; their results follow")
    // A session that holds the history gets the results alone.
    const latest = turn.input.slice(turn.newInputFrom)
    expect(latest).toEqual([{
      type: "text",
      text: `<tool_results>\n<tool_result tool_call_id="call_1">\none\n</tool_result>\n<tool_result tool_call_id="call_2">\ntwo\n</tool_result>\n</tool_results>`
    }])
    expect(turn.conversation?.added.map((m) => m.role)).toEqual(["tool", "tool"])
    expect(turn.conversation?.history.map((m) => m.role)).toEqual(["user", "assistant"])
  })

  it("refuses unanswered calls and results that answer no call", () => {
    const calls = fail(chat([user("a"), { role: "assistant", content: null, tool_calls: [toolCall("call_1")] }, user("b")]))
    expect(calls.param).toBe("messages[1].tool_calls")
    const stray = fail(chat([user("a"), { role: "tool", tool_call_id: "call_1", content: "42" }, user("b")]))
    expect(stray.param).toBe("messages[1].tool_call_id")
    expect(stray.code).toBe("unknown_tool_call_id")
    const missing = fail(chat([
      user("a"),
      { role: "assistant", content: null, tool_calls: [toolCall("call_1"), toolCall("call_2")] },
      { role: "tool", tool_call_id: "call_1", content: "42" }
    ]))
    expect(missing.message).toContain("call_2")
  })
})
