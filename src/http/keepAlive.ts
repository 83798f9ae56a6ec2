import { Chunk, Effect, Stream } from "effect"

/**
 * `frames`, with `comment` whenever `seconds` pass without a frame. A Node timer re-armed per chunk
 * instead of a merged tick stream: a merge costs two fibers and a hand-off for every frame.
 */
export const withKeepAlive = <E>(frames: Stream.Stream<string, E>, seconds: number, comment: string): Stream.Stream<string, E> =>
  Stream.asyncPush<string, E>((emit) =>
    Effect.gen(function*() {
      let timer: ReturnType<typeof setTimeout> | undefined
      const arm = () => {
        clearTimeout(timer)
        timer = setTimeout(() => {
          emit.single(comment)
          arm()
        }, seconds * 1000)
      }
      yield* Effect.addFinalizer(() => Effect.sync(() => clearTimeout(timer)))
      arm()
      yield* frames.pipe(
        Stream.runForEachChunk((chunk) =>
          Effect.sync(() => {
            // A copy: the mailbox may keep the array it is given and append to it, and a chunk's
            // backing array can be shared with the chunks it was made from.
            emit.array(Chunk.toArray(chunk))
            arm()
          })
        ),
        Effect.matchCauseEffect({
          onFailure: (cause) => Effect.sync(() => emit.halt(cause)),
          onSuccess: () => Effect.sync(() => emit.end())
        }),
        Effect.forkScoped
      )
    }))

