import { Cause, Effect, Option, Stream } from "effect"
import type { TurnEvent } from "../domain/Turn.js"
import * as TurnStream from "../domain/TurnStream.js"

/** What every dialect's SSE responses share. */

/** An SSE comment: clients ignore it, proxies see the stream is alive. */
export const KEEP_ALIVE = ": keep-alive\n\n"

export const SSE_HEADERS = {
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
  connection: "keep-alive"
}

/** Headers are committed with the first byte: wait for the first content (or a failure) before that. */
export const commits = (event: TurnEvent) => event._tag !== "Started"

export interface KeepAlive {
  /** 0: none. */
  readonly seconds: number
  readonly comment: string
}

const encoder = new TextEncoder()

/**
 * An SSE response body: the frames of each chunk of events as one string (one encode and one
 * socket write per chunk, not per frame), `keepAlive.comment` whenever its seconds pass without a
 * write, `end()` after the last event, or `error`'s frame instead of it when the events fail.
 * One Stream layer over the events' pull (TurnStream) and a Node timer: a pipeline of Stream
 * operators (map, concat, catchAll, a keep-alive merge, encodeText) cost a streamed turn ~1 800
 * run-loop steps (bench/README.md, "Per-request CPU").
 */
export const sseBody = <E>(
  events: Stream.Stream<TurnEvent, E>,
  render: {
    /** The frames of one event ("" for none). */
    readonly frames: (event: TurnEvent) => string
    readonly end: () => string
    readonly error: (error: E) => string
  },
  keepAlive: KeepAlive
): Stream.Stream<Uint8Array> =>
  Stream.asyncPush<Uint8Array>((emit) =>
    Effect.gen(function*() {
      let timer: ReturnType<typeof setTimeout> | undefined
      const arm = () => {
        if (keepAlive.seconds === 0) return
        clearTimeout(timer)
        timer = setTimeout(() => {
          emit.single(encoder.encode(keepAlive.comment))
          arm()
        }, keepAlive.seconds * 1000)
      }
      const send = (text: string) => {
        if (text === "") return
        emit.single(encoder.encode(text))
        arm()
      }
      yield* Effect.addFinalizer(() => Effect.sync(() => clearTimeout(timer)))
      arm()
      yield* TurnStream.runForEachChunk(events, (chunk) => {
        let text = ""
        for (const event of chunk) text += render.frames(event)
        send(text)
      }).pipe(
        Effect.matchCauseEffect({
          onSuccess: () => Effect.sync(() => send(render.end())),
          onFailure: (cause) =>
            Effect.sync(() => {
              const failure = Cause.failureOption(cause)
              if (Option.isSome(failure)) send(render.error(failure.value))
              else emit.halt(Cause.stripFailures(cause))
            })
        }),
        Effect.ensuring(Effect.sync(() => emit.end())),
        Effect.forkScoped
      )
    })
  )
