import { Chunk, Effect, Option, type Scope, Stream } from "effect"

/**
 * Pull elements until one satisfies `until` (or the stream ends), and return them with the rest of
 * the stream. Failures before that point fail the effect; later ones fail the rest. (Stream.peel
 * turns failures of the rest into ChannelException defects in effect 3.22.)
 */
export const peelUntil = <A, E, R>(
  stream: Stream.Stream<A, E, R>,
  until: (a: A) => boolean
): Effect.Effect<readonly [Chunk.Chunk<A>, Stream.Stream<A, E, R>], E, Scope.Scope | R> =>
  Effect.gen(function*() {
    const pull = yield* Stream.toPull(stream)
    let head = Chunk.empty<A>()
    for (;;) {
      const next = yield* Effect.catchAll(pull, (error) =>
        Option.match(error, { onNone: () => Effect.succeed(undefined), onSome: Effect.fail }))
      if (next === undefined) return [head, Stream.empty] as const
      head = Chunk.appendAll(head, next)
      if (Chunk.some(next, until)) return [head, Stream.repeatEffectChunkOption(pull)] as const
    }
  })
