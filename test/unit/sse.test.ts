import { Effect, Exit, Scope, Stream } from "effect"
import { Readable } from "node:stream"
import { describe, expect, it } from "vitest"
import { SseReadable, sseResponse } from "../../src/http/sse.js"
import { TurnEvent } from "../../src/domain/Turn.js"

const render = {
  frames: (event: TurnEvent) => event._tag === "TextDelta" ? `data: ${event.text}\n\n` : "",
  end: () => "data: [DONE]\n\n",
  error: (error: string) => `data: error ${error}\n\n`
}
const noKeepAlive = { seconds: 0, comment: "" }

/** The response's body, opened in `scope`. */
const open = <E>(events: Stream.Stream<TurnEvent, E>, scope: Scope.CloseableScope, keepAlive = noKeepAlive) =>
  Effect.runPromise(
    Effect.map(Scope.extend(sseResponse(events, render as never, keepAlive, {}), scope), (response) => {
      const body = response.body
      if (body._tag !== "Raw" || !(body.body instanceof SseReadable)) throw new Error("not an SSE body")
      return body.body
    })
  )

const readAll = async (body: Readable) => {
  const chunks: Array<Buffer> = []
  for await (const chunk of body) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8")
}

const texts = (n: number, size: number) => Array.from({ length: n }, (_, i) => `${String(i).padStart(6, "0")}${"x".repeat(size)}`)

describe("sseResponse", () => {
  it("writes each chunk's frames, then the end", async () => {
    const scope = Effect.runSync(Scope.make())
    const body = await open(Stream.fromIterable(["a", "b", "c"].map((text) => TurnEvent.TextDelta({ text }))), scope)
    expect(await readAll(body)).toBe("data: a\n\ndata: b\n\ndata: c\n\ndata: [DONE]\n\n")
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  it("joins what was handed on before the consumer reads into one chunk (one socket write)", async () => {
    const scope = Effect.runSync(Scope.make())
    const events = Stream.fromIterable(["a", "b", "c"].map((text) => TurnEvent.TextDelta({ text }))).pipe(Stream.rechunk(1))
    const body = await open(events, scope)
    await new Promise((resolve) => setTimeout(resolve, 20))
    const chunks: Array<string> = []
    body.on("data", (chunk: Buffer) => chunks.push(chunk.toString("utf8")))
    await new Promise((resolve) => body.once("end", resolve))
    expect(chunks).toEqual(["data: a\n\ndata: b\n\ndata: c\n\ndata: [DONE]\n\n"])
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  it("writes the error's frame instead of the end when the events fail", async () => {
    const scope = Effect.runSync(Scope.make())
    const events = Stream.concat(Stream.make(TurnEvent.TextDelta({ text: "a" })), Stream.fail("boom"))
    expect(await readAll(await open(events, scope))).toBe("data: a\n\ndata: error boom\n\n")
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  it("stops reading the events while the consumer does not read, and loses nothing", async () => {
    const scope = Effect.runSync(Scope.make())
    const parts = texts(2000, 1000)
    let pulled = 0
    const events = Stream.fromIterable(parts).pipe(
      Stream.rechunk(1),
      Stream.tap(() => Effect.sync(() => pulled++)),
      Stream.map((text) => TurnEvent.TextDelta({ text }))
    )
    const body = await open(events, scope)
    await new Promise((resolve) => setTimeout(resolve, 100))
    // ~2 MB on offer; without backpressure every event would be buffered by now.
    expect(pulled).toBeLessThan(100)
    expect(body.readableLength).toBeLessThan(64 * 1024)
    expect(await readAll(body)).toBe(parts.map((text) => `data: ${text}\n\n`).join("") + "data: [DONE]\n\n")
    expect(pulled).toBe(2000)
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  it("closing the request's scope mid-stream stops reading the events and cuts the body", async () => {
    const scope = Effect.runSync(Scope.make())
    let interrupted = false
    const events = Stream.concat(
      Stream.make(TurnEvent.TextDelta({ text: "a" })),
      Stream.fromEffect(Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => {
        interrupted = true
      }))))
    )
    const body = await open(events, scope)
    const first = await new Promise<string>((resolve) => body.once("data", (chunk: Buffer) => resolve(chunk.toString("utf8"))))
    expect(first).toBe("data: a\n\n")
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await new Promise((resolve) => setImmediate(resolve))
    expect(interrupted).toBe(true)
    expect(body.destroyed).toBe(true)
    expect(body.readableEnded).toBe(false)
  })

  it("sends the keep-alive comment after a silence", async () => {
    const scope = Effect.runSync(Scope.make())
    const events = Stream.concat(
      Stream.make(TurnEvent.TextDelta({ text: "a" })),
      Stream.fromEffect(Effect.as(Effect.sleep("130 millis"), TurnEvent.TextDelta({ text: "b" })))
    )
    const out = await readAll(await open(events, scope, { seconds: 0.05, comment: ": ka\n\n" }))
    expect(out.startsWith("data: a\n\n: ka\n\n")).toBe(true)
    expect(out.endsWith("data: b\n\ndata: [DONE]\n\n")).toBe(true)
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })
})
