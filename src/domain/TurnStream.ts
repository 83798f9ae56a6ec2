import { Chunk, Effect, Option, Stream } from "effect"

/**
 * A turn's events are a Stream for everyone, and for the gateway's own aggregators also the pull
 * the Stream was made of. Folding a Stream runs Effect's channel machinery (~550 run-loop steps
 * for a 4-chunk turn); looping over its pull ~10 per chunk (bench/README.md, "Per-request CPU").
 * A Stream derived from this one (piped through any operator) is not known here and is folded as
 * a Stream.
 */

const pulls = new WeakMap<object, Effect.Effect<Chunk.Chunk<unknown>, Option.Option<unknown>>>()

/** The Stream of a pull (it fails with None at the end), remembered with it. Read it once. */
export const fromPull = <A, E>(pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>>): Stream.Stream<A, E> => {
  const stream = Stream.repeatEffectChunkOption(pull)
  pulls.set(stream, pull)
  return stream
}

/** Apply `f` to each element, in order: over the pull when the Stream was made by `fromPull`. */
export const runForEach = <A, E, R>(stream: Stream.Stream<A, E, R>, f: (a: A) => void): Effect.Effect<void, E, R> => {
  // Made by fromPull, with the same A and E.
  const pull = pulls.get(stream) as Effect.Effect<Chunk.Chunk<A>, Option.Option<E>> | undefined
  if (pull === undefined) return Stream.runForEach(stream, (a) => Effect.sync(() => f(a)))
  pulls.delete(stream)
  const loop: Effect.Effect<void, E> = Effect.matchEffect(pull, {
    onFailure: Option.match({ onNone: () => Effect.void, onSome: Effect.fail }),
    onSuccess: (chunk) => {
      for (const a of chunk) f(a)
      return loop
    }
  })
  return loop
}
