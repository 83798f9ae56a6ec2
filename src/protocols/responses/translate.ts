import { Either, Schema } from "effect"
import { InvalidRequest } from "../../domain/errors.js"
import type { HistoryMessage } from "../../domain/Turn.js"
import { decodeBody, decodeOrFail } from "../../http/request.js"
import type { ChatRequest } from "../openai/Schema.js"
import { type PendingTurn, toTurnRequest, type TranslateOptions } from "../openai/translate.js"
import {
  FunctionCallItem,
  FunctionCallOutputItem,
  FunctionTool,
  type Ignored,
  InputImage,
  MessageItem,
  ResponsesRequest,
  ToolChoice
} from "./Schema.js"

/**
 * Responses request → TurnRequest. The items become the chat dialect's messages (an assistant
 * message and the function calls that follow it are one assistant message with tool calls; a
 * function_call_output is a tool message), and the chat translation does the rest: system prompt,
 * images, client tools, tool results for a parked turn, transcript and conversation matching. A
 * rejection from it names the chat field, so it is renamed to the Responses field it came from.
 */

export const decodeResponsesRequest = (body: unknown) => decodeBody(ResponsesRequest, body)

const invalid = (message: string, param: string | null, code: string | null = "invalid_value") =>
  new InvalidRequest({ message, param, code })

const unsupported = (param: string, why: string) => invalid(`'${param}' is not supported: ${why}`, param, "unsupported_parameter")

/** Where a chat message came from: an input item (and the items of its tool calls), or a request field. */
type Origin =
  | { readonly kind: "item"; readonly item: number; readonly calls: Array<number>; readonly output: boolean }
  | { readonly kind: "field"; readonly param: string }

interface Converted {
  readonly messages: Array<unknown>
  readonly origins: Array<Origin>
}

// Built once: a schema made per call is compiled into a parser per call (parsers are cached by schema).
const TextPart = Schema.Struct({ text: Schema.String })
const RefusalPart = Schema.Struct({ refusal: Schema.String })

const typeOf = (raw: unknown): string | undefined =>
  typeof raw === "object" && raw !== null && "type" in raw && typeof raw.type === "string" ? raw.type : undefined

const hasRole = (raw: unknown) => typeof raw === "object" && raw !== null && "role" in raw

/** The text of content parts that can only be text (system/developer messages, assistant messages, tool outputs). */
const textParts = (
  parts: string | ReadonlyArray<unknown>,
  param: string,
  allowed: ReadonlyArray<string>
): Either.Either<string, InvalidRequest> => {
  if (typeof parts === "string") return Either.right(parts)
  return Either.map(
    Either.all(parts.map((raw, k) => {
      const type = typeOf(raw)
      if (type === undefined || !allowed.includes(type)) {
        return Either.left(invalid(
          `Unsupported content part type '${type ?? "none"}' at '${param}[${k}].type': expected ${allowed.join(" or ")}.`,
          `${param}[${k}].type`,
          "unsupported_content_type"
        ))
      }
      return type === "refusal"
        ? Either.map(decodeOrFail(RefusalPart, raw, `${param}[${k}]`), (part) => part.refusal)
        : Either.map(decodeOrFail(TextPart, raw, `${param}[${k}]`), (part) => part.text)
    })),
    (texts) => texts.join("")
  )
}

/** A user message's parts in the chat shape (text and image_url parts, one for one). */
const userParts = (parts: ReadonlyArray<unknown>, param: string) =>
  Either.all(parts.map((raw, k): Either.Either<unknown, InvalidRequest> => {
    const at = `${param}[${k}]`
    switch (typeOf(raw)) {
      case "input_text":
      case "output_text":
        return Either.map(decodeOrFail(TextPart, raw, at), ({ text }) => ({ type: "text", text }))
      case "input_image":
        return Either.flatMap(decodeOrFail(InputImage, raw, at), (image) => {
          if (image.file_id != null) {
            return Either.left(unsupported(`${at}.file_id`, "the gateway has no Files API; give the image as 'image_url' (a URL or data URL)"))
          }
          if (image.image_url == null) return Either.left(invalid(`Missing required parameter: '${at}.image_url'.`, `${at}.image_url`, "missing_required_parameter"))
          return Either.right({ type: "image_url", image_url: { url: image.image_url } })
        })
      case "input_file":
        return Either.left(unsupported(`${at}`, "file inputs are not available; send text or images"))
      default:
        return Either.left(invalid(
          `Unsupported content part type '${typeOf(raw) ?? "none"}' at '${at}.type': expected input_text or input_image.`,
          `${at}.type`,
          "unsupported_content_type"
        ))
    }
  }))

