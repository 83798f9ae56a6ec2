import { Either } from "effect"
import { InvalidRequest } from "../../domain/errors.js"
import { decodeBody, decodeOrFail } from "../../http/request.js"
import type { ChatRequest } from "../openai/Schema.js"
import { type PendingTurn, toTurnRequest, type TranslateOptions } from "../openai/translate.js"
import {
  type CountTokensRequest,
  CountTokensRequest as CountTokensSchema,
  CustomTool,
  ImageBlock,
  Message,
  MessagesRequest,
  TextBlock,
  Thinking,
  ToolChoice,
  ToolResultBlock,
  ToolUseBlock
} from "./Schema.js"

/**
 * Anthropic Messages request → TurnRequest. The request is checked in Anthropic's terms (every
 * rejection names the Anthropic field), then rewritten as the equivalent OpenAI chat request and
 * translated by the one chat translation: the same history handling, tool bridge and conversation
 * fingerprints for both dialects. A rejection from that translation is renamed back to the
 * Anthropic field it is about.
 */

const invalid = (message: string, param: string, code = "invalid_value") => new InvalidRequest({ message, param, code })

export const decodeMessagesRequest = (body: unknown) => decodeBody(MessagesRequest, body)
export const decodeCountTokensRequest = (body: unknown) => decodeBody(CountTokensSchema, body)

const typeOf = (raw: unknown): string | undefined =>
  typeof raw === "object" && raw !== null && "type" in raw && typeof raw.type === "string" ? raw.type : undefined

const unsupportedBlock = (type: string | undefined, param: string, supported: string) =>
  invalid(
    `Unsupported content block type '${type ?? "none"}' at '${param}.type': supported here are ${supported}.`,
    `${param}.type`,
    "unsupported_content_type"
  )

/** Which OpenAI field (of the rewritten request) stands for which Anthropic field: most specific first. */
type PathMap = Array<readonly [openai: string, anthropic: string]>

type ChatPart =
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "image_url"; readonly image_url: { readonly url: string } }

interface ChatCall {
  readonly id: string
  readonly type: "function"
  readonly function: { readonly name: string; readonly arguments: string }
}

/** A message of the rewritten request, in the OpenAI chat shape. */
type ChatMessage =
  | { readonly role: "system"; readonly content: string }
  | { readonly role: "user"; readonly content: ReadonlyArray<ChatPart> }
  | { readonly role: "assistant"; readonly content: string; readonly tool_calls?: ReadonlyArray<ChatCall> }
  | { readonly role: "tool"; readonly tool_call_id: string; readonly content: string }

interface Rewritten {
  readonly messages: Array<ChatMessage>
  readonly paths: PathMap
}

const toolResultText = (content: typeof ToolResultBlock.Type["content"], param: string) =>
  Either.gen(function*() {
    if (content === undefined) return ""
    if (typeof content === "string") return content
    const texts: Array<string> = []
    for (const [k, raw] of content.entries()) {
      const type = typeOf(raw)
      // The client's function results reach the model as the MCP tool's text.
      if (type !== "text") return yield* Either.left(unsupportedBlock(type, `${param}.content[${k}]`, "'text' blocks"))
      texts.push((yield* decodeOrFail(TextBlock, raw, `${param}.content[${k}]`)).text)
    }
    return texts.join("\n")
  })

