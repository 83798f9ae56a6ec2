import type { HttpServerResponse } from "@effect/platform"
import { Effect, type Scope } from "effect"
import { Readable } from "node:stream"

/** The frames of an SSE response made by src/http/sse.ts (`\n\n`-terminated), read to its end. */
export const sseFramesOf = <E, R>(response: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R | Scope.Scope>) =>
  Effect.scoped(Effect.gen(function*() {
    const body = (yield* response).body
    if (body._tag !== "Raw" || !(body.body instanceof Readable)) return yield* Effect.die("not a Readable body")
    const readable = body.body
    const text = yield* Effect.promise(async () => {
      const chunks: Array<Buffer> = []
      for await (const chunk of readable) chunks.push(chunk as Buffer)
      return Buffer.concat(chunks).toString("utf8")
    })
    return text.split(/(?<=\n\n)/).filter((frame) => frame !== "")
  }))
