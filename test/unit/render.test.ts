import { describe, expect, it } from "@effect/vitest"
import { Chunk, Data, Effect, Option, Schema, Stream } from "effect"
import { aggregate, type CompletionMeta, completionUsage, DONE, sseChoiceResponse, sseFrames } from "../../src/protocols/openai/render.js"
import { ChatCompletionChunk, type ErrorBody } from "../../src/protocols/openai/Schema.js"
import { TurnEvent, type TurnUsage } from "../../src/domain/Turn.js"
import * as TurnStream from "../../src/domain/TurnStream.js"
import { sseFramesOf } from "../support/sseBody.js"

class Boom extends Data.TaggedError("Boom")<{ readonly reason: string }> {}

const meta: CompletionMeta = { id: "chatcmpl-test", created: 1_700_000_000, model: "sonnet" }

const usage: TurnUsage = { inputTokens: 10, outputTokens: 5, cacheReadTokens: 100, cacheCreationTokens: 20 }

const started = TurnEvent.Started({ model: "claude-sonnet-5-5", sessionId: "s1" })
const finished = (reason: "stop" | "length" = "stop") =>
  TurnEvent.Finished({ reason, usage, costUsd: 0.25, sessionId: "s1" })

const turn: ReadonlyArray<TurnEvent> = [
  started,
  TurnEvent.ThinkingDelta({ text: "Let me " }),
  TurnEvent.ThinkingDelta({ text: "think." }),
  TurnEvent.TextDelta({ text: "Hel" }),
  TurnEvent.TextDelta({ text: "lo" }),
  finished()
]

const onError = (error: Boom): ErrorBody => ({
  error: { message: `failed: ${error.reason}`, type: "server_error", param: null, code: "boom" }
})

/** The response body of one choice (the bytes a client reads), cut into its frames. */
const collectFrames = <E>(events: Stream.Stream<TurnEvent, E>, includeUsage: boolean, handle: (error: E) => ErrorBody) =>
  sseFramesOf(sseChoiceResponse(events, meta, { includeUsage, onError: handle }, { seconds: 0, comment: "" }, {}))

/** Several choices' frames, as they come. */
const collectChoiceFrames = <E>(runs: ReadonlyArray<Stream.Stream<TurnEvent, E>>, handle: (error: E) => ErrorBody) =>
  sseFrames(runs, meta, { includeUsage: true, onError: handle }).pipe(
    Stream.mkString,
    Effect.map((text) => text.split(/(?<=\n\n)/).filter((frame) => frame !== ""))
  )

const noError = (): ErrorBody => {
  throw new Error("no error expected")
}

/** `data: <payload>\n\n` → payload; fails the test on any other framing. */
const payloadOf = (frame: string): string => {
  expect(frame.startsWith("data: "), frame).toBe(true)
  expect(frame.endsWith("\n\n"), frame).toBe(true)
  const payload = frame.slice("data: ".length, -2)
  expect(payload).not.toContain("\n")
  return payload
}

/** A frame's chunk, checked against the wire schema (no extra keys allowed). */
const chunkOf = (frame: string): ChatCompletionChunk =>
  Schema.decodeUnknownSync(ChatCompletionChunk, { onExcessProperty: "error" })(JSON.parse(payloadOf(frame)))

describe("completionUsage", () => {
  it("counts cached and cache-creation tokens into prompt_tokens", () => {
    expect(completionUsage(usage)).toEqual({
      prompt_tokens: 130,
      completion_tokens: 5,
      total_tokens: 135,
      prompt_tokens_details: { cached_tokens: 100 },
      completion_tokens_details: { reasoning_tokens: 0 }
    })
  })

  it("is all zeros for an empty turn", () => {
    expect(completionUsage({ inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 })).toMatchObject({
      prompt_tokens: 0,
      completion_tokens: 0,
      total_tokens: 0
    })
  })
})

