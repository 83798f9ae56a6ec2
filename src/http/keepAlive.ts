import { Chunk, Effect, Stream } from "effect"

/**
 * `frames`, with `comment` whenever `seconds` pass without a frame, a chunk of frames joined into one
 * string. A Node timer re-armed per chunk instead of a merged tick stream: a merge costs two fibers
 * and a hand-off for every frame.
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
            // A chunk's frames as one string: one TextEncoder call and one `res.write` (three
            // buffers of chunked encoding in the socket's writev) per chunk instead of per frame.
            if (Chunk.isNonEmpty(chunk)) emit.single(chunk.length === 1 ? Chunk.headNonEmpty(chunk) : Chunk.join(chunk, ""))
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

