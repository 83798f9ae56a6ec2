import { Chunk, Effect, Either, Exit, Option, Stream } from "effect"
import type { FinishReason, ToolCall, TurnUsage } from "../domain/Turn.js"
import { TurnEvent, TurnFailed, UpstreamError } from "../domain/Turn.js"
import type { CliError } from "./CliErrors.js"
import type { CliMessage, ResultMessage } from "./Protocol.js"

/** Translate one CLI turn (stdout messages up to `result`) into dialect-neutral TurnEvents. */

export const finishReason = (stopReason: string | null | undefined): FinishReason => {
  switch (stopReason) {
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length"
    case "refusal":
      return "content_filter"
    default:
      return "stop"
  }
}

const usageOf = (result: ResultMessage): TurnUsage => ({
  inputTokens: result.usage?.input_tokens ?? 0,
  outputTokens: result.usage?.output_tokens ?? 0,
  cacheReadTokens: result.usage?.cache_read_input_tokens ?? 0,
  cacheCreationTokens: result.usage?.cache_creation_input_tokens ?? 0
})

const ZERO: TurnUsage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 }

const minus = (a: TurnUsage, b: TurnUsage): TurnUsage => ({
  inputTokens: a.inputTokens - b.inputTokens,
  outputTokens: a.outputTokens - b.outputTokens,
  cacheReadTokens: a.cacheReadTokens - b.cacheReadTokens,
  cacheCreationTokens: a.cacheCreationTokens - b.cacheCreationTokens
})

/** The turn's end; `before` is the usage already reported with earlier tool-call rounds. */
const resultEvent = (
  result: ResultMessage,
  lastStopReason: string | null,
  before: TurnUsage,
  usedCliTools: boolean
): Either.Either<TurnEvent, UpstreamError | TurnFailed> => {
  if (!result.is_error) {
    return Either.right(
      TurnEvent.Finished({
        reason: finishReason(result.stop_reason ?? lastStopReason),
        usage: minus(usageOf(result), before),
        costUsd: result.total_cost_usd,
        sessionId: result.session_id,
        ...(result.structured_output !== undefined ? { structuredOutput: result.structured_output } : {}),
        ...(usedCliTools ? { usedCliTools } : {})
      })
    )
  }
  // Upstream API errors arrive as subtype "success" with is_error; the CLI's own limits as error_* subtypes.
  if (result.terminal_reason === "api_error" || result.api_error_status != null || result.subtype === "success") {
    return Either.left(
      new UpstreamError({
        status: result.api_error_status ?? null,
        errorType: result.api_error_type ?? null,
        message: result.result ?? result.errors?.join("; ") ?? "upstream API error"
      })
    )
  }
  return Either.left(
    new TurnFailed({ subtype: result.subtype, message: result.errors?.join("; ") ?? result.subtype })
  )
}

export type TurnError = CliError | UpstreamError | TurnFailed

/** The CLI's way of returning structured output (`--json-schema`): a tool call without side effects. */
const STRUCTURED_OUTPUT_TOOL = "StructuredOutput"

interface OpenCall {
  readonly index: number
  readonly id: string
  readonly name: string
  arguments: string
}

/** The end of a turn; a `tool_calls` finish only pauses it (the turn is parked until the results come). */
export const endsTurn = (event: TurnEvent) => event._tag === "Finished" && event.reason !== "tool_calls"

/**
 * `toolNames` maps the CLI's names of the client's functions (`mcp__client__…`) to the client's:
 * their calls become ToolCall events, and the model stopping for them a `tool_calls` finish. The
 * stream goes on after it once the results are supplied; usage is reported per round.
 */
