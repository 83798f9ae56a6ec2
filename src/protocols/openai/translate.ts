import { Either, Schema } from "effect"
import { InvalidRequest } from "../../domain/errors.js"
import { decodeBody, decodeOrFail } from "../../http/request.js"
import { type HistoryMessage, historyMessage, ImageMediaType, type InputBlock, type ToolResult, type TurnRequest } from "../../domain/Turn.js"
import { AssistantMessage, AssistantToolCall, ChatRequest, MessageRole, SystemMessage, ToolMessage, UserMessage, UserPart } from "./Schema.js"
import { checkResponseSchema, decodeTools } from "./tools.js"
import { assistantText, FOOTER, HEADER_TOOLS, HEADER_USER, toolText, USER_CLOSE, USER_OPEN } from "../../domain/Transcript.js"

/** OpenAI chat request → TurnRequest. Every rejection names the field it is about. */

/**
 * Texts the CLI gets in its argv (system prompt, JSON schema) stay below Linux's limit for one
 * argument (128 KiB, else `spawn E2BIG`), and may not hold NUL (no argv string can).
 */
export const MAX_ARG_BYTES = 100_000

/** A system prompt the CLI can be started with, else a 400 naming `param`. */
export const checkSystemPrompt = (text: string, param: string): Either.Either<string, InvalidRequest> =>
  text.includes("\u0000")
    ? Either.left(invalid(`Invalid value for '${param}': the system prompt must not contain NUL characters.`, param))
    : Buffer.byteLength(text) > MAX_ARG_BYTES
    ? Either.left(invalid(
      `Invalid value for '${param}': the system prompt is limited to ${MAX_ARG_BYTES} bytes (all system and developer messages together).`,
      param,
      "system_prompt_too_large"
    ))
    : Either.right(text)

/** Largest decoded image accepted inline (Anthropic's own per-image limit). */
export const MAX_IMAGE_BYTES = 5 * 1024 * 1024

const invalid = (message: string, param: string | null, code: string | null = "invalid_value") =>
  new InvalidRequest({ message, param, code })

export const decodeChatRequest = (body: unknown) => decodeBody(ChatRequest, body)

type Message =
  | typeof SystemMessage.Type
  | typeof UserMessage.Type
  | typeof AssistantMessage.Type
  | typeof ToolMessage.Type

// Built once: a schema made per call is compiled into a parser per call (parsers are cached by schema).
const RoleOnly = Schema.Struct({ role: MessageRole })

const decodeMessage = (raw: unknown, index: number): Either.Either<Message, InvalidRequest> => {
  const prefix = `messages[${index}]`
  return Either.flatMap(decodeOrFail(RoleOnly, raw, prefix), ({ role }): Either.Either<Message, InvalidRequest> => {
    switch (role) {
      case "system":
      case "developer":
        return decodeOrFail(SystemMessage, raw, prefix)
      case "user":
        return decodeOrFail(UserMessage, raw, prefix)
      case "assistant":
        return decodeOrFail(AssistantMessage, raw, prefix)
      case "tool":
        return decodeOrFail(ToolMessage, raw, prefix)
    }
  })
}

const textOf = (content: string | ReadonlyArray<{ readonly text?: string | null | undefined; readonly refusal?: string | null | undefined }> | null | undefined) =>
  content == null
    ? ""
    : typeof content === "string"
    ? content
    : content.map((part) => part.text ?? part.refusal ?? "").join("")

const DATA_URL = /^data:([^;,]+);base64,(.*)$/s

/** An image given by reference (http(s) URL, file URL or path), loaded by the ImageFetcher. */
export interface ImageRef {
  readonly type: "image_ref"
  readonly url: string
  readonly param: string
}

export type PendingBlock = InputBlock | ImageRef

/** A TurnRequest whose input may still hold image references. */
export interface PendingTurn extends Omit<TurnRequest, "input"> {
  readonly input: ReadonlyArray<PendingBlock>
}