/** system + messages, checked, as OpenAI chat messages. */
const rewriteMessages = (
  system: MessagesRequest["system"],
  messages: ReadonlyArray<unknown>
): Either.Either<Rewritten, InvalidRequest> =>
  Either.gen(function*() {
    const out: Array<ChatMessage> = []
    const paths: PathMap = []
    const push = (message: ChatMessage, path: string, parts: ReadonlyArray<readonly [number, string]> = []) => {
      const k = out.length
      out.push(message)
      for (const [j, part] of parts) paths.push([`messages[${k}].content[${j}]`, part])
      paths.push([`messages[${k}]`, path])
    }
    const texts = (blocks: ReadonlyArray<unknown>, prefix: string) =>
      Either.all(blocks.map((raw, i) =>
        typeOf(raw) === "text"
          ? Either.map(decodeOrFail(TextBlock, raw, `${prefix}[${i}]`), (block) => block.text)
          : Either.left(unsupportedBlock(typeOf(raw), `${prefix}[${i}]`, "'text' blocks"))
      ))
    if (system !== undefined) {
      push({ role: "system", content: typeof system === "string" ? system : (yield* texts(system, "system")).join("\n\n") }, "system")
    }
    // The tool_use ids of the latest assistant message: the next user message answers each of them.
    let open: { readonly index: number; readonly ids: Set<string> } | undefined
    const closeOpen = () => {
      if (open === undefined || open.ids.size === 0) return Either.void
      const param = `messages[${open.index}].content`
      return Either.left(invalid(
        `Invalid value for '${param}': each tool_use must be answered by a tool_result block in the next user message (missing: ${[...open.ids].join(", ")}).`,
        param
      ))
    }
    for (const [i, raw] of messages.entries()) {
      const prefix = `messages[${i}]`
      const message = yield* decodeOrFail(Message, raw, prefix)
      const blocks = typeof message.content === "string" ? [{ type: "text", text: message.content }] : message.content
      switch (message.role) {
        case "system":
          yield* closeOpen()
          open = undefined
          push({ role: "system", content: (yield* texts(blocks, `${prefix}.content`)).join("\n\n") }, prefix)
          break
        case "assistant": {
          yield* closeOpen()
          let text = ""
          const calls: Array<ChatCall> = []
          for (const [j, block] of blocks.entries()) {
            const param = `${prefix}.content[${j}]`
            switch (typeOf(block)) {
              case "text":
                text += (yield* decodeOrFail(TextBlock, block, param)).text
                break
              case "tool_use": {
                const use = yield* decodeOrFail(ToolUseBlock, block, param)
                calls.push({ id: use.id, type: "function", function: { name: use.name, arguments: JSON.stringify(use.input ?? {}) } })
                break
              }
              // Earlier thinking is the model's own: the CLI session keeps it, a transcript leaves it out.
              case "thinking":
              case "redacted_thinking":
                break
              default:
                return yield* Either.left(unsupportedBlock(typeOf(block), param, "'text', 'tool_use' and 'thinking' blocks"))
            }
          }
          push({ role: "assistant", content: text, ...(calls.length > 0 ? { tool_calls: calls } : {}) }, prefix)
          open = calls.length > 0 ? { index: i, ids: new Set(calls.map((call) => call.id)) } : undefined
          break
        }
        case "user": {
          const results: Array<readonly [ChatMessage, string]> = []
          const parts: Array<ChatPart> = []
          const partPaths: Array<readonly [number, string]> = []
          for (const [j, block] of blocks.entries()) {
            const param = `${prefix}.content[${j}]`
            switch (typeOf(block)) {
              case "tool_result": {
                const result = yield* decodeOrFail(ToolResultBlock, block, param)
                if (open === undefined || !open.ids.has(result.tool_use_id)) {
                  return yield* Either.left(invalid(
                    `Invalid value for '${param}.tool_use_id': '${result.tool_use_id}' does not answer an unanswered tool_use of the preceding assistant message.`,
                    `${param}.tool_use_id`,
                    "unknown_tool_use_id"
                  ))
                }
                open.ids.delete(result.tool_use_id)
                const text = yield* toolResultText(result.content, param)
                results.push([{ role: "tool", tool_call_id: result.tool_use_id, content: result.is_error === true ? `Error: ${text}` : text }, param])
                break
              }
              case "text":
                partPaths.push([parts.length, param])
                parts.push({ type: "text", text: (yield* decodeOrFail(TextBlock, block, param)).text })
                break
              case "image": {
                const { source } = yield* decodeOrFail(ImageBlock, block, param)
                partPaths.push([parts.length, param])
                parts.push({
                  type: "image_url",
                  image_url: { url: source.type === "base64" ? `data:${source.media_type};base64,${source.data}` : source.url }
                })
                break
              }
              default:
                return yield* Either.left(unsupportedBlock(typeOf(block), param, "'text', 'image' and 'tool_result' blocks"))
            }
          }
          yield* closeOpen()
          open = undefined
          for (const [result, path] of results) push(result, path)
          // Text next to tool results is a user message after them.
          if (parts.length > 0 || results.length === 0) push({ role: "user", content: parts }, prefix, partPaths)
          break
        }
      }
    }
    const last = messages.length - 1
    const final = yield* decodeOrFail(Message, messages[last], `messages[${last}]`)
    if (final.role !== "user") {
      return yield* Either.left(invalid(
        `Invalid value for 'messages[${last}].role': the last message must have role 'user' (got '${final.role}'); an assistant prefill cannot be given to the Claude Code CLI.`,
        `messages[${last}].role`
      ))
    }
    return { messages: out, paths }
  })

/** Anthropic's tools and tool_choice as the chat request's. */
const rewriteTools = (request: Pick<MessagesRequest, "tools" | "tool_choice">, paths: PathMap) =>
  Either.gen(function*() {
    const tools: Array<unknown> = []
    for (const [i, raw] of (request.tools ?? []).entries()) {
      const type = typeOf(raw)
      if (type !== undefined && type !== "custom") {
        return yield* Either.left(invalid(
          `Unsupported tool type '${type}' at 'tools[${i}].type': Anthropic's server tools do not run through the gateway; only client tools ('custom', with 'input_schema') do.`,
          `tools[${i}].type`,
          "unsupported_tool_type"
        ))
      }
      const tool = yield* decodeOrFail(CustomTool, raw, `tools[${i}]`)
      tools.push({ type: "function", function: { name: tool.name, description: tool.description, parameters: tool.input_schema } })
      paths.push([`tools[${i}].function.name`, `tools[${i}].name`], [`tools[${i}].function.parameters`, `tools[${i}].input_schema`])
    }
    paths.push(["tool_choice.function.name", "tool_choice.name"])
    if (request.tool_choice === undefined) return { tools, tool_choice: undefined, parallel_tool_calls: undefined }
    const choice = yield* decodeOrFail(ToolChoice, request.tool_choice, "tool_choice")
    return {
      tools,
      tool_choice: choice.type === "tool"
        ? { type: "function", function: { name: choice.name } }
        : choice.type === "any"
        ? "required"
        : choice.type,
      parallel_tool_calls: choice.disable_parallel_tool_use === true ? false : undefined
    }
  })

