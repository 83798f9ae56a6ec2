import { Effect, Stream } from "effect"
import type { FinishReason, TurnUsage } from "../Turn.js"
import { TurnEvent, TurnFailed, UpstreamError } from "../Turn.js"
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

const resultEvent = (
  result: ResultMessage,
  lastStopReason: string | null
): Effect.Effect<TurnEvent, UpstreamError | TurnFailed> => {
  if (!result.is_error) {
    return Effect.succeed(
      TurnEvent.Finished({
        reason: finishReason(result.stop_reason ?? lastStopReason),
        usage: usageOf(result),
        costUsd: result.total_cost_usd,
        sessionId: result.session_id,
        ...(result.structured_output !== undefined ? { structuredOutput: result.structured_output } : {})
      })
    )
  }
  // Upstream API errors arrive as subtype "success" with is_error; the CLI's own limits as error_* subtypes.
  if (result.terminal_reason === "api_error" || result.api_error_status != null || result.subtype === "success") {
    return Effect.fail(
      new UpstreamError({
        status: result.api_error_status ?? null,
        errorType: result.api_error_type ?? null,
        message: result.result ?? result.errors?.join("; ") ?? "upstream API error"
      })
    )
  }
  return Effect.fail(
    new TurnFailed({ subtype: result.subtype, message: result.errors?.join("; ") ?? result.subtype })
  )
}

export type TurnError = CliError | UpstreamError | TurnFailed

export const toTurnEvents = <E extends CliError>(
  messages: Stream.Stream<CliMessage, E>
): Stream.Stream<TurnEvent, E | UpstreamError | TurnFailed> =>
  Stream.suspend(() => {
    let lastStopReason: string | null = null
    let textSoFar = false
    let separateNext = false
    // Usage of the API calls finished so far, and of the current one.
    let done: TurnUsage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 }
    let current = done
    let sessionId = ""
    return messages.pipe(
      Stream.mapEffect((message): Effect.Effect<ReadonlyArray<TurnEvent>, UpstreamError | TurnFailed> => {
        switch (message._tag) {
          case "SystemInit":
            sessionId = message.session_id
            return Effect.succeed([TurnEvent.Started({ model: message.model, sessionId: message.session_id })])
          case "StreamEvent": {
            // Events of subagents carry a parent tool use id; only the main thread is the answer.
            if (message.parent_tool_use_id) return Effect.succeed([])
            const event = message.event
            if (event.type === "message_start" && "message" in event) {
              separateNext = textSoFar
              done = current
              const usage = event.message.usage
              current = {
                inputTokens: done.inputTokens + (usage?.input_tokens ?? 0),
                outputTokens: done.outputTokens + (usage?.output_tokens ?? 0),
                cacheReadTokens: done.cacheReadTokens + (usage?.cache_read_input_tokens ?? 0),
                cacheCreationTokens: done.cacheCreationTokens + (usage?.cache_creation_input_tokens ?? 0)
              }
              return Effect.succeed([TurnEvent.Usage({ usage: current })])
            }
            if (event.type === "message_delta" && "delta" in event) {
              lastStopReason = event.delta.stop_reason ?? lastStopReason
              const output = event.usage?.output_tokens
              if (output !== undefined) current = { ...current, outputTokens: done.outputTokens + output }
              const usage = TurnEvent.Usage({ usage: current })
              // The CLI would recover from max_tokens (raise the limit, ask the model to resume); an
              // OpenAI client asked for the answer to end there.
              return Effect.succeed(
                event.delta.stop_reason === "max_tokens"
                  ? [usage, TurnEvent.Finished({ reason: "length", usage: current, costUsd: undefined, sessionId })]
                  : [usage]
              )
            }
            if (event.type !== "content_block_delta" || !("delta" in event)) return Effect.succeed([])
            const delta = event.delta
            if (delta.type === "text_delta" && "text" in delta) {
              if (delta.text === "") return Effect.succeed([])
              // Text of a later API call in the same turn (after the CLI's own tool use) is a new paragraph.
              const text = separateNext ? `\n\n${delta.text}` : delta.text
              separateNext = false
              textSoFar = true
              return Effect.succeed([TurnEvent.TextDelta({ text })])
            }
            if (delta.type === "thinking_delta" && "thinking" in delta && delta.thinking !== "") {
              return Effect.succeed([TurnEvent.ThinkingDelta({ text: delta.thinking })])
            }
            return Effect.succeed([])
          }
          case "ResultMessage":
            return Effect.map(resultEvent(message, lastStopReason), (event) => [event])
          case "SystemNotice":
            // Logged here, in the request's fiber, so that the line carries its request id.
            return message.subtype === "api_retry"
              ? Effect.as(Effect.logInfo("the CLI retries an upstream call", message.raw), [])
              : Effect.succeed([])
          default:
            return Effect.succeed([])
        }
      }),
      Stream.flattenIterables,
      Stream.takeUntil((event) => event._tag === "Finished")
    )
  })
