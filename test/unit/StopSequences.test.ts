import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import { applyStop } from "../../src/domain/StopSequences.js"
import { TurnEvent } from "../../src/domain/Turn.js"

const usage = { inputTokens: 3, outputTokens: 2, cacheReadTokens: 0, cacheCreationTokens: 0 }
const turn = (...texts: Array<string>) =>
  Stream.fromIterable<TurnEvent>([
    TurnEvent.Started({ model: "m", sessionId: "s" }),
    TurnEvent.Usage({ usage }),
    ...texts.map((text) => TurnEvent.TextDelta({ text })),
    TurnEvent.Finished({ reason: "stop", usage: { ...usage, outputTokens: 9 }, costUsd: 0.1, sessionId: "s" })
  ])

const run = (stream: Stream.Stream<TurnEvent>) => Effect.map(Stream.runCollect(stream), Chunk.toArray)
const textOf = (events: ReadonlyArray<TurnEvent>) => events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")

describe("applyStop", () => {
  it.effect("passes a turn through unchanged without stop sequences", () =>
    Effect.gen(function*() {
      const events = yield* run(applyStop(turn("a", "b"), []))
      expect(events.map((e) => e._tag)).toEqual(["Started", "Usage", "TextDelta", "TextDelta", "Finished"])
    }))

  it.effect("cuts before a sequence that spans deltas and finishes with the usage so far", () =>
    Effect.gen(function*() {
      const events = yield* run(applyStop(turn("Hello wor", "ld EN", "D more"), ["END"]))
      expect(textOf(events)).toBe("Hello world ")
      const last = events.at(-1)!
      expect(last._tag).toBe("Finished")
      expect(last._tag === "Finished" && last.reason).toBe("stop")
      expect(last._tag === "Finished" && last.usage).toEqual(usage)
    }))

  it.effect("uses the earliest of several sequences", () =>
    Effect.gen(function*() {
      const events = yield* run(applyStop(turn("one two three"), ["three", "two"]))
      expect(textOf(events)).toBe("one ")
    }))

  it.effect("releases held-back text when the turn ends without a match", () =>
    Effect.gen(function*() {
      const events = yield* run(applyStop(turn("abc", "de"), ["xyz1"]))
      expect(textOf(events)).toBe("abcde")
      expect(events.at(-1)!._tag).toBe("Finished")
      expect(events.at(-1)!._tag === "Finished" && events.at(-1)).toMatchObject({ costUsd: 0.1 })
    }))
})