const imageBlock = (url: string, param: string): Either.Either<PendingBlock, InvalidRequest> => {
  const match = DATA_URL.exec(url)
  if (!match) {
    if (url.startsWith("data:")) {
      return Either.left(invalid(
        `Unsupported image URL at '${param}': a data URL must be data:image/<type>;base64,<data>.`,
        param,
        "unsupported_image_url"
      ))
    }
    return Either.right({ type: "image_ref", url, param })
  }
  const mediaType = match[1]!.toLowerCase()
  const data = match[2]!
  if (!Schema.is(ImageMediaType)(mediaType)) {
    return Either.left(invalid(
      `Unsupported image type '${mediaType}' at '${param}': use image/png, image/jpeg, image/gif or image/webp.`,
      param,
      "unsupported_image_type"
    ))
  }
  if (data.length === 0 || data.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(data)) {
    return Either.left(invalid(`Invalid base64 image data at '${param}'.`, param))
  }
  if (Math.floor(data.length * 3 / 4) > MAX_IMAGE_BYTES) {
    return Either.left(invalid(`Image at '${param}' is larger than ${MAX_IMAGE_BYTES} bytes.`, param, "image_too_large"))
  }
  return Either.right({ type: "image", source: { type: "base64", media_type: mediaType, data } })
}

const userBlocks = (
  content: string | ReadonlyArray<unknown>,
  index: number
): Either.Either<Array<PendingBlock>, InvalidRequest> => {
  if (typeof content === "string") return Either.right([{ type: "text", text: content }])
  return Either.all(content.map((raw, i) => {
    const prefix = `messages[${index}].content[${i}]`
    const type = typeof raw === "object" && raw !== null && "type" in raw ? raw.type : undefined
    if (type !== "text" && type !== "image_url") {
      return Either.left(invalid(
        `Unsupported content part type ${typeof type === "string" ? `'${type}'` : JSON.stringify(type) ?? "(none)"} at '${prefix}.type': supported types are 'text' and 'image_url'.`,
        `${prefix}.type`,
        "unsupported_content_type"
      ))
    }
    return Either.flatMap(decodeOrFail(UserPart, raw, prefix), (part): Either.Either<PendingBlock, InvalidRequest> =>
      part.type === "text"
        ? Either.right({ type: "text", text: part.text })
        : imageBlock(part.image_url.url, `${prefix}.image_url.url`))
  }))
}

/** Checks for fields whose meaning the gateway would otherwise silently break. */
const unsupported = (request: ChatRequest, options: TranslateOptions): InvalidRequest | undefined => {
  const reject = (param: string, why: string) => invalid(`'${param}' is not supported: ${why}`, param, "unsupported_parameter")
  if (request.n != null && (!Number.isInteger(request.n) || request.n < 1 || request.n > options.maxChoices)) {
    return invalid(`Invalid value for 'n': expected an integer from 1 to ${options.maxChoices}.`, "n")
  }
  if (request.logprobs === true) return reject("logprobs", "the Claude Code CLI does not report log probabilities")
  if (request.functions != null && request.functions.length > 0) return reject("functions", "it is deprecated; use 'tools'")
  if (request.function_call != null) return reject("function_call", "it is deprecated; use 'tool_choice'")
  const tools = request.tools != null && request.tools.length > 0
  if (tools && request.n != null && request.n > 1) return reject("n", "more than one choice cannot be combined with 'tools'")
  const format = request.response_format?.type
  if (format != null && format !== "text" && format !== "json_object" && format !== "json_schema") {
    return reject("response_format", `type '${format}' is not one of text, json_object, json_schema`)
  }
  if (tools && format != null && format !== "text") return reject("response_format", "JSON output cannot be combined with 'tools'")
  if (request.modalities?.includes("audio")) return reject("modalities", "audio output is not available")
  if (request.audio != null) return reject("audio", "audio output is not available")
  return undefined
}

const EFFORT: Record<string, string> = {
  none: "low",
  minimal: "low",
  low: "low",
  medium: "medium",
  high: "high",
  xhigh: "xhigh",
  max: "max"
}

