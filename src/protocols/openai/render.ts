import * as Sse from "@effect/experimental/Sse"
import { Effect, Stream } from "effect"
import type { FinishReason, ToolCall, TurnEvent, TurnUsage } from "../../domain/Turn.js"
import { replayedEvents } from "../../services/Cache.js"
import type { ChatCompletion, ChatCompletionChunk, CompletionUsage, ErrorBody } from "./Schema.js"

/** TurnEvents → OpenAI chat completion objects and SSE frames. */

export interface CompletionMeta {
  readonly id: string
  readonly created: number
  /** The requested model; replaced by the resolved id once the CLI reports it. */
  readonly model: string
}

export const completionUsage = (usage: TurnUsage): CompletionUsage => {
  // OpenAI's prompt_tokens include cached ones; Anthropic reports them separately.
  const prompt = usage.inputTokens + usage.cacheReadTokens + usage.cacheCreationTokens
  return {
    prompt_tokens: prompt,
    completion_tokens: usage.outputTokens,
    total_tokens: prompt + usage.outputTokens,
    prompt_tokens_details: { cached_tokens: usage.cacheReadTokens },
    completion_tokens_details: { reasoning_tokens: 0 }
  }
}

interface Aggregate {
  model: string
  text: string
  reasoning: string
  finish: FinishReason
  toolCalls: ReadonlyArray<ToolCall>
  usage: TurnUsage
  costUsd: number | undefined
  sessionId: string | undefined
}

export interface AggregatedCompletion {
  readonly completion: ChatCompletion
  readonly usage: TurnUsage
  readonly costUsd: number | undefined
  readonly sessionId: string | undefined
}

/** Collect a whole turn into one `chat.completion`; a replayed cached answer without running its stream. */
export const aggregate = <E, R>(
  events: Stream.Stream<TurnEvent, E, R>,
  meta: CompletionMeta
): Effect.Effect<AggregatedCompletion, E, R> => {
  const initial: Aggregate = {
    model: meta.model,
    text: "",
    reasoning: "",
    finish: "stop",
    toolCalls: [],
    usage: { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 },
    costUsd: undefined,
    sessionId: undefined
  }
  const replayed = replayedEvents(events)
  return (replayed === undefined ? Stream.runFold(events, initial, step) : Effect.succeed(replayed.reduce(step, initial))).pipe(
    Effect.map((acc) => completionOf(acc, meta))
  )
}

const step = (acc: Aggregate, event: TurnEvent): Aggregate => {
  switch (event._tag) {
    case "Started":
      acc.model = event.model
      break
    case "TextDelta":
      acc.text += event.text
      break
    case "ThinkingDelta":
      acc.reasoning += event.text
      break
    case "Finished":
      acc.finish = event.reason
      acc.toolCalls = event.toolCalls ?? []
      acc.usage = event.usage
      acc.costUsd = event.costUsd
      acc.sessionId = event.sessionId
      break
  }
  return acc
}

const completionOf = (acc: Aggregate, meta: CompletionMeta): AggregatedCompletion => ({
  completion: {
    id: meta.id,
    object: "chat.completion",
    created: meta.created,
    model: acc.model,
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        // OpenAI's shape: no text next to tool calls is null, not "".
        content: acc.text === "" && acc.toolCalls.length > 0 ? null : acc.text,
        refusal: null,
        ...(acc.reasoning !== "" ? { reasoning_content: acc.reasoning } : {}),
        ...(acc.toolCalls.length > 0
          ? {
            tool_calls: acc.toolCalls.map((call) => ({
              id: call.id,
              type: "function" as const,
              function: { name: call.name, arguments: call.arguments }
            }))
          }
          : {})
      },
      finish_reason: acc.finish,
      logprobs: null
    }],
    usage: completionUsage(acc.usage),
    system_fingerprint: null
  },
  usage: acc.usage,
  costUsd: acc.costUsd,
  sessionId: acc.sessionId
})

const frame = (data: string) => Sse.encoder.write({ _tag: "Event", event: "message", id: undefined, data })

export const DONE = frame("[DONE]")

