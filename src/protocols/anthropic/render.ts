import * as TurnStream from "../../domain/TurnStream.js"
import * as Sse from "@effect/experimental/Sse"
import { Effect, Stream } from "effect"
import type { FinishReason, TurnEvent, TurnUsage } from "../../domain/Turn.js"
import type { AnthropicErrorBody } from "../../http/errors.js"
import type { ContentBlock, MessageResponse, ModelInfo, StopReason, Usage } from "./Schema.js"

/** TurnEvents → Anthropic Message objects and Anthropic's named SSE events. */

export interface MessageMeta {
  readonly id: string
  /** The requested model; replaced by the resolved id once the CLI reports it. */
  readonly model: string
  /** Thinking blocks are part of the answer only when the client asked for thinking. */
  readonly showThinking: boolean
}

export const usageOf = (usage: TurnUsage): Usage => ({
  input_tokens: usage.inputTokens,
  output_tokens: usage.outputTokens,
  cache_creation_input_tokens: usage.cacheCreationTokens,
  cache_read_input_tokens: usage.cacheReadTokens
})

const stopReasonOf = (reason: FinishReason, stopSequence: string | undefined): StopReason => {
  switch (reason) {
    case "stop":
      return stopSequence !== undefined ? "stop_sequence" : "end_turn"
    case "length":
      return "max_tokens"
    case "tool_calls":
      return "tool_use"
    case "content_filter":
      return "refusal"
  }
}

/** The CLI hands over complete, valid JSON arguments; anything else is kept as text rather than lost. */
const parseInput = (json: string): unknown => {
  if (json === "") return {}
  try {
    return JSON.parse(json)
  } catch {
    return { arguments: json }
  }
}

const ZERO: TurnUsage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 }

export interface AggregatedMessage {
  readonly message: MessageResponse
  readonly costUsd: number | undefined
}

/** Collect a whole turn into one Message, its content blocks in the order the model produced them. */
export const aggregate = <E, R>(events: Stream.Stream<TurnEvent, E, R>, meta: MessageMeta): Effect.Effect<AggregatedMessage, E, R> =>
  Effect.suspend(() => {
    let model = meta.model
    const content: Array<ContentBlock> = []
    // Tool input arrives as JSON text: parsed once the call is complete.
    const inputs = new Map<number, string>()
    let stopReason: StopReason = "end_turn"
    let stopSequence: string | null = null
    let usage = ZERO
    let costUsd: number | undefined
    const last = () => content[content.length - 1]
    return TurnStream.runForEach(events, (event) => {
      switch (event._tag) {
        case "Started":
          model = event.model
          break
        case "Usage":
          usage = event.usage
          break
        case "TextDelta": {
          const block = last()
          if (block?.type === "text") content[content.length - 1] = { ...block, text: block.text + event.text }
          else content.push({ type: "text", text: event.text })
          break
        }
        case "ThinkingDelta": {
          if (!meta.showThinking) break
          const block = last()
          if (block?.type === "thinking") content[content.length - 1] = { ...block, thinking: block.thinking + event.text }
          else content.push({ type: "thinking", thinking: event.text, signature: "" })
          break
        }
        case "ToolCallStarted":
          inputs.set(content.length, "")
          content.push({ type: "tool_use", id: event.id, name: event.name, input: {} })
          break
        case "ToolCallDelta": {
          const at = content.length - 1
          inputs.set(at, (inputs.get(at) ?? "") + event.arguments)
          break
        }
        case "Finished":
          stopReason = stopReasonOf(event.reason, event.stopSequence)
          stopSequence = event.stopSequence ?? null
          usage = event.usage
          costUsd = event.costUsd
          // The calls as the turn reports them are authoritative (complete arguments).
          for (const call of event.toolCalls ?? []) {
            const at = content.findIndex((block) => block.type === "tool_use" && block.id === call.id)
            if (at >= 0) inputs.set(at, call.arguments)
          }
          break
      }
    }).pipe(Effect.map(() => {
      for (const [at, json] of inputs) {
        const block = content[at]
        if (block?.type === "tool_use") content[at] = { ...block, input: parseInput(json) }
      }
      return {
        message: {
          id: meta.id,
          type: "message",
          role: "assistant",
          model,
          content,
          stop_reason: stopReason,
          stop_sequence: stopSequence,
          usage: usageOf(usage)
        },
        costUsd
      }
    }))
  })

