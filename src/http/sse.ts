import type { TurnEvent } from "../domain/Turn.js"

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