/** max_tokens / max_completion_tokens, stop and reasoning_effort, validated. */
const limits = (request: ChatRequest) =>
  Either.gen(function*() {
    const tokens = request.max_completion_tokens ?? request.max_tokens
    const tokensParam = request.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens"
    if (tokens != null && (!Number.isInteger(tokens) || tokens < 1)) {
      return yield* Either.left(invalid(`Invalid value for '${tokensParam}': expected a positive integer.`, tokensParam))
    }
    const stop = request.stop == null ? [] : typeof request.stop === "string" ? [request.stop] : request.stop
    if (stop.length > 4) return yield* Either.left(invalid("Invalid value for 'stop': at most 4 sequences.", "stop"))
    if (stop.some((s) => s === "")) return yield* Either.left(invalid("Invalid value for 'stop': sequences must not be empty.", "stop"))
    const effort = request.reasoning_effort == null ? undefined : EFFORT[request.reasoning_effort]
    if (request.reasoning_effort != null && effort === undefined) {
      return yield* Either.left(invalid(
        `Invalid value for 'reasoning_effort': expected one of ${Object.keys(EFFORT).join(", ")}.`,
        "reasoning_effort"
      ))
    }
    // JSON output goes through the CLI's structured output (--json-schema): validated, retried by the CLI.
    const format = request.response_format
    const schemaParam = "response_format.json_schema.schema"
    const jsonSchema = format?.type === "json_schema"
      ? JSON.stringify(yield* checkResponseSchema(format.json_schema?.schema ?? { type: "object" }, schemaParam))
      : format?.type === "json_object"
      ? JSON.stringify({ type: "object" })
      : undefined
    if (jsonSchema !== undefined && Buffer.byteLength(jsonSchema) > MAX_ARG_BYTES) {
      return yield* Either.left(invalid(
        `Invalid value for '${schemaParam}': at most ${MAX_ARG_BYTES} bytes of JSON.`,
        schemaParam,
        "schema_too_large"
      ))
    }
    return { maxOutputTokens: tokens ?? undefined, stop, effort, jsonSchema }
  })

/**
 * Messages → CLI launch and input. System/developer messages become the system prompt; the last
 * user message is the turn's input; earlier turns of a stateless history travel with it as a
 * clearly delimited transcript, roles intact.
 */
export interface TranslateOptions {
  /** Largest `n`: each choice is a CLI run of its own. */
  readonly maxChoices: number
  /** Earlier messages a transcript carries at most (the most recent). */
  readonly maxHistoryMessages: number
  /** Whose conversations the request may continue. */
  readonly owner?: string | undefined
}

const isTextPart = Schema.is(Schema.Struct({ type: Schema.Literal("text"), text: Schema.String }))

/** A message in the form conversations record and match (images stand in as `[image]`). */
const historyOf = (message: Message): HistoryMessage => {
  switch (message.role) {
    case "system":
    case "developer":
      return historyMessage(message.role, textOf(message.content))
    case "user":
      return historyMessage(
        "user",
        typeof message.content === "string"
          ? message.content
          // Parts were checked by userBlocks: text, else an image.
          : message.content.map((part) => (isTextPart(part) ? part.text : "[image]")).join("")
      )
    case "assistant":
      return historyMessage(
        "assistant",
        textOf(message.content),
        (message.tool_calls ?? []).flatMap((raw) =>
          Schema.is(AssistantToolCall)(raw) ? [{ id: raw.id, name: raw.function.name, arguments: raw.function.arguments }] : []
        )
      )
    case "tool":
      return historyMessage("tool", textOf(message.content), [], message.tool_call_id)
  }
}

