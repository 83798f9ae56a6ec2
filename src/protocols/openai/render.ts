import * as Sse from "@effect/experimental/Sse"
import { Effect, Stream } from "effect"
import { type KeepAlive, sseResponse } from "../../http/sse.js"
import * as TurnStream from "../../domain/TurnStream.js"
import type { FinishReason, ToolCall, TurnEvent, TurnUsage } from "../../domain/Turn.js"
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

/** Collect a whole turn into one `chat.completion`. */
export const aggregate = <E, R>(
  events: Stream.Stream<TurnEvent, E, R>,
  meta: CompletionMeta
): Effect.Effect<AggregatedCompletion, E, R> =>
  Effect.suspend(() => {
    const acc: Aggregate = {
      model: meta.model,
      text: "",
      reasoning: "",
      finish: "stop",
      toolCalls: [],
      usage: { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 },
      costUsd: undefined,
      sessionId: undefined
    }
    return Effect.as(TurnStream.runForEach(events, (event) => {
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
    }), acc)
  }).pipe(Effect.map((acc) => ({
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
  })))

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

interface FrameOptions<E> {
  readonly includeUsage: boolean
  readonly onError: (error: E) => ErrorBody
  /** Extension: every chunk names the conversation. */
  readonly conversationId?: string | undefined
}

/**
 * `chat.completion.chunk` frames of a response: per choice the role first, a delta per CLI delta,
 * the finish reason; at the end the usage chunk when asked, and `[DONE]`; a failure after the first
 * byte as an SSE error payload (openai-node raises it as an APIError) instead of the end.
 */
const frameRenderer = <E>(meta: CompletionMeta, options: FrameOptions<E>) => {
  let model = meta.model
  let usage: TurnUsage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 }
  const extra = options.conversationId === undefined ? {} : { conversation_id: options.conversationId }
  const head = () => ({ id: meta.id, object: "chat.completion.chunk" as const, created: meta.created, model, system_fingerprint: null, ...extra })
  /** The frames of one choice's events, each as it comes. */
  const choice = (index: number) => {
    const chunk = (delta: ChatCompletionChunk["choices"][number]["delta"], finish: FinishReason | null = null): string => {
      const body: ChatCompletionChunk = {
        ...head(),
        choices: [{ index, delta, finish_reason: finish, logprobs: null }],
        ...(options.includeUsage ? { usage: null } : {})
      }
      return frame(JSON.stringify(body))
    }
    let roleSent = false
    const role = (): string => {
      if (roleSent) return ""
      roleSent = true
      return chunk({ role: "assistant", content: "" })
    }
    return (event: TurnEvent): string => {
      switch (event._tag) {
        case "Started":
          model = event.model
          return ""
        case "Usage":
          return ""
        case "TextDelta":
          return role() + chunk({ content: event.text })
        case "ThinkingDelta":
          return role() + chunk({ reasoning_content: event.text })
        case "ToolCallStarted":
          return role() + chunk({ tool_calls: [{ index: event.index, id: event.id, type: "function", function: { name: event.name, arguments: "" } }] })
        case "ToolCallDelta":
          return chunk({ tool_calls: [{ index: event.index, function: { arguments: event.arguments } }] })
        case "Finished":
          usage = addUsage(usage, event.usage)
          return role() + chunk({}, event.reason)
      }
    }
  }
  const end = (): string => {
    const usageChunk: ChatCompletionChunk = { ...head(), choices: [], usage: completionUsage(usage) }
    return options.includeUsage ? frame(JSON.stringify(usageChunk)) + DONE : DONE
  }
  const error = (error: E): string => frame(JSON.stringify(options.onError(error)))
  return { choice, end, error }
}

/** One choice's SSE response (see frameRenderer and sseResponse). */
export const sseChoiceResponse = <E>(
  run: Stream.Stream<TurnEvent, E>,
  meta: CompletionMeta,
  options: FrameOptions<E>,
  keepAlive: KeepAlive,
  headers: Record<string, string>
) => {
  const render = frameRenderer(meta, options)
  return sseResponse(run, { frames: render.choice(0), end: render.end, error: render.error }, keepAlive, headers)
}

/** Several choices' frames as they come, merged (see frameRenderer). */
export const sseFrames = <E, R>(
  runs: ReadonlyArray<Stream.Stream<TurnEvent, E, R>>,
  meta: CompletionMeta,
  options: FrameOptions<E>
): Stream.Stream<string, never, R> =>
  Stream.suspend(() => {
    const render = frameRenderer(meta, options)
    const choices = Stream.mergeAll(runs.map((events, index) => Stream.map(events, render.choice(index))), { concurrency: "unbounded" })
    return choices.pipe(
      Stream.filter((text) => text !== ""),
      Stream.concat(Stream.sync(render.end)),
      Stream.catchAll((error) => Stream.succeed(render.error(error)))
    )
  })
