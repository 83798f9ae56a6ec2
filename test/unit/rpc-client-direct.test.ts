import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, Either, Schema, Stream } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { WebSocketServer } from "ws"
import { ChatEvent, GatewayClient } from "../../src/client.js"
import { fastChatEvent } from "../../src/protocols/rpc/fastDecode.js"

const usage = { inputTokens: 3, outputTokens: 5, cacheReadTokens: 0, cacheCreationTokens: 7 }
const decode = Schema.decodeUnknownEither(ChatEvent)

describe("fastChatEvent", () => {
  it("gives what the schema gives, or leaves the value to it", () => {
    const values: ReadonlyArray<unknown> = [
      { _tag: "Accepted", conversationId: "conv_1" },
      { _tag: "Started", model: "claude-x", sessionId: "s" },
      { _tag: "TextDelta", text: "OK" },
      { _tag: "TextDelta", text: "" },
      { _tag: "ThinkingDelta", text: "hm", extra: 1 },
      { _tag: "Usage", usage: { ...usage, more: true } },
      { _tag: "ToolCallStarted", index: 0, id: "t", name: "f" },
      { _tag: "ToolCallDelta", index: 1, arguments: "{\"a\":" },
      { _tag: "Finished", reason: "stop", usage, costUsd: null, sessionId: "s", toolCalls: [] },
      { _tag: "TextDelta", text: 3 },
      { _tag: "Usage", usage: { inputTokens: 1 } },
      { _tag: "Started", model: "m" },
      { _tag: "ToolCallDelta", index: "0", arguments: "" },
      { _tag: "Nope" },
      ["TextDelta"],
      null,
      "TextDelta"
    ]
    let quick = 0
    for (const value of values) {
      const fast = fastChatEvent(value)
      const schema = decode(value)
      if (fast === undefined) continue
      quick++
      // Taken by hand only where the schema decodes it, to the same value (declared fields only).
      expect(Either.isRight(schema)).toBe(true)
      expect(fast).toStrictEqual(Either.getOrThrow(schema))
    }
    expect(quick).toBe(7)
    for (const value of values.slice(9)) expect(fastChatEvent(value)).toBeUndefined()
  })
})

describe("the HTTP client's streaming calls", () => {
  let server: http.Server | undefined
  afterEach(() => new Promise<void>((resolve) => {
    server?.closeAllConnections()
    server?.close(() => resolve())
  }))

  it("end at the call's Exit, before the response's end", async () => {
    let ended = false
    server = http.createServer((req, res) => {
      let body = ""
      req.on("data", (chunk) => body += chunk)
      req.on("end", () => {
        const { id } = JSON.parse(body) as { id: string }
        res.writeHead(200, { "content-type": "application/ndjson" })
        res.write(JSON.stringify({ _tag: "Chunk", requestId: id, values: [{ _tag: "TextDelta", text: "OK" }] }) + "\n")
        res.write(JSON.stringify({ _tag: "Exit", requestId: id, exit: { _tag: "Success", value: null } }) + "\n")
        // The response stays open: a client that waits for its end waits for this.
        setTimeout(() => {
          ended = true
          res.end()
        }, 2_000)
      })
    })
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve))
    const { port } = server.address() as AddressInfo
    const events = await Effect.gen(function*() {
      const client = yield* GatewayClient
      return yield* Stream.runCollect(client.Chat({ input: "hi" }))
    }).pipe(Effect.provide(GatewayClient.layer({ url: `http://127.0.0.1:${port}` })), Effect.runPromise)
    expect([...events]).toStrictEqual([{ _tag: "TextDelta", text: "OK" }])
    expect(ended).toBe(false)
  })
})

/** `effect` with a WebSocket client of `server` (at most 5 s). */
const overWebsocket = <A, E>(server: WebSocketServer, effect: Effect.Effect<A, E, GatewayClient>) => {
  const { port } = server.address() as AddressInfo
  return effect.pipe(
    Effect.timeout("5 seconds"),
    Effect.provide(GatewayClient.layer({ url: `http://127.0.0.1:${port}`, transport: "websocket" })),
    Effect.runPromise
  )
}
const texts = (events: Iterable<ChatEvent>) => [...events].map((event) => event._tag === "TextDelta" ? event.text : event._tag)

describe("the WebSocket client's Chat", () => {
  let server: WebSocketServer | undefined
  afterEach(() => new Promise<void>((resolve) => {
    for (const client of server?.clients ?? []) client.terminate()
    server?.close(() => resolve())
  }))

  it("acks each chunk, so that a gateway which waits for the acks (an older one) sends the next", async () => {
    const acks: Array<string> = []
    server = new WebSocketServer({ port: 0, host: "127.0.0.1" })
    server.on("connection", (socket) => {
      let requestId = ""
      let sent = 0
      const texts = ["a", "b", "c"]
      const next = () => {
        if (sent < texts.length) {
          socket.send(JSON.stringify({ _tag: "Chunk", requestId, values: [{ _tag: "TextDelta", text: texts[sent++] }] }))
        } else {
          socket.send(JSON.stringify({ _tag: "Exit", requestId, exit: { _tag: "Success", value: null } }))
        }
      }
      socket.on("message", (data) => {
        const message = JSON.parse(String(data)) as { _tag: string; id?: string; requestId?: string }
        if (message._tag === "Request" && message.id !== undefined) {
          requestId = message.id
          next()
        } else if (message._tag === "Ack" && message.requestId === requestId) {
          acks.push(message.requestId)
          next() // Like RpcServer with acks: the next chunk only after the client took this one.
        }
      })
    })
    await new Promise<void>((resolve) => server!.once("listening", () => resolve()))
    const events = await overWebsocket(server, Effect.flatMap(GatewayClient, (client) => Stream.runCollect(client.Chat({ input: "hi" }))))
    expect(texts(events)).toStrictEqual(["a", "b", "c"])
    expect(acks).toHaveLength(3)
  })

  it("sends no Ack for a chunk marked as needing none (this gateway's direct calls)", async () => {
    const acks: Array<string> = []
    server = new WebSocketServer({ port: 0, host: "127.0.0.1" })
    server.on("connection", (socket) => {
      socket.on("message", (data) => {
        const message = JSON.parse(String(data)) as { _tag: string; id?: string; requestId?: string; tag?: string }
        if (message._tag === "Ack" && message.requestId !== undefined) acks.push(message.requestId)
        if (message._tag !== "Request" || message.id === undefined) return
        const requestId = message.id
        if (message.tag === "ListModels") {
          return void socket.send(JSON.stringify({ _tag: "Exit", requestId, exit: { _tag: "Success", value: [] } }))
        }
        for (const text of ["a", "b"]) {
          socket.send(JSON.stringify({ _tag: "Chunk", requestId, values: [{ _tag: "TextDelta", text }], ack: false }))
        }
        // One unmarked chunk (as RpcServer sends): that one is acked.
        socket.send(JSON.stringify({ _tag: "Chunk", requestId, values: [{ _tag: "TextDelta", text: "c" }] }))
        socket.send(JSON.stringify({ _tag: "Exit", requestId, exit: { _tag: "Success", value: null } }))
      })
    })
    await new Promise<void>((resolve) => server!.once("listening", () => resolve()))
    const events = await overWebsocket(server, Effect.gen(function*() {
      const client = yield* GatewayClient
      const events = yield* Stream.runCollect(client.Chat({ input: "hi" }))
      // An Ack would have been sent before this call, which the server answers after it (one socket).
      yield* client.ListModels()
      return events
    }))
    expect(texts(events)).toStrictEqual(["a", "b", "c"])
    expect(acks).toHaveLength(1)
  })
})
