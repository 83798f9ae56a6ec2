import { Chunk, Effect, Option, type Scope, Stream } from "effect"

/**
 * A turn's events are a Stream for everyone, and for the gateway's own aggregators also the pull
 * the Stream was made of. Folding a Stream runs Effect's channel machinery (~550 run-loop steps
 * for a 4-chunk turn); looping over its pull ~10 per chunk (bench/README.md, "Per-request CPU").
 * A Stream derived from this one (piped through any operator) is not known here and is folded as
 * a Stream.
 */

const pulls = new WeakMap<object, Effect.Effect<Chunk.Chunk<unknown>, Option.Option<unknown>, unknown>>()

/** The Stream of a pull (it fails with None at the end), remembered with it. Read it once. */
export const fromPull = <A, E, R = never>(pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>, R>): Stream.Stream<A, E, R> => {
  const stream = Stream.repeatEffectChunkOption(pull)
  pulls.set(stream, pull)
  return stream
}

/** A Stream of one chunk (it can be run again), and its pull for the first fold. */
export const fromChunk = <A>(chunk: Chunk.Chunk<A>): Stream.Stream<A> => {
  const stream = Stream.fromChunk(chunk)
  let sent = false
  pulls.set(stream, Effect.suspend(() => {
    if (sent) return Effect.fail(Option.none())
    sent = true
    return Effect.succeed(chunk)
  }))
  return stream
}

/** The pull a Stream was made of, if it was (handed out once: a pull is read once). */
const takePull = <A, E, R>(stream: Stream.Stream<A, E, R>) => {
  // Registered by fromPull or fromChunk, with the Stream's own A, E and R.
  const pull = pulls.get(stream) as Effect.Effect<Chunk.Chunk<A>, Option.Option<E>, R> | undefined
  if (pull !== undefined) pulls.delete(stream)
  return pull
}

/** The stream's pull: the one it was made of, else Stream.toPull's (in the caller's scope). Read it once. */
export const toPull = <A, E, R>(stream: Stream.Stream<A, E, R>): Effect.Effect<Effect.Effect<Chunk.Chunk<A>, Option.Option<E>, R>, never, Scope.Scope | R> => {
  const known = takePull(stream)
  return known === undefined ? Stream.toPull(stream) : Effect.succeed(known)
}

/** Apply `f` to each chunk, in order: over the pull when the Stream was made by `fromPull` or `fromChunk`. */
export const runForEachChunk = <A, E, R>(stream: Stream.Stream<A, E, R>, f: (chunk: Chunk.Chunk<A>) => void): Effect.Effect<void, E, R> => {
  const pull = takePull(stream)
  if (pull === undefined) return Stream.runForEachChunk(stream, (chunk) => Effect.sync(() => f(chunk)))
  const loop: Effect.Effect<void, E, R> = Effect.matchEffect(pull, {
    onFailure: Option.match({ onNone: () => Effect.void, onSome: Effect.fail }),
    onSuccess: (chunk) => {
      f(chunk)
      return loop
    }
  })
  return loop
}

/** Like `runForEachChunk`, an element at a time. */
export const runForEach = <A, E, R>(stream: Stream.Stream<A, E, R>, f: (a: A) => void): Effect.Effect<void, E, R> =>
  runForEachChunk(stream, (chunk) => {
    for (const a of chunk) f(a)
  })

/**
 * Pull until an element satisfies `until` (or the end), then the whole stream: those elements and
 * the rest. Failures before that point fail the effect; later ones fail the stream. (Stream.peel
 * turns failures of the rest into ChannelException defects in effect 3.22.)
 */
export const peelUntil = <A, E, R>(
  stream: Stream.Stream<A, E, R>,
  until: (a: A) => boolean
): Effect.Effect<Stream.Stream<A, E, R>, E, Scope.Scope | R> =>
  Effect.gen(function*() {
    const pull = yield* toPull(stream)
    let head = Chunk.empty<A>()
    for (;;) {
      const next = yield* Effect.catchAll(pull, (error) => Option.match(error, { onNone: () => Effect.succeed(undefined), onSome: Effect.fail }))
      if (next === undefined) return Stream.fromChunk(head)
      head = Chunk.appendAll(head, next)
      if (Chunk.some(next, until)) break
    }
    let first: Chunk.Chunk<A> | undefined = head
    return fromPull(Effect.suspend(() => {
      if (first === undefined) return pull
      const chunk = first
      first = undefined
      return Effect.succeed(chunk)
    }))
  })
