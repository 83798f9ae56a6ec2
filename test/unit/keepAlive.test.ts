import { Chunk, Effect, Either, Stream } from "effect"
import { describe, expect, it } from "vitest"
import { withKeepAlive } from "../../src/http/keepAlive.js"

const KEEP = ": keep-alive\n\n"
const run = <E>(stream: Stream.Stream<string, E>) => Effect.runPromise(Effect.either(Stream.runCollect(stream)))

describe("withKeepAlive", () => {
  it("adds a comment only after a silence, never after the end", async () => {
    const frames = Stream.concat(
      Stream.fromIterable(["a", "b"]),
      Stream.fromEffect(Effect.as(Effect.sleep("130 millis"), "c"))
    )
    const out = await run(withKeepAlive(frames, 0.05, KEEP))
    const items = Chunk.toArray(Either.getOrThrow(out))
    // The frames of one chunk come as one string (one write to the socket).
    expect(items[0]).toBe("ab")
    expect(items.at(-1)).toBe("c")
    expect(items.filter((x) => x === KEEP).length).toBeGreaterThanOrEqual(1)
  })

  it("passes a failure of the frames on", async () => {
    const frames = Stream.concat(Stream.make("a"), Stream.fail("broken"))
    expect(await run(withKeepAlive(frames, 10, KEEP))).toEqual(Either.left("broken"))
  })
})