describe("aggregate", () => {
  it.effect("collects a turn into one chat.completion", () =>
    Effect.gen(function*() {
      const result = yield* aggregate(Stream.fromIterable(turn), meta)
      expect(result.costUsd).toBe(0.25)
      expect(result.sessionId).toBe("s1")
      expect(result.completion).toEqual({
        id: "chatcmpl-test",
        object: "chat.completion",
        created: 1_700_000_000,
        model: "claude-sonnet-5-5",
        choices: [{
          index: 0,
          message: { role: "assistant", content: "Hello", refusal: null, reasoning_content: "Let me think." },
          finish_reason: "stop",
          logprobs: null
        }],
        usage: completionUsage(usage),
        system_fingerprint: null
      })
    }))

  it.effect("omits reasoning_content without thinking and keeps the finish reason", () =>
    Effect.gen(function*() {
      const { completion } = yield* aggregate(
        Stream.make(started, TurnEvent.TextDelta({ text: "cut" }), finished("length")),
        meta
      )
      const [choice] = completion.choices
      expect(choice?.message).not.toHaveProperty("reasoning_content")
      expect(choice?.message.content).toBe("cut")
      expect(choice?.finish_reason).toBe("length")
    }))

  it.effect("keeps the requested model until the CLI reports one", () =>
    Effect.gen(function*() {
      const { completion } = yield* aggregate(Stream.make(finished()), meta)
      expect(completion.model).toBe("sonnet")
      expect(completion.choices[0]?.message.content).toBe("")
    }))

  it.effect("fails with the stream's error", () =>
    Effect.gen(function*() {
      const events = Stream.concat(Stream.make(started, TurnEvent.TextDelta({ text: "partial" })), Stream.fail(new Boom({ reason: "x" })))
      const error = yield* aggregate(events, meta).pipe(Effect.flip)
      expect(error).toEqual(new Boom({ reason: "x" }))
    }))
})

