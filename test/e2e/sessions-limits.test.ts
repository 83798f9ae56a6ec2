import { Deferred, Effect, Either, Fiber, ManagedRuntime, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { GatewayClient, type GatewayClientService, type SessionEvent } from "../../src/client.js"
import { type Gateway, startGateway, waitForNoCliChildren } from "../support/gateway.js"
import { SessionSocket as Client, type Json } from "../support/sessionSocket.js"
import { startUpstream, type Upstream } from "../support/upstream.js"

/**
 * Sessions under load it should not trust, with the real CLI against the scripted upstream: a
 * client that stops reading (its socket paused) while a turn streams megabytes, a full inbox, and
 * a turn that never finishes (sessions.turn_timeout_seconds).
 */

const KEY = "sk-sessions-limits"
const auth = { authorization: `Bearer ${KEY}` }
const REPLAY = 20
const MAX_FRAME = 256 * 1024

const api = async (gateway: Gateway, method: string, route: string, body?: unknown) => {
  const response = await fetch(`${gateway.url}${route}`, {
    method,
    headers: { ...auth, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  return { status: response.status, body: (text === "" ? {} : JSON.parse(text)) as Json }
}

describe("sessions with bounded queues and a turn timeout", () => {
  let upstream: Upstream
  let gateway: Gateway
  const clients: Array<Client> = []
  const connect = async (route: string) => {
    const client = await Client.open(gateway, route, auth)
    clients.push(client)
    return client
  }

  beforeAll(async () => {
    upstream = await startUpstream()
    gateway = await startGateway({
      upstreamUrl: upstream.url,
      config: {
        server: { api_keys: [KEY], max_body_bytes: MAX_FRAME },
        pool: { prewarm: 0 },
        sessions: { replay_buffer: REPLAY, max_queued_messages: 2, turn_timeout_seconds: 4 }
      }
    })
  })
  afterAll(async () => {
    for (const client of clients) await client.close()
    await gateway?.close()
    await upstream?.close()
    expect(await waitForNoCliChildren()).toEqual([])
  })

  /**
   * The session's last seq once it is idle (a new session has booted), then `send` a message and
   * wait, on the server's own count, until `events` more were emitted. No client has to keep up.
   */
  const emitted = async (id: string, send: () => Promise<void> | void, events: number) => {
    const base = await waitForSession(id, (s) => s.state === "idle")
    await send()
    await waitForSession(id, (s) => s.last_seq >= base.last_seq + events)
    return base.last_seq + events
  }
  const waitForSession = async (id: string, ready: (session: Json) => boolean, ms = 90_000) => {
    const deadline = Date.now() + ms
    for (;;) {
      const got = await api(gateway, "GET", `/v1/sessions/${id}`)
      if (ready(got.body)) return got.body
      if (Date.now() > deadline) throw new Error(`the session never got there: ${JSON.stringify(got.body)}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }

  it("closes a client that stops reading (1008, naming the limit); it reconnects with ?after=N for the rest", async () => {
    // 200 deltas of 64 KiB (12.8 MB): far more than the connection's buffers hold (a few MB on
    // loopback) plus sessions.replay_buffer events. Then the stream stalls (no result).
    const chunk = "y".repeat(64 * 1024)
    const DELTAS = 200
    upstream.on("SESS-FLOOD", {
      kind: "message",
      blocks: [{ type: "text", text: Array.from({ length: DELTAS + 1 }, () => chunk) }],
      stallAfterDeltas: DELTAS
    })
    const created = await api(gateway, "POST", "/v1/sessions", {})
    expect(created.status).toBe(201)
    const slow = await connect(created.body.websocket_url)
    await slow.next((f) => f.type === "hello")
    // The client stops reading from its socket; it can still send.
    slow.ws.pause()
    // state running, turn_started, then the deltas.
    const lastDelta = await emitted(created.body.id, () => slow.send({ type: "user_message", content: "SESS-FLOOD" }), 2 + DELTAS)

    // It reads again: what the connection held, then the close.
    slow.ws.resume()
    await slow.until(() => slow.closed !== undefined)
    expect(slow.closed!.code).toBe(1008)
    expect(slow.closed!.reason).toContain("sessions.replay_buffer")
    const received = slow.frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number)
    const last = received.at(-1)!
    // Every event up to the close, in order, none missing; far fewer than were sent.
    expect(received).toEqual(received.map((_, i) => received[0]! + i))
    expect(last).toBeLessThan(lastDelta - REPLAY)
    expect(slow.closed!.reason).toContain(`?after=${last}`)

    // Reconnecting with after=N resumes from the replay buffer (what it still holds).
    const back = await connect(`${created.body.websocket_url}?after=${last}`)
    const hello = await back.next((f) => f.type === "hello")
    expect(hello.replay_from).toBe(last)
    await back.next((f) => f.seq === lastDelta)
    const replayed = back.frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number)
    expect(replayed).toEqual(replayed.map((_, i) => replayed[0]! + i))
    expect(replayed.at(-1)).toBe(lastDelta)
    expect(back.frames.slice(1).every((f) => f.type === "text_delta" && f.text === chunk)).toBe(true)
    // Complete unless events left the buffer before the client came back, and then it says so.
    expect(hello.truncated).toBe(replayed[0]! > last + 1)
    expect(replayed.length).toBeLessThanOrEqual(REPLAY)

    back.send({ type: "interrupt" })
    await back.next((f) => f.type === "state" && f.state === "idle" && f.seq > lastDelta)
    expect((await api(gateway, "DELETE", `/v1/sessions/${created.body.id}`)).status).toBe(200)
  }, 120_000)

  it("fails an RPC SessionEvents stream whose caller stops reading with SessionRefused too_slow", async () => {
    const DELTAS = 300
    upstream.on("SESS-RPC-FLOOD", {
      kind: "message",
      blocks: [{ type: "text", text: Array.from({ length: DELTAS + 1 }, (_, i) => `d${i} `) }],
      stallAfterDeltas: DELTAS
    })
    const created = await api(gateway, "POST", "/v1/sessions", {})
    const id: string = created.body.id
    const client = (transport: "http" | "websocket") => {
      const runtime = ManagedRuntime.make(GatewayClient.layer({ url: gateway.url, transport, apiKey: KEY }))
      return { runtime, call: <A, E>(f: (client: GatewayClientService) => Effect.Effect<A, E>) => runtime.runPromise(Effect.flatMap(GatewayClient, f)) }
    }
    const watching = client("websocket")
    const sending = client("http")
    try {
      const gate = await watching.runtime.runPromise(Deferred.make<void>())
      const seen: Array<SessionEvent> = []
      // The caller takes the first event (hello), then stops reading until the gate opens.
      const fiber = watching.runtime.runFork(Effect.flatMap(GatewayClient, (client) =>
        client.SessionEvents({ id }).pipe(
          Stream.runForEach((event) => Effect.zipRight(Effect.sync(() => seen.push(event)), Deferred.await(gate))),
          Effect.either
        )))
      await waitForSession(id, () => seen.length > 0)
      await emitted(id, () => sending.call((client) => client.SessionSend({ id, content: "SESS-RPC-FLOOD" })), 2 + DELTAS)
      await watching.runtime.runPromise(Deferred.succeed(gate, undefined))
      const outcome = await watching.runtime.runPromise(Fiber.join(fiber))
      if (Either.isRight(outcome)) throw new Error(`the stream did not fail; it had ${seen.length} events`)
      expect(outcome.left).toMatchObject({ _tag: "SessionRefused", code: "too_slow" })
      expect((outcome.left as { message: string }).message).toContain("sessions.replay_buffer")
      // What it got before is in order, none missing.
      const seqs = seen.flatMap((event) => event.type === "hello" || event.seq === undefined ? [] : [event.seq])
      expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i))
      expect(seqs.length).toBeLessThan(DELTAS)
      // (The CLI may have given up on the stalled stream already: then there is nothing to interrupt.)
      await sending.call((client) => Effect.either(client.SessionInterrupt({ id })))
      await waitForSession(id, (s) => s.state === "idle")
    } finally {
      await watching.runtime.dispose()
      await sending.runtime.dispose()
    }
    expect((await api(gateway, "DELETE", `/v1/sessions/${id}`)).status).toBe(200)
  }, 120_000)

  it("answers a frame over server.max_body_bytes (in bytes) with invalid_message and keeps the socket", async () => {
    const created = await api(gateway, "POST", "/v1/sessions", {})
    const client = await connect(created.body.websocket_url)
    await client.next((f) => f.type === "hello")
    // Under the limit in characters, over it in UTF-8 bytes (3 bytes each).
    client.send({ type: "user_message", content: "€".repeat(MAX_FRAME / 2) })
    const refused = await client.next((f) => f.type === "error")
    expect(refused).toMatchObject({ code: "invalid_message" })
    expect(refused.message).toContain(`server.max_body_bytes (${MAX_FRAME} bytes)`)
    const from = client.frames.length
    client.send({ type: "ping" })
    await client.next((f) => f.type === "pong", from)
    expect(client.frames.some((f) => f.type === "turn_started")).toBe(false)
    expect((await api(gateway, "DELETE", `/v1/sessions/${created.body.id}`)).status).toBe(200)
  })

  it("times out a turn that never finishes; a full inbox refuses the sender; the queued messages run after", async () => {
    // Registered first: the queued messages' upstream requests carry the hung message too (the
    // interrupted turn has no answer, so the user messages are one).
    upstream.on("SESS-QUEUED", { kind: "message", blocks: [{ type: "text", text: "queued answer" }] })
    upstream.on("SESS-HANG", { kind: "hang" })
    const created = await api(gateway, "POST", "/v1/sessions", {})
    const client = await connect(created.body.websocket_url)
    await client.next((f) => f.type === "hello")
    const from = client.frames.length
    const started = Date.now()
    client.send({ type: "user_message", content: "SESS-HANG" })
    await client.next((f) => f.type === "turn_started", from)
    for (const n of [1, 2, 3]) client.send({ type: "user_message", content: `SESS-QUEUED ${n}`, client_id: `q${n}` })
    // sessions.max_queued_messages is 2: the third is refused, to this client only (no seq).
    const refused = await client.next((f) => f.type === "error" && f.code === "inbox_full", from)
    expect(refused.seq).toBeUndefined()
    expect(refused.message).toContain("sessions.max_queued_messages")

    const timedOut = await client.next((f) => f.type === "error" && f.code === "turn_timeout", from)
    expect(Date.now() - started).toBeGreaterThanOrEqual(4000)
    expect(timedOut.seq).toBeGreaterThan(0)
    expect(timedOut.message).toContain("sessions.turn_timeout_seconds")
    const result = await client.next((f) => f.type === "result" && f.turn === 1, from)
    expect(result).toMatchObject({ interrupted: true, is_error: true })

    // The two queued messages run, the refused one never does.
    const second = await client.next((f) => f.type === "result" && f.turn === 3, from)
    expect(second).toMatchObject({ text: "queued answer", is_error: false, interrupted: false })
    const turns = client.frames.slice(from).filter((f) => f.type === "turn_started").map((f) => f.client_id)
    expect(turns).toEqual([null, "q1", "q2"])
    expect(upstream.requestsFor("SESS-QUEUED 3")).toHaveLength(0)
    expect((await api(gateway, "DELETE", `/v1/sessions/${created.body.id}`)).status).toBe(200)
  })
})
