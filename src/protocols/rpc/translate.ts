import { Either } from "effect"
import type { CliError, CliNotFound, CliSpawnFailed, CliTimeout, ControlRequestFailed } from "../../cli/CliErrors.js"
import { type ConversationNotFound, InvalidRequest as DomainInvalidRequest, type ModelNotFound } from "../../domain/errors.js"
import { type HistoryMessage, historyMessage, type InputBlock, type ToolResult, type TurnEvent, type TurnRequest, type TurnFailed as DomainTurnFailed, type UpstreamError as DomainUpstreamError } from "../../domain/Turn.js"
import type { Overloaded as DomainOverloaded } from "../../services/Admission.js"
import { decodeOrFail } from "../../http/request.js"
import { MAX_IMAGE_BYTES } from "../openai/translate.js"
import { decodeTools } from "../openai/tools.js"
import * as Wire from "./Api.js"

/** RPC ⇄ the dialect-neutral core: ChatRequest → TurnRequest, TurnEvent → ChatEvent, errors → wire errors. */

const invalid = (message: string, param: string, code = "invalid_value") => new DomainInvalidRequest({ message, param, code })

/** The OpenAI tool checks speak of `tools[i].function.x` and `tool_choice`; the RPC fields are `tools[i].x` and `toolChoice`. */
const renameToolParam = (text: string) =>
  text.replace(/tools\[(\d+)\]\.function\./g, "tools[$1].").replace(/tool_choice\.function\.name/g, "toolChoice.name")
    .replace(/tool_choice/g, "toolChoice")

const toolsOf = (request: Wire.ChatRequest) =>
  decodeTools(
    {
      model: "",
      messages: [],
      tools: (request.tools ?? []).map((tool) => ({ type: "function", function: tool })),
      tool_choice: typeof request.toolChoice === "object" ? { type: "function", function: request.toolChoice } : request.toolChoice,
      parallel_tool_calls: request.parallelToolCalls
    },
    decodeOrFail
  ).pipe(Either.mapLeft((error) =>
    new DomainInvalidRequest({
      message: renameToolParam(error.message),
      param: error.param === null ? null : renameToolParam(error.param),
      code: error.code
    })
  ))

const blocksOf = (input: NonNullable<Wire.ChatRequest["input"]>): Either.Either<ReadonlyArray<InputBlock>, DomainInvalidRequest> => {
  const blocks: ReadonlyArray<InputBlock> = typeof input === "string" ? [{ type: "text", text: input }] : input
  for (const [i, block] of blocks.entries()) {
    if (block.type === "image" && Math.floor(block.source.data.length * 3 / 4) > MAX_IMAGE_BYTES) {
      return Either.left(invalid(`Image at 'input[${i}]' is larger than ${MAX_IMAGE_BYTES} bytes.`, `input[${i}]`, "image_too_large"))
    }
  }
  if (!blocks.some((block) => block.type !== "text" || block.text.trim() !== "")) {
    return Either.left(invalid("Invalid value for 'input': the message is empty.", "input"))
  }
  return Either.right(blocks)
}

/** The tool results as the CLI reads them when no parked turn waits for them (same text as the OpenAI dialect's). */
const resultsText = (results: ReadonlyArray<ToolResult>) =>
  `<tool_results>\n${results.map((r) => `<tool_result tool_call_id="${r.id}">\n${r.content}\n</tool_result>\n`).join("")}</tool_results>`