describe("sseFrames", () => {
  it.effect("streams role, reasoning, content, finish, usage, then [DONE]", () =>
    Effect.gen(function*() {
      const frames = yield* collectFrames(Stream.fromIterable(turn), true, noError)
      expect(frames).toHaveLength(8)
      expect(frames.at(-1)).toBe("data: [DONE]\n\n")
      expect(frames.at(-1)).toBe(DONE)
      const chunks = frames.slice(0, -1).map(chunkOf)
      for (const chunk of chunks) {
        expect(chunk).toMatchObject({
          id: "chatcmpl-test",
          object: "chat.completion.chunk",
          created: 1_700_000_000,
          model: "claude-sonnet-5-5",
          system_fingerprint: null
        })
      }
      const deltas = chunks.slice(0, 6).map((chunk) => {
        expect(chunk.choices).toHaveLength(1)
        expect(chunk.usage).toBeNull()
        const [choice] = chunk.choices
        expect(choice?.index).toBe(0)
        expect(choice?.logprobs).toBeNull()
        return [choice?.delta, choice?.finish_reason]
      })
      expect(deltas).toEqual([
        [{ role: "assistant", content: "" }, null],
        [{ reasoning_content: "Let me " }, null],
        [{ reasoning_content: "think." }, null],
        [{ content: "Hel" }, null],
        [{ content: "lo" }, null],
        [{}, "stop"]
      ])
      const usageChunk = chunks[6]
      expect(usageChunk?.choices).toEqual([])
      expect(usageChunk?.usage).toEqual(completionUsage(usage))
    }))

  it.effect("sends one content chunk per TextDelta and no usage without include_usage", () =>
    Effect.gen(function*() {
      const texts = ["a", "b", "c", "d"]
      const events = Stream.make(
        started,
        ...texts.map((text) => TurnEvent.TextDelta({ text })),
        finished("length")
      )
      const frames = yield* collectFrames(events, false, noError)
      expect(frames).toHaveLength(1 + texts.length + 1 + 1)
      expect(frames.at(-1)).toBe("data: [DONE]\n\n")
      const chunks = frames.slice(0, -1).map(chunkOf)
      for (const chunk of chunks) {
        expect(chunk).not.toHaveProperty("usage")
        expect(chunk.choices).toHaveLength(1)
      }
      expect(chunks[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "" })
      expect(chunks.slice(1, -1).map((c) => c.choices[0]?.delta.content)).toEqual(texts)
      expect(chunks.at(-1)?.choices[0]).toMatchObject({ delta: {}, finish_reason: "length" })
    }))

  it.effect("sends the role chunk even when the turn has no text", () =>
    Effect.gen(function*() {
      const frames = yield* collectFrames(Stream.make(finished()), false, noError)
      expect(frames).toHaveLength(3)
      const [role, finish] = frames.slice(0, 2).map(chunkOf)
      expect(role?.choices[0]?.delta).toEqual({ role: "assistant", content: "" })
      expect(finish?.choices[0]?.finish_reason).toBe("stop")
      // no Started: the requested model is kept
      expect(role?.model).toBe("sonnet")
      expect(frames[2]).toBe(DONE)
    }))

  it.effect("turns a failure mid-stream into a single error frame and no [DONE]", () =>
    Effect.gen(function*() {
      const events = Stream.concat(
        Stream.make(started, TurnEvent.TextDelta({ text: "partial" })),
        Stream.fail(new Boom({ reason: "upstream went away" }))
      )
      const frames = yield* collectFrames(events, true, onError)
      expect(frames).toHaveLength(3)
      expect(frames).not.toContain(DONE)
      expect(chunkOf(frames[1]!).choices[0]?.delta).toEqual({ content: "partial" })
      const last = frames[2]!
      expect(last.startsWith(`data: {"error":`)).toBe(true)
      expect(JSON.parse(payloadOf(last))).toEqual({
        error: { message: "failed: upstream went away", type: "server_error", param: null, code: "boom" }
      })
    }))

  it.effect("turns a failure before any event into the error frame alone", () =>
    Effect.gen(function*() {
      const frames = yield* collectFrames(Stream.fail(new Boom({ reason: "early" })), false, onError)
      expect(frames).toHaveLength(1)
      expect(JSON.parse(payloadOf(frames[0]!))).toMatchObject({ error: { message: "failed: early" } })
    }))

  it.effect("escapes newlines in deltas inside one data line", () =>
    Effect.gen(function*() {
      const frames = yield* collectFrames(
        Stream.make(TurnEvent.TextDelta({ text: "line 1\n\nline 2" }), finished()),
        false,
        noError
      )
      expect(chunkOf(frames[1]!).choices[0]?.delta.content).toBe("line 1\n\nline 2")
    }))

  it.effect("reads a turn's pull (TurnStream) into the same bytes as its Stream", () =>
    Effect.gen(function*() {
      const chunks = [turn.slice(0, 2), turn.slice(2, 5), turn.slice(5)].map(Chunk.fromIterable)
      let next = 0
      const pulled = TurnStream.fromPull(Effect.suspend(() => {
        const chunk = chunks[next++]
        return chunk === undefined ? Effect.fail(Option.none()) : Effect.succeed(chunk)
      }))
      expect(yield* collectFrames(pulled, true, noError)).toEqual(yield* collectFrames(Stream.fromIterable(turn), true, noError))
    }))

  it.effect("merges several choices: each its own index, one usage chunk and [DONE] after all of them", () =>
    Effect.gen(function*() {
      const two = (text: string) => Stream.make(started, TurnEvent.TextDelta({ text }), finished())
      const frames = yield* collectChoiceFrames([two("a"), two("b")], noError)
      expect(frames.at(-1)).toBe(DONE)
      const chunks = frames.slice(0, -1).map(chunkOf)
      const byIndex = (index: number) => chunks.flatMap((chunk) => chunk.choices.filter((choice) => choice.index === index).map((choice) => choice.delta.content))
      expect(byIndex(0)).toEqual(["", "a", undefined])
      expect(byIndex(1)).toEqual(["", "b", undefined])
      expect(chunks.filter((chunk) => chunk.choices.length === 0)).toHaveLength(1)
    }))
})