export const toTurnEvents = <E extends CliError>(
  messages: Stream.Stream<CliMessage, E>,
  toolNames: ReadonlyMap<string, string> = new Map()
): Stream.Stream<TurnEvent, E | UpstreamError | TurnFailed> =>
  Stream.suspend(() => {
    const translate = translator(toolNames)
    return messages.pipe(
      // A chunk of messages at a time: a burst of CLI lines is one step downstream, not one per line.
      Stream.mapChunksEffect((chunk) => {
        const { events, failure, logs } = translate(chunk)
        const out: Array<Exit.Exit<TurnEvent, Option.Option<UpstreamError | TurnFailed>>> = events.map(Exit.succeed)
        if (failure !== undefined) out.push(Exit.fail(Option.some(failure)))
        const emitted = Chunk.unsafeFromArray(out)
        // Logged here, in the request's fiber, so that a line carries its request id.
        return logs.length === 0 ? Effect.succeed(emitted) : Effect.as(Effect.all(logs, { discard: true }), emitted)
      }),
      Stream.flattenExitOption,
      Stream.takeUntil(endsTurn)
    )
  })

/**
 * The same translation over a pull of CLI messages (fails with None at their end), as a pull of
 * TurnEvents that ends after the turn's end. What a request reads a turn through: no Stream layers,
 * whose channel machinery cost a later turn ~900 run-loop steps (bench/README.md, "Per-request CPU").
 */
export const turnEventPull = <E extends CliError>(
  messages: Effect.Effect<Chunk.Chunk<CliMessage>, Option.Option<E>>,
  toolNames: ReadonlyMap<string, string> = new Map()
): Effect.Effect<Chunk.Chunk<TurnEvent>, Option.Option<E | UpstreamError | TurnFailed>> => {
  const translate = translator(toolNames)
  let ended = false
  let failed: UpstreamError | TurnFailed | undefined
  const next: Effect.Effect<Chunk.Chunk<TurnEvent>, Option.Option<E | UpstreamError | TurnFailed>> = Effect.suspend(() => {
    if (failed !== undefined) return Effect.fail(Option.some(failed))
    if (ended) return Effect.fail(Option.none())
    return Effect.flatMap(messages, (chunk) => {
      const { events, failure, logs } = translate(chunk)
      const end = events.findIndex(endsTurn)
      if (end >= 0) ended = true
      else failed = failure
      const emitted = end >= 0 ? events.slice(0, end + 1) : events
      // Nothing to hand on yet (lines without events): read on.
      const result = emitted.length === 0 && !ended ? next : Effect.succeed(Chunk.unsafeFromArray(emitted))
      return logs.length === 0 ? result : Effect.zipRight(Effect.all(logs, { discard: true }), result)
    })
  })
  return next
}

/**
 * The translation's state over one turn: each chunk of CLI messages gives its events, the failure
 * that ends the turn (the events before it still count) and what to log.
 */