/** A checked RPC chat request as a TurnRequest; `model` is already resolved. */
export const toTurnRequest = (
  request: Wire.ChatRequest,
  model: string,
  owner: string
): Either.Either<TurnRequest, DomainInvalidRequest> =>
  Either.gen(function*() {
    if ((request.input === undefined) === (request.toolResults === undefined)) {
      return yield* Either.left(invalid("Exactly one of 'input' and 'toolResults' is required.", "input", "missing_required_parameter"))
    }
    const tokens = request.maxTokens
    if (tokens !== undefined && (!Number.isInteger(tokens) || tokens < 1)) {
      return yield* Either.left(invalid("Invalid value for 'maxTokens': expected a positive integer.", "maxTokens"))
    }
    const stop = request.stop ?? []
    if (stop.length > 4) return yield* Either.left(invalid("Invalid value for 'stop': at most 4 sequences.", "stop"))
    if (stop.some((s) => s === "")) return yield* Either.left(invalid("Invalid value for 'stop': sequences must not be empty.", "stop"))
    const { instruction, tools } = yield* toolsOf(request)
    const launch = {
      model,
      systemPrompt: request.system,
      effort: request.effort,
      maxOutputTokens: tokens,
      ...(tools.length > 0 ? { tools, toolInstruction: instruction } : {})
    }
    const conversation = (added: ReadonlyArray<HistoryMessage>) => ({
      id: request.conversationId,
      owner,
      history: [],
      added
    })
    if (request.toolResults !== undefined) {
      const results = request.toolResults
      if (results.length === 0) return yield* Either.left(invalid("Invalid value for 'toolResults': it is empty.", "toolResults"))
      const ids = new Set<string>()
      for (const [i, result] of results.entries()) {
        if (ids.has(result.id)) {
          return yield* Either.left(invalid(`Invalid value for 'toolResults[${i}].id': '${result.id}' is answered twice.`, `toolResults[${i}].id`))
        }
        ids.add(result.id)
      }
      return {
        launch,
        input: [{ type: "text", text: resultsText(results) }],
        newInputFrom: 0,
        stop,
        toolResults: results,
        conversation: conversation(results.map((result) => historyMessage("tool", result.content, [], result.id)))
      }
    }
    const input = yield* blocksOf(request.input ?? "")
    const text = input.map((block) => (block.type === "text" ? block.text : "[image]")).join("")
    return { launch, input, newInputFrom: 0, stop, conversation: conversation([historyMessage("user", text)]) }
  })

export const toChatEvent = (event: TurnEvent): Wire.ChatEvent => {
  switch (event._tag) {
    case "Finished":
      return {
        _tag: "Finished",
        reason: event.reason,
        usage: event.usage,
        costUsd: event.costUsd ?? null,
        sessionId: event.sessionId,
        toolCalls: event.toolCalls ?? []
      }
    default:
      return event
  }
}

type Failure = DomainInvalidRequest | ModelNotFound | ConversationNotFound | CliError | ControlRequestFailed | DomainUpstreamError | DomainTurnFailed | DomainOverloaded

/** The wire error each gateway failure becomes (so that each RPC declares only the errors it can raise). */
export type WireError<E extends Failure> = E extends DomainInvalidRequest ? Wire.InvalidRequest
  : E extends ModelNotFound ? Wire.ModelNotFound
  : E extends ConversationNotFound ? Wire.ConversationNotFound
  : E extends DomainOverloaded ? Wire.Overloaded
  : E extends DomainUpstreamError ? Wire.UpstreamError
  : E extends CliTimeout ? Wire.Timeout
  : E extends CliNotFound | CliSpawnFailed ? Wire.CliUnavailable
  : Wire.TurnFailed

/** The one mapping of gateway failures to the RPC's typed errors (the HTTP twin is http/errors.ts). */
export const toWireError = <E extends Failure>(error: E): WireError<E> => wireError(error) as WireError<E>

const wireError = (error: Failure): Wire.ChatError => {
  switch (error._tag) {
    case "InvalidRequest":
      return new Wire.InvalidRequest({ message: error.message, param: error.param, code: error.code })
    case "ModelNotFound":
      return new Wire.ModelNotFound({ model: error.model, available: error.available, message: error.message })
    case "ConversationNotFound":
      return new Wire.ConversationNotFound({ id: error.id, message: error.message })
    case "Overloaded":
      return new Wire.Overloaded({ reason: error.reason, retryAfterSeconds: error.retryAfterSeconds, message: error.message })
    case "UpstreamError":
      return new Wire.UpstreamError({
        status: error.status,
        errorType: error.errorType,
        retryAfterSeconds: error.status === 429 || error.status === 503 || error.status === 529 ? 5 : null,
        message: `Upstream error reported by the Claude Code CLI: ${error.message}`
      })
    case "CliTimeout":
      return new Wire.Timeout({ seconds: error.seconds, message: error.message })
    case "CliNotFound":
    case "CliSpawnFailed":
      return new Wire.CliUnavailable({ message: error.message })
    case "CliExited":
      return new Wire.TurnFailed({ code: "cli_exited", message: error.message })
    case "CliProtocolError":
    case "ControlRequestFailed":
      return new Wire.TurnFailed({ code: "cli_protocol_error", message: error.message })
    case "TurnFailed":
      return new Wire.TurnFailed({ code: error.subtype, message: `The Claude Code CLI ended the turn with an error: ${error.message}` })
  }
}