export const toTurnRequest = (
  request: ChatRequest,
  model: string,
  options: TranslateOptions = { maxChoices: 1, maxHistoryMessages: 200 }
): Either.Either<PendingTurn, InvalidRequest> =>
  Either.gen(function*() {
    const problem = unsupported(request, options)
    if (problem) return yield* Either.left(problem)
    const { effort, jsonSchema, maxOutputTokens, stop } = yield* limits(request)
    const { instruction, tools } = yield* decodeTools(request, decodeOrFail)
    const messages = yield* Either.all(request.messages.map(decodeMessage))
    const last = messages.length - 1
    const final = messages[last]!
    if (final.role !== "user" && final.role !== "tool") {
      return yield* Either.left(invalid(
        `Invalid value for 'messages[${last}].role': the last message must have role 'user' or 'tool' (got '${final.role}').`,
        `messages[${last}].role`
      ))
    }
    const finalUser = final.role === "user"
    // The request's new part: its last user message, or the tool results that end it.
    let newFrom = last
    while (!finalUser && newFrom > 0 && messages[newFrom - 1]!.role === "tool") newFrom--

    const system: Array<string> = []
    const history: Array<PendingBlock> = []
    let text = ""
    const flush = () => {
      if (text !== "") history.push({ type: "text", text })
      text = ""
    }
    // Tool calls of the latest assistant message: each needs its result before the next message.
    let open: { readonly index: number; readonly ids: Set<string> } | undefined
    const results: Array<ToolResult> = []
    const closeOpen = () => {
      if (open === undefined || open.ids.size === 0) return Either.void
      const param = `messages[${open.index}].tool_calls`
      return Either.left(invalid(
        `Invalid value for '${param}': an assistant message with tool_calls must be followed by tool messages answering each of them (missing: ${[...open.ids].join(", ")}).`,
        param
      ))
    }
    // Earlier turns beyond conversation.max_history_messages are left out of the transcript.
    const firstInTranscript = Math.max(0, newFrom - options.maxHistoryMessages)
    for (const [index, message] of messages.entries()) {
      if (index === last && finalUser) break
      const inTranscript = index >= firstInTranscript && index < newFrom
      if (message.role !== "tool") {
        yield* closeOpen()
        open = undefined
        results.length = 0
      }
      switch (message.role) {
        case "system":
        case "developer":
          system.push(textOf(message.content))
          yield* checkSystemPrompt(system.join("\n\n"), `messages[${index}].content`)
          break
        case "user": {
          const blocks = yield* userBlocks(message.content, index)
          if (!inTranscript) break
          // Images stay in place: the message's text around them, the image blocks between.
          text += USER_OPEN
          for (const block of blocks) {
            if (block.type === "text") {
              text += block.text
            } else {
              flush()
              history.push(block)
            }
          }
          text += USER_CLOSE
          break
        }
        case "assistant": {
          const toolCalls = yield* Either.all((message.tool_calls ?? []).map((raw, i) =>
            decodeOrFail(AssistantToolCall, raw, `messages[${index}].tool_calls[${i}]`)))
          if (inTranscript) {
            text += assistantText(textOf(message.content), toolCalls.map((call) => ({ id: call.id, name: call.function.name, arguments: call.function.arguments })))
          }
          if (toolCalls.length > 0) open = { index, ids: new Set(toolCalls.map((call) => call.id)) }
          break
        }
        case "tool": {
          const param = `messages[${index}].tool_call_id`
          if (open === undefined || !open.ids.has(message.tool_call_id)) {
            return yield* Either.left(invalid(
              `Invalid value for '${param}': '${message.tool_call_id}' does not answer an unanswered tool call of the preceding assistant message.`,
              param,
              "unknown_tool_call_id"
            ))
          }
          open.ids.delete(message.tool_call_id)
          const content = textOf(message.content)
          results.push({ id: message.tool_call_id, content })
          if (inTranscript) text += toolText(message.tool_call_id, content)
          break
        }
      }
    }
    yield* closeOpen()
    const input: Array<PendingBlock> = finalUser
      ? yield* userBlocks(final.content, last)
      : [{
        type: "text",
        text: `<tool_results>\n${
          results.map((r) => `<tool_result tool_call_id="${r.id}">\n${r.content}\n</tool_result>\n`).join("")
        }</tool_results>`
      }]
    if (finalUser && !input.some((block) => block.type !== "text" || block.text.trim() !== "")) {
      return yield* Either.left(invalid(
        `Invalid value for 'messages[${last}].content': the last user message is empty.`,
        `messages[${last}].content`
      ))
    }
    if (history.length > 0 || text !== "") {
      history.unshift({ type: "text", text: finalUser ? HEADER_USER : HEADER_TOOLS })
      text += FOOTER
      flush()
    }
    const normalized = messages.map(historyOf)
    return {
      launch: {
        model,
        systemPrompt: system.length > 0 ? system.join("\n\n") : undefined,
        effort,
        maxOutputTokens,
        jsonSchema,
        ...(tools.length > 0 ? { tools, toolInstruction: instruction } : {})
      },
      input: [...history, ...input],
      newInputFrom: history.length,
      stop,
      ...(finalUser ? {} : { toolResults: [...results] }),
      conversation: {
        id: request.conversation_id ?? undefined,
        owner: options.owner ?? "",
        history: normalized.slice(0, newFrom),
        added: normalized.slice(newFrom)
      }
    }
  })