/** `thinking` and `output_config.effort` → the CLI's effort; whether thinking blocks are shown. */
const thinkingOf = (request: Pick<MessagesRequest, "thinking" | "output_config">, paths: PathMap) =>
  Either.gen(function*() {
    const thinking = request.thinking === undefined ? undefined : yield* decodeOrFail(Thinking, request.thinking, "thinking")
    paths.push(["reasoning_effort", "output_config.effort"])
    const fromBudget = thinking?.type === "enabled"
      ? (thinking.budget_tokens < 4096 ? "low" : thinking.budget_tokens < 16384 ? "medium" : "high")
      : undefined
    return {
      show: thinking !== undefined && thinking.type !== "disabled",
      effort: request.output_config?.effort ?? fromBudget
    }
  })

/** A field of the rewritten chat request, as the Anthropic field it stands for. */
const anthropicPath = (paths: PathMap, param: string): string => {
  for (const [from, to] of paths) {
    if (param === from || param.startsWith(`${from}.`) || param.startsWith(`${from}[`)) {
      return (to + param.slice(from.length)).replace(/\.image_url\.url$/, ".source")
    }
  }
  return param
}

/** An error of the chat translation, renamed to the Anthropic field it is about. */
const renamed = (paths: PathMap) => (error: InvalidRequest): InvalidRequest => {
  if (error.param === null) return error
  const param = anthropicPath(paths, error.param)
  return new InvalidRequest({ message: error.message.replaceAll(error.param, param), param, code: error.code })
}

export interface AnthropicTurn {
  readonly turn: PendingTurn
  /** The client asked for thinking: thinking blocks are part of the answer. */
  readonly showThinking: boolean
}

export const toAnthropicTurn = (
  request: MessagesRequest,
  model: string,
  options: TranslateOptions & { readonly conversationId?: string | undefined }
): Either.Either<AnthropicTurn, InvalidRequest> =>
  Either.gen(function*() {
    const { messages, paths } = yield* rewriteMessages(request.system, request.messages)
    const tools = yield* rewriteTools(request, paths)
    const thinking = yield* thinkingOf(request, paths)
    // Structured output: the CLI's own (--json-schema), validated and retried by the CLI.
    const format = request.output_config?.format
    paths.push(["response_format", "output_config.format"])
    const chat: ChatRequest = {
      model: request.model,
      messages,
      max_tokens: request.max_tokens,
      ...(tools.tools.length > 0 ? { tools: tools.tools } : {}),
      ...(tools.tool_choice !== undefined ? { tool_choice: tools.tool_choice } : {}),
      ...(tools.parallel_tool_calls !== undefined ? { parallel_tool_calls: tools.parallel_tool_calls } : {}),
      ...(thinking.effort != null ? { reasoning_effort: thinking.effort } : {}),
      ...(format != null ? { response_format: { type: "json_schema", json_schema: { schema: format.schema } } } : {}),
      ...(options.conversationId !== undefined ? { conversation_id: options.conversationId } : {})
    }
    const turn = yield* Either.mapLeft(toTurnRequest(chat, model, options), renamed(paths))
    // Anthropic sets no limit of 4 on stop sequences: they are applied here, not through `stop`.
    return { turn: { ...turn, stop: request.stop_sequences ?? [] }, showThinking: thinking.show }
  })

/**
 * What count_tokens counts: the request rendered as text (system, each message with its role,
 * tool calls and results, tool definitions). Images cannot be rendered as text: refused.
 */
export const countableText = (request: CountTokensRequest): Either.Either<string, InvalidRequest> =>
  Either.gen(function*() {
    const { messages, paths } = yield* rewriteMessages(request.system, request.messages)
    const tools = yield* rewriteTools(request, paths)
    yield* thinkingOf({ thinking: request.thinking }, paths)
    const lines: Array<string> = []
    for (const [k, message] of messages.entries()) {
      switch (message.role) {
        case "user": {
          const image = message.content.findIndex((part) => part.type !== "text")
          if (image >= 0) {
            const param = anthropicPath(paths, `messages[${k}].content[${image}]`)
            return yield* Either.left(invalid(
              `Unsupported content at '${param}': count_tokens counts text, tool calls and tools; images cannot be counted through the Claude Code CLI.`,
              param,
              "unsupported_content_type"
            ))
          }
          lines.push(`user: ${message.content.map((part) => (part.type === "text" ? part.text : "")).join("")}`)
          break
        }
        case "assistant":
          lines.push(`assistant: ${message.content}`)
          if (message.tool_calls !== undefined) lines.push(JSON.stringify(message.tool_calls))
          break
        default:
          lines.push(`${message.role}: ${message.content}`)
      }
    }
    if (tools.tools.length > 0) lines.push(JSON.stringify(tools.tools))
    return lines.join("\n")
  })