const translator = (toolNames: ReadonlyMap<string, string>) => {
  let lastStopReason: string | null = null
  let textSoFar = false
  let separateNext = false
  // Usage of the API calls finished so far, and of the current one.
  let done: TurnUsage = ZERO
  let current = done
  // Usage already reported with an earlier tool-call round.
  let reported: TurnUsage = ZERO
  let sessionId = ""
  // A tool of the CLI's own (not a client function, not structured output) ran in this turn.
  let usedCliTools = false
  // Client tool calls of this round, and the current message's content blocks that are one.
  let calls: Array<OpenCall> = []
  const callBlocks = new Map<number, OpenCall>()
  /** One CLI message's events, or the failure that ends the turn; `logs` collects what to log. */
  const step = (
    message: CliMessage,
    logs: Array<Effect.Effect<void>>
  ): Either.Either<ReadonlyArray<TurnEvent>, UpstreamError | TurnFailed> => {
    switch (message._tag) {
      case "SystemInit":
        sessionId = message.session_id
        return Either.right([TurnEvent.Started({ model: message.model, sessionId: message.session_id })])
      case "StreamEvent": {
        // Events of subagents carry a parent tool use id; only the main thread is the answer.
        if (message.parent_tool_use_id) return Either.right([])
        const event = message.event
        if (event.type === "message_start" && "message" in event) {
          callBlocks.clear()
          separateNext = textSoFar
          done = current
          const usage = event.message.usage
          current = {
            inputTokens: done.inputTokens + (usage?.input_tokens ?? 0),
            outputTokens: done.outputTokens + (usage?.output_tokens ?? 0),
            cacheReadTokens: done.cacheReadTokens + (usage?.cache_read_input_tokens ?? 0),
            cacheCreationTokens: done.cacheCreationTokens + (usage?.cache_creation_input_tokens ?? 0)
          }
          return Either.right([TurnEvent.Usage({ usage: current })])
        }
        if (event.type === "message_delta" && "delta" in event) {
          lastStopReason = event.delta.stop_reason ?? lastStopReason
          const output = event.usage?.output_tokens
          if (output !== undefined) current = { ...current, outputTokens: done.outputTokens + output }
          const usage = TurnEvent.Usage({ usage: current })
          // The CLI would recover from max_tokens (raise the limit, ask the model to resume); an
          // OpenAI client asked for the answer to end there.
          if (event.delta.stop_reason === "max_tokens") {
            return Either.right([usage, TurnEvent.Finished({ reason: "length", usage: minus(current, reported), costUsd: undefined, sessionId })])
          }
          if (event.delta.stop_reason === "tool_use" && calls.length > 0) {
            const toolCalls: Array<ToolCall> = calls.map(({ arguments: args, id, name }) => ({ id, name, arguments: args }))
            const finished = TurnEvent.Finished({ reason: "tool_calls", usage: minus(current, reported), costUsd: undefined, sessionId, toolCalls })
            // The next round (after the results) is a new answer: its own indexes, usage and first paragraph.
            reported = current
            calls = []
            textSoFar = false
            return Either.right([usage, finished])
          }
          return Either.right([usage])
        }
        if (event.type === "content_block_start" && "content_block" in event) {
          const block = event.content_block
          const name = block.type === "tool_use" && "name" in block ? toolNames.get(block.name) : undefined
          if (
            name === undefined && (block.type === "tool_use" || block.type === "server_tool_use") &&
            !("name" in block && block.name === STRUCTURED_OUTPUT_TOOL)
          ) usedCliTools = true
          if (name === undefined || !("id" in block)) return Either.right([])
          const call: OpenCall = { index: calls.length, id: block.id, name, arguments: "" }
          calls.push(call)
          callBlocks.set(event.index, call)
          return Either.right([TurnEvent.ToolCallStarted({ index: call.index, id: call.id, name })])
        }
        if (event.type === "content_block_stop" && "index" in event) {
          const call = callBlocks.get(event.index)
          // A call without arguments still has a JSON object as its arguments.
          if (call === undefined || call.arguments !== "") return Either.right([])
          call.arguments = "{}"
          return Either.right([TurnEvent.ToolCallDelta({ index: call.index, arguments: "{}" })])
        }
        if (event.type !== "content_block_delta" || !("delta" in event)) return Either.right([])
        const delta = event.delta
        if (delta.type === "input_json_delta" && "partial_json" in delta) {
          const call = callBlocks.get(event.index)
          if (call === undefined || delta.partial_json === "") return Either.right([])
          call.arguments += delta.partial_json
          return Either.right([TurnEvent.ToolCallDelta({ index: call.index, arguments: delta.partial_json })])
        }
        if (delta.type === "text_delta" && "text" in delta) {
          if (delta.text === "") return Either.right([])
          // Text of a later API call in the same turn (after the CLI's own tool use) is a new paragraph.
          const text = separateNext ? `\n\n${delta.text}` : delta.text
          separateNext = false
          textSoFar = true
          return Either.right([TurnEvent.TextDelta({ text })])
        }
        if (delta.type === "thinking_delta" && "thinking" in delta && delta.thinking !== "") {
          return Either.right([TurnEvent.ThinkingDelta({ text: delta.thinking })])
        }
        return Either.right([])
      }
      case "ResultMessage":
        return Either.map(resultEvent(message, lastStopReason, reported, usedCliTools), (event) => [event])
      case "SystemNotice":
        if (message.subtype === "api_retry") logs.push(Effect.logInfo("the CLI retries an upstream call", message.raw))
        return Either.right([])
      default:
        return Either.right([])
    }
  }
  return (chunk: Iterable<CliMessage>) => {
    const events: Array<TurnEvent> = []
    const logs: Array<Effect.Effect<void>> = []
    for (const message of chunk) {
      const stepped = step(message, logs)
      if (Either.isLeft(stepped)) return { events, failure: stepped.left, logs }
      for (const event of stepped.right) events.push(event)
    }
    return { events, failure: undefined, logs }
  }
}