const addUsage = (a: TurnUsage, b: TurnUsage): TurnUsage => ({
  inputTokens: a.inputTokens + b.inputTokens,
  outputTokens: a.outputTokens + b.outputTokens,
  cacheReadTokens: a.cacheReadTokens + b.cacheReadTokens,
  cacheCreationTokens: a.cacheCreationTokens + b.cacheCreationTokens
})

/** Several independent runs of one request (`n`) as one completion: choice i is run i. */
export const mergeChoices = (runs: ReadonlyArray<AggregatedCompletion>): AggregatedCompletion => {
  const [first] = runs
  if (runs.length === 1 || first === undefined) return first!
  const usages = runs.map((run) => run.usage)
  const usage = usages.reduce(addUsage)
  const costs = runs.map((run) => run.costUsd)
  return {
    completion: {
      ...first.completion,
      choices: runs.map((run, index) => ({ ...run.completion.choices[0]!, index })),
      usage: completionUsage(usage)
    },
    usage,
    costUsd: costs.every((c) => c !== undefined) ? costs.reduce((a, b) => a! + b!, 0) : undefined,
    sessionId: first.sessionId
  }
}

/**
 * Render runs (one per choice) as `chat.completion.chunk` SSE frames: per choice the role first, a
 * delta per CLI delta (as soon as it arrives), the finish reason; then the usage chunk when asked,
 * and `[DONE]` once every choice has finished. A failure after the first byte becomes an SSE error
 * payload (openai-node raises it as an APIError) and ends the stream.
 */
export const sseFrames = <E, R>(
  runs: ReadonlyArray<Stream.Stream<TurnEvent, E, R>>,
  meta: CompletionMeta,
  options: {
    readonly includeUsage: boolean
    readonly onError: (error: E) => ErrorBody
    /** Extension: every chunk names the conversation. */
    readonly conversationId?: string | undefined
  }
): Stream.Stream<string, never, R> =>
  Stream.suspend(() => {
    let model = meta.model
    let usage: TurnUsage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 }
    const extra = options.conversationId === undefined ? {} : { conversation_id: options.conversationId }
    const head = () => ({ id: meta.id, object: "chat.completion.chunk" as const, created: meta.created, model, system_fingerprint: null, ...extra })
    const choiceFrames = (events: Stream.Stream<TurnEvent, E, R>, index: number) => {
      const chunk = (
        delta: ChatCompletionChunk["choices"][number]["delta"],
        finish: FinishReason | null = null
      ): string => {
        const body: ChatCompletionChunk = {
          ...head(),
          choices: [{ index, delta, finish_reason: finish, logprobs: null }],
          ...(options.includeUsage ? { usage: null } : {})
        }
        return frame(JSON.stringify(body))
      }
      let roleSent = false
      const role = (): Array<string> => {
        if (roleSent) return []
        roleSent = true
        return [chunk({ role: "assistant", content: "" })]
      }
      return events.pipe(
        Stream.mapConcat((event): Array<string> => {
          switch (event._tag) {
            case "Started":
              model = event.model
              return []
            case "Usage":
              return []
            case "TextDelta":
              return [...role(), chunk({ content: event.text })]
            case "ThinkingDelta":
              return [...role(), chunk({ reasoning_content: event.text })]
            case "ToolCallStarted":
              return [
                ...role(),
                chunk({ tool_calls: [{ index: event.index, id: event.id, type: "function", function: { name: event.name, arguments: "" } }] })
              ]
            case "ToolCallDelta":
              return [chunk({ tool_calls: [{ index: event.index, function: { arguments: event.arguments } }] })]
            case "Finished":
              usage = addUsage(usage, event.usage)
              return [...role(), chunk({}, event.reason)]
          }
        })
      )
    }
    const choices = runs.length === 1
      ? choiceFrames(runs[0]!, 0)
      : Stream.mergeAll(runs.map(choiceFrames), { concurrency: "unbounded" })
    const ending = Stream.sync(() => {
      const usageChunk: ChatCompletionChunk = { ...head(), choices: [], usage: completionUsage(usage) }
      return options.includeUsage ? [frame(JSON.stringify(usageChunk)), DONE] : [DONE]
    }).pipe(Stream.flattenIterables)
    return choices.pipe(
      Stream.concat(ending),
      Stream.catchAll((error) => Stream.succeed(frame(JSON.stringify(options.onError(error)))))
    )
  })
