import { HttpServerResponse } from "@effect/platform"
import { Cause, Chunk, Effect, Exit, Option, type Scope, Stream } from "effect"
import { Readable } from "node:stream"
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

/** Text held for a consumer that is not reading before the producer waits (Readable's default). */
const HIGH_WATER = 16 * 1024

/**
 * An SSE body as a Node Readable, which the platform pipes into the socket (a raw body). Text
 * handed on while the consumer is not reading (before the response's headers are out, or while the
 * socket is full) is held and joined: a turn whose events are all there at once (a short answer, a
 * cache replay) goes out as one socket write, not one per chunk of events.
 */
export class SseReadable extends Readable {
  #wake: (() => void) | undefined = undefined
  #held = ""
  #reading = false
  #closing = false
  #eof = false

  /** Hand on `text`; false when the consumer is behind (then wait with `waitForRead`). */
  send(text: string): boolean {
    if (text === "" || this.destroyed || this.#closing) return true
    this.#held += text
    if (this.#reading) this.#flush()
    return this.#held.length < HIGH_WATER
  }

  /** No more text: the body ends once what is held is read. */
  close() {
    this.#closing = true
    if (this.#reading || this.#held === "") this.#flush()
  }

  /** Resumes when the consumer reads again. */
  readonly waitForRead: Effect.Effect<void> = Effect.async<void>((resume) => {
    this.#wake = () => resume(Effect.void)
    return Effect.sync(() => {
      this.#wake = undefined
    })
  })

  override _read() {
    this.#reading = true
    this.#flush()
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }

  #flush() {
    if (this.destroyed) return
    if (this.#held !== "") {
      const text = this.#held
      this.#held = ""
      this.#reading = this.push(text)
    }
    if (this.#closing && !this.#eof) {
      this.#eof = true
      this.push(null)
    }
  }
}

/**
 * An SSE response: the frames of each chunk of events as one string (one socket write per chunk,
 * not per frame), `keepAlive.comment` whenever its seconds pass without a write, `end()` after the
 * last event, or `error`'s frame instead of it when the events fail. The events are read by a
 * fiber in the request's scope (cut when the client goes away) straight into a Readable the
 * platform pipes to the socket: a Stream body costs a streamed turn ~1 000 run-loop steps of
 * channel machinery (asyncPush, the platform's runForEachChunk), this a loop over the events' pull
 * (bench/README.md, "Per-request CPU").
 */
export const sseResponse = <E>(
  events: Stream.Stream<TurnEvent, E>,
  render: {
    /** The frames of one event ("" for none). */
    readonly frames: (event: TurnEvent) => string
    readonly end: () => string
    readonly error: (error: E) => string
    /** Run once a chunk is rendered, before its text is sent (e.g. store what the client will read as done). */
    readonly rendered?: (chunk: Chunk.Chunk<TurnEvent>) => Effect.Effect<void>
  },
  keepAlive: KeepAlive,
  headers: Record<string, string>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pull = yield* TurnStream.toPull(events)
    const body = new SseReadable()
    let timer: ReturnType<typeof setTimeout> | undefined
    const arm = () => {
      if (keepAlive.seconds === 0) return
      clearTimeout(timer)
      timer = setTimeout(() => {
        body.send(keepAlive.comment)
        arm()
      }, keepAlive.seconds * 1000)
    }
    const send = (text: string) => {
      if (text === "") return true
      arm()
      return body.send(text)
    }
    // The next pull once `text` is handed on; a consumer that is behind is waited for first.
    const deliver = (text: string): Effect.Effect<void, E> => send(text) ? loop : Effect.zipRight(body.waitForRead, loop)
    const loop: Effect.Effect<void, E> = Effect.matchEffect(pull, {
      onFailure: (error) => {
        send(Option.isSome(error) ? render.error(error.value) : render.end())
        return Effect.void
      },
      onSuccess: (chunk: Chunk.Chunk<TurnEvent>) => {
        let text = ""
        for (const event of chunk) text += render.frames(event)
        return render.rendered === undefined ? deliver(text) : Effect.zipRight(render.rendered(chunk), Effect.suspend(() => deliver(text)))
      }
    })
    arm()
    yield* loop.pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          clearTimeout(timer)
          if (Exit.isSuccess(exit)) body.close()
          // Cut (the client went away) or a defect: the response ends without its last frame.
          else body.destroy(Cause.isInterruptedOnly(exit.cause) ? undefined : Cause.squash(exit.cause) as Error)
        })
      ),
      Effect.forkScoped
    )
    return HttpServerResponse.raw(body, { contentType: "text/event-stream", headers })
  })