const messagesOfItems = (input: ResponsesRequest["input"], into: Converted): Either.Either<void, InvalidRequest> =>
  Either.gen(function*() {
    if (typeof input === "string") {
      into.messages.push({ role: "user", content: input })
      into.origins.push({ kind: "field", param: "input" })
      return
    }
    // The assistant message being assembled (its text and the function calls that follow it).
    let assistant: { content: string; calls: Array<{ id: string; type: "function"; function: { name: string; arguments: string } }>; origin: Origin & { kind: "item" } } | undefined
    const flush = () => {
      if (assistant === undefined) return
      into.messages.push({
        role: "assistant",
        content: assistant.content === "" ? null : assistant.content,
        ...(assistant.calls.length > 0 ? { tool_calls: assistant.calls } : {})
      })
      into.origins.push(assistant.origin)
      assistant = undefined
    }
    for (const [i, raw] of input.entries()) {
      const at = `input[${i}]`
      const type = typeOf(raw)
      if (type === "message" || (type === undefined && hasRole(raw))) {
        const message = yield* decodeOrFail(MessageItem, raw, at)
        if (message.role === "assistant") {
          const text = yield* textParts(message.content, `${at}.content`, ["output_text", "refusal", "input_text"])
          if (assistant !== undefined && assistant.calls.length > 0) flush()
          if (assistant === undefined) assistant = { content: text, calls: [], origin: { kind: "item", item: i, calls: [], output: false } }
          else assistant.content += text
          continue
        }
        flush()
        if (message.role === "user") {
          into.messages.push({
            role: "user",
            content: typeof message.content === "string" ? message.content : yield* userParts(message.content, `${at}.content`)
          })
        } else {
          into.messages.push({ role: message.role, content: yield* textParts(message.content, `${at}.content`, ["input_text"]) })
        }
        into.origins.push({ kind: "item", item: i, calls: [], output: false })
        continue
      }
      switch (type) {
        case "function_call": {
          const call = yield* decodeOrFail(FunctionCallItem, raw, at)
          if (assistant === undefined) assistant = { content: "", calls: [], origin: { kind: "item", item: i, calls: [], output: false } }
          assistant.calls.push({ id: call.call_id, type: "function", function: { name: call.name, arguments: call.arguments } })
          assistant.origin.calls.push(i)
          break
        }
        case "function_call_output": {
          flush()
          const output = yield* decodeOrFail(FunctionCallOutputItem, raw, at)
          into.messages.push({
            role: "tool",
            tool_call_id: output.call_id,
            content: yield* textParts(output.output, `${at}.output`, ["input_text", "output_text"])
          })
          into.origins.push({ kind: "item", item: i, calls: [], output: true })
          break
        }
        case "reasoning":
          // The model's own reasoning from an earlier answer: the CLI session keeps it (or the transcript does without).
          break
        default:
          return yield* Either.left(invalid(
            `Unsupported input item type '${type ?? "none"}' at '${at}.type': expected message, function_call, function_call_output or reasoning.`,
            `${at}.type`,
            "unsupported_input_item"
          ))
      }
    }
    flush()
  })

/** A chat-dialect field path as the Responses field it came from. */
const renameParam = (param: string, origins: ReadonlyArray<Origin>, toolIndex: ReadonlyArray<number>): string => {
  const message = /^messages\[(\d+)\](.*)$/.exec(param)
  if (message) {
    const origin = origins[Number(message[1])]
    const rest = message[2] ?? ""
    if (origin === undefined) return param
    if (origin.kind === "field") return origin.param
    const item = `input[${origin.item}]`
    const call = /^\.tool_calls\[(\d+)\](.*)$/.exec(rest)
    if (call) {
      const callItem = origin.calls[Number(call[1])]
      const tail = (call[2] ?? "").replace(/^\.function\./, ".").replace(/^\.id$/, ".call_id")
      return callItem === undefined ? item : `input[${callItem}]${tail}`
    }
    // The calls as a whole (some unanswered): the first function_call item (the message names the ids).
    if (rest === ".tool_calls") return `input[${origin.calls[0] ?? origin.item}]`
    if (rest === ".tool_call_id") return `${item}.call_id`
    if (rest.startsWith(".content")) {
      return origin.output ? `${item}.output${rest.slice(".content".length)}` : `${item}${rest.replace(/\.image_url\.url$/, ".image_url")}`
    }
    return `${item}${rest}`
  }
  const tool = /^tools\[(\d+)\](?:\.function)?(.*)$/.exec(param)
  if (tool) return `tools[${toolIndex[Number(tool[1])] ?? tool[1]}]${tool[2] ?? ""}`
  const renamed: Record<string, string> = {
    "tool_choice.function.name": "tool_choice.name",
    response_format: "text.format",
    max_completion_tokens: "max_output_tokens",
    max_tokens: "max_output_tokens",
    reasoning_effort: "reasoning.effort"
  }
  return renamed[param] ?? param
}

const renameError = (error: InvalidRequest, origins: ReadonlyArray<Origin>, toolIndex: ReadonlyArray<number>): InvalidRequest => {
  if (error.param === null) return error
  const param = renameParam(error.param, origins, toolIndex)
  return new InvalidRequest({ message: error.message.split(`'${error.param}`).join(`'${param}`), param, code: error.code })
}

/** What the request continues, found by the handler from `previous_response_id` or `conversation`. */
export interface Continuation {
  /** The conversation whose CLI session goes on (absent: a new one, or one found by its history). */
  readonly conversationId: string | undefined
  /** Recorded messages the client did not resend: the previous response's calls, or the history of a branch. */
  readonly prior: ReadonlyArray<HistoryMessage>
}