const event = (type: string, data: unknown) =>
  Sse.encoder.write({ _tag: "Event", event: type, id: undefined, data: JSON.stringify(data) })

/** Anthropic's keep-alive: a `ping` event (its SDK skips it). */
export const PING = event("ping", { type: "ping" })

/**
 * A turn as Anthropic's SSE events: `message_start`, a `ping`, per block `content_block_start`,
 * its deltas (`text_delta`, `thinking_delta`, `input_json_delta`) and `content_block_stop`, then
 * `message_delta` (stop reason, usage) and `message_stop`. A failure after the first byte becomes
 * an `error` event (the SDK raises it as an APIError) and ends the stream. One renderer per
 * response (it keeps the open block); see sseResponse.
 */
export const eventRenderer = <E>(meta: MessageMeta, onError: (error: E) => AnthropicErrorBody) => {
  let model = meta.model
  let usage = ZERO
  let started = false
  let index = -1
  let open: "text" | "thinking" | "tool_use" | undefined
  const start = (): string => {
    if (started) return ""
    started = true
    return event("message_start", {
      type: "message_start",
      message: {
        id: meta.id,
        type: "message",
        role: "assistant",
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: usageOf(usage)
      }
    }) + PING
  }
  const close = (): string => {
    if (open === undefined) return ""
    open = undefined
    return event("content_block_stop", { type: "content_block_stop", index })
  }
  const block = (type: "text" | "thinking" | "tool_use", contentBlock: unknown): string => {
    if (open === type && type !== "tool_use") return ""
    const closing = close()
    index++
    open = type
    return closing + event("content_block_start", { type: "content_block_start", index, content_block: contentBlock })
  }
  const delta = (data: unknown) => event("content_block_delta", { type: "content_block_delta", index, delta: data })
  const frames = (turnEvent: TurnEvent): string => {
    switch (turnEvent._tag) {
      case "Started":
        model = turnEvent.model
        return ""
      case "Usage":
        usage = turnEvent.usage
        return ""
      case "TextDelta":
        return start() + block("text", { type: "text", text: "" }) + delta({ type: "text_delta", text: turnEvent.text })
      case "ThinkingDelta":
        return meta.showThinking
          ? start() + block("thinking", { type: "thinking", thinking: "", signature: "" }) +
            delta({ type: "thinking_delta", thinking: turnEvent.text })
          : start()
      case "ToolCallStarted":
        return start() + block("tool_use", { type: "tool_use", id: turnEvent.id, name: turnEvent.name, input: {} })
      case "ToolCallDelta":
        return turnEvent.arguments === "" ? "" : delta({ type: "input_json_delta", partial_json: turnEvent.arguments })
      case "Finished":
        return start() + close() +
          event("message_delta", {
            type: "message_delta",
            delta: {
              stop_reason: stopReasonOf(turnEvent.reason, turnEvent.stopSequence),
              stop_sequence: turnEvent.stopSequence ?? null
            },
            usage: usageOf(turnEvent.usage)
          }) +
          event("message_stop", { type: "message_stop" })
    }
  }
  return { frames, end: () => "", error: (error: E) => event("error", onError(error)) }
}

/** A model id as a name to show: `claude-opus-5-5` → `Claude Opus 5.5`, `sonnet` → `Sonnet`. */
export const displayName = (id: string): string =>
  id.split("-")
    .reduce<Array<string>>((words, part) => {
      const previous = words[words.length - 1]
      if (/^\d+$/.test(part) && previous !== undefined && /^\d+(\.\d+)*$/.test(previous)) {
        words[words.length - 1] = `${previous}.${part}`
      } else {
        words.push(part.charAt(0).toUpperCase() + part.slice(1))
      }
      return words
    }, [])
    .join(" ")

export const modelInfo = (id: string, createdAt: string): ModelInfo => ({
  id,
  type: "model",
  display_name: displayName(id),
  created_at: createdAt
})