export interface Translated {
  readonly turn: PendingTurn
  /** Tools and include values left out (they do not fail the request). */
  readonly ignored: ReadonlyArray<Ignored>
  /** The function tools as the response object echoes them. */
  readonly tools: ReadonlyArray<typeof FunctionTool.Type>
  /** A chat-dialect field path of the translated request (an image to load) as the Responses field. */
  readonly rename: (param: string) => string
}

const priorMessage = (message: HistoryMessage): unknown => {
  switch (message.role) {
    case "assistant":
      return {
        role: "assistant",
        content: message.content,
        ...(message.tool_calls !== undefined && message.tool_calls.length > 0
          ? { tool_calls: message.tool_calls.map((call) => ({ id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } })) }
          : {})
      }
    case "tool":
      return { role: "tool", tool_call_id: message.tool_call_id ?? "", content: message.content ?? "" }
    default:
      return { role: "user", content: message.content ?? "" }
  }
}

export const toTurn = (
  request: ResponsesRequest,
  model: string,
  continuation: Continuation,
  options: TranslateOptions
): Either.Either<Translated, InvalidRequest> =>
  Either.gen(function*() {
    if (request.background === true) return yield* Either.left(unsupported("background", "responses are answered while the request waits (or streams)"))
    if (request.prompt != null) return yield* Either.left(unsupported("prompt", "stored prompt templates are not available; send 'instructions' and 'input'"))
    const ignored: Array<Ignored> = []
    const chatTools: Array<unknown> = []
    const toolIndex: Array<number> = []
    const tools: Array<typeof FunctionTool.Type> = []
    for (const [i, raw] of (request.tools ?? []).entries()) {
      const type = typeOf(raw)
      if (type !== "function") {
        ignored.push({ param: `tools[${i}]`, reason: `tool type '${type ?? "none"}' is not available through the Claude Code CLI` })
        continue
      }
      const tool = yield* decodeOrFail(FunctionTool, raw, `tools[${i}]`)
      tools.push(tool)
      toolIndex.push(i)
      chatTools.push({ type: "function", function: { name: tool.name, description: tool.description, parameters: tool.parameters, strict: tool.strict } })
    }
    for (const [i, value] of (request.include ?? []).entries()) {
      ignored.push({ param: `include[${i}]`, reason: `'${value}' cannot be included by the gateway` })
    }
    if (request.max_tool_calls != null) ignored.push({ param: "max_tool_calls", reason: "the CLI has no limit on tool calls per response" })
    const toolChoice = request.tool_choice == null ? undefined : yield* Either.mapLeft(
      decodeOrFail(ToolChoice, request.tool_choice, "tool_choice"),
      () => unsupported("tool_choice", "only 'none', 'auto', 'required' and {\"type\":\"function\",\"name\":…} can be honoured")
    )
    const format = request.text?.format
    const responseFormat = format == null || format.type === "text"
      ? undefined
      : {
        type: format.type,
        ...(format.type === "json_schema"
          ? { json_schema: { name: format.name, description: format.description ?? undefined, schema: format.schema ?? undefined, strict: format.strict } }
          : {})
      }

    const converted: Converted = { messages: [], origins: [] }
    if (request.instructions != null && request.instructions !== "") {
      converted.messages.push({ role: "system", content: request.instructions })
      converted.origins.push({ kind: "field", param: "instructions" })
    }
    // Calls the client re-sends with their outputs are its own copy of the previous answer: not twice.
    const resent = new Set(
      typeof request.input === "string" ? [] : request.input.flatMap((raw) => Schema.is(FunctionCallItem)(raw) ? [raw.call_id] : [])
    )
    for (const message of continuation.prior) {
      if (message.role === "system" || message.role === "developer") continue
      if ((message.tool_calls ?? []).some((call) => resent.has(call.id))) continue
      converted.messages.push(priorMessage(message))
      converted.origins.push({ kind: "field", param: "previous_response_id" })
    }
    yield* messagesOfItems(request.input, converted)
    if (converted.messages.length === 0 || converted.origins.every((o) => o.kind === "field" && o.param !== "input")) {
      return yield* Either.left(invalid("Invalid value for 'input': it has no message or function_call_output to answer.", "input"))
    }
    const chat: ChatRequest = {
      model,
      messages: converted.messages,
      stream: request.stream ?? undefined,
      tools: chatTools,
      ...(toolChoice === undefined
        ? {}
        : { tool_choice: typeof toolChoice === "string" ? toolChoice : { type: "function", function: { name: toolChoice.name } } }),
      parallel_tool_calls: request.parallel_tool_calls ?? undefined,
      max_completion_tokens: request.max_output_tokens ?? undefined,
      reasoning_effort: request.reasoning?.effort ?? undefined,
      ...(responseFormat === undefined ? {} : { response_format: responseFormat }),
      conversation_id: continuation.conversationId
    }
    const turn = yield* Either.mapLeft(toTurnRequest(chat, model, options), (error) => renameError(error, converted.origins, toolIndex))
    return { turn, ignored, tools, rename: (param: string) => renameParam(param, converted.origins, toolIndex) }
  })
