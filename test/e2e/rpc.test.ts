import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { RpcClient } from "@effect/rpc"
import { Chunk, Duration, Effect, Either, Fiber, ManagedRuntime, Queue, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { WebSocket } from "ws"
import { type ChatEvent, type ChatRequest, GatewayClient, type GatewayClientService, type SessionEvent } from "../../src/client.js"
import { type Gateway, health, startGateway, waitForHealth } from "../support/gateway.js"
import { messagesOf, startUpstream, textOf, type Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// The typed RPC client (src/client.ts) against the real app at /rpc: real CLI, scripted upstream,
// both transports (HTTP NDJSON and WebSocket).

let upstream: Upstream
let gateway: Gateway

// max_live 0: a CLI whose turn is over (or cut) ends, so cancellation is visible as a dead pid.
useGateway({ config: { conversation: { max_live: 0 } } }, (started) => ({ upstream, gateway } = started))

const transports = ["http", "websocket"] as const
type Transport = typeof transports[number]

const runtimes = new Map<string, ManagedRuntime.ManagedRuntime<GatewayClient, never>>()
/** One client per gateway, transport and key, for the whole file. */
const clientFor = (g: Gateway, transport: Transport, apiKey?: string) => {
  const key = `${g.url} ${transport} ${apiKey ?? ""}`
  let runtime = runtimes.get(key)
  if (runtime === undefined) {
    runtime = ManagedRuntime.make(GatewayClient.layer({ url: g.url, transport, apiKey }))
    runtimes.set(key, runtime)
  }
  return runtime
}
afterAll(async () => {
  for (const runtime of runtimes.values()) await runtime.dispose()
})

const run = <A, E>(transport: Transport, effect: Effect.Effect<A, E, GatewayClient>, g = gateway, apiKey?: string) =>
  clientFor(g, transport, apiKey).runPromise(effect)

/** A whole Chat call's events, or its typed failure. */
const chat = (request: ChatRequest) =>
  Effect.flatMap(GatewayClient, (client) => Stream.runCollect(client.Chat(request))).pipe(
    Effect.map(Chunk.toReadonlyArray),
    Effect.either
  )

const events = <A, E>(result: Either.Either<A, E>): A => {
  if (Either.isLeft(result)) throw new Error(`expected events, got ${JSON.stringify(result.left)}`)
  return result.right
}
const failure = <A, E>(result: Either.Either<A, E>): E => {
  if (Either.isRight(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.right)}`)
  return result.left
}

const textOfEvents = (list: ReadonlyArray<ChatEvent>) => list.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")
const accepted = (list: ReadonlyArray<ChatEvent>) => {
  const first = list[0]
  if (first?._tag !== "Accepted") throw new Error(`the first event is not Accepted: ${JSON.stringify(first)}`)
  return first.conversationId
}
const finished = (list: ReadonlyArray<ChatEvent>) => {
  const last = list.at(-1)
  if (last?._tag !== "Finished") throw new Error(`the last event is not Finished: ${JSON.stringify(last)}`)
  return last
}

const sessionOf = (marker: string, which = 0) => upstream.requestsFor(marker)[which]!.headers["x-claude-code-session-id"]

/** A `SessionEvents` call running in the background: `until` takes its events up to the first match. */
const watchSession = (client: GatewayClientService, id: string, after?: number) =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<SessionEvent>()
    const seen: Array<SessionEvent> = []
    const fiber = yield* client.SessionEvents({ id, ...(after === undefined ? {} : { after }) }).pipe(
      Stream.runForEach((event) => Effect.sync(() => seen.push(event)).pipe(Effect.zipRight(Queue.offer(queue, event)))),
      Effect.fork
    )
    const until = (match: (event: SessionEvent) => boolean) =>
      Effect.gen(function*() {
        const taken: Array<SessionEvent> = []
        for (;;) {
          const event = yield* Queue.take(queue)
          taken.push(event)
          if (match(event)) return taken
        }
      }).pipe(
        Effect.timeoutFail({ duration: Duration.seconds(30), onTimeout: () => new Error(`no matching session event; seen: ${JSON.stringify(seen)}`) }),
        Effect.orDie
      )
    return { fiber, seen, until } as const
  })

const textOfSession = (list: ReadonlyArray<SessionEvent>) => list.flatMap((e) => (e.type === "text_delta" ? [e.text] : [])).join("")
const lastOf = (list: ReadonlyArray<SessionEvent>) => list[list.length - 1]!

describe.each(transports)("over %s", (transport) => {
  const tag = transport.toUpperCase()

  it("streams a chat as typed events", async () => {
    upstream.on(`RPC-HELLO-${tag}`, {
      kind: "message",
      blocks: [{ type: "thinking", thinking: ["Let me ", "think."] }, { type: "text", text: ["Hello ", "from ", "RPC."] }],
      usage: { input_tokens: 11, output_tokens: 7 }
    })
    const list = events(await run(transport, chat({ model: "sonnet", input: `RPC-HELLO-${tag}` })))
    expect(accepted(list)).toMatch(/^conv_/)
    expect(list.some((e) => e._tag === "Started")).toBe(true)
    expect(list.filter((e) => e._tag === "TextDelta").length).toBeGreaterThanOrEqual(3)
    expect(textOfEvents(list)).toBe("Hello from RPC.")
    expect(list.flatMap((e) => (e._tag === "ThinkingDelta" ? [e.text] : [])).join("")).toBe("Let me think.")
    const end = finished(list)
    expect(end.reason).toBe("stop")
    expect(end.usage).toMatchObject({ inputTokens: 11, outputTokens: 7 })
    expect(end.toolCalls).toEqual([])
  })

  it("continues a conversation by id in the same CLI session", async () => {
    upstream.on(`RPC-CONV1-${tag}`, { kind: "message", blocks: [{ type: "text", text: "First." }] })
    upstream.on(`RPC-CONV2-${tag}`, { kind: "message", blocks: [{ type: "text", text: "Second." }] })
    const first = events(await run(transport, chat({ input: `RPC-CONV1-${tag}` })))
    const id = accepted(first)
    const second = events(await run(transport, chat({ conversationId: id, input: `RPC-CONV2-${tag}` })))
    expect(accepted(second)).toBe(id)
    expect(textOfEvents(second)).toBe("Second.")
    expect(sessionOf(`RPC-CONV2-${tag}`)).toBe(sessionOf(`RPC-CONV1-${tag}`))
    const sent = messagesOf(upstream.requestsFor(`RPC-CONV2-${tag}`)[0]!.body).map((m) => textOf(m.content))
    expect(sent.some((text) => text.includes(`RPC-CONV1-${tag}`))).toBe(true)

    const stored = await run(transport, Effect.flatMap(GatewayClient, (client) => client.GetConversation({ id })))
    expect(stored.messages.map((m) => [m.role, m.content])).toEqual([
      ["user", `RPC-CONV1-${tag}`],
      ["assistant", "First."],
      ["user", `RPC-CONV2-${tag}`],
      ["assistant", "Second."]
    ])
  })

  it("round-trips a client tool call as typed values", async () => {
    upstream.on(`RPC-TOOL-${tag}`, {
      kind: "message",
      blocks: [{ type: "text", text: "Checking." }, { type: "tool_use", name: "mcp__client__get_weather", input: { city: "Oslo" }, chunks: 3 }]
    })
    upstream.on(`RPC-WEATHER-${tag}`, { kind: "message", blocks: [{ type: "text", text: "Cold in Oslo." }] })
    const tools = [{
      name: "get_weather",
      description: "Current weather for a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
    }]
    const first = events(await run(transport, chat({ input: `RPC-TOOL-${tag}`, tools })))
    const end = finished(first)
    expect(end.reason).toBe("tool_calls")
    const [call] = end.toolCalls
    expect(call?.name).toBe("get_weather")
    expect(JSON.parse(call!.arguments)).toEqual({ city: "Oslo" })
    expect(first.some((e) => e._tag === "ToolCallStarted" && e.name === "get_weather" && e.id === call!.id)).toBe(true)
    expect(first.filter((e) => e._tag === "ToolCallDelta").map((e) => (e._tag === "ToolCallDelta" ? e.arguments : "")).join(""))
      .toBe(call!.arguments)
    expect((await health(gateway)).tools.parked).toBe(1)

    const second = events(await run(transport, chat({
      conversationId: accepted(first),
      toolResults: [{ id: call!.id, content: `RPC-WEATHER-${tag}: -3 C` }],
      tools
    })))
    expect(textOfEvents(second)).toBe("Cold in Oslo.")
    expect(finished(second).reason).toBe("stop")
    // The parked turn went on: upstream got a real tool_result for the real tool_use id, same session.
    expect(JSON.stringify(upstream.requestsFor(`RPC-WEATHER-${tag}`)[0]!.body)).toContain(call!.id)
    expect(sessionOf(`RPC-WEATHER-${tag}`)).toBe(sessionOf(`RPC-TOOL-${tag}`))
    expect((await health(gateway)).tools.parked).toBe(0)
  })

  it("ends the turn's CLI when the client interrupts the stream", async () => {
    const marker = `RPC-CANCEL-${tag}`
    upstream.on(marker, {
      kind: "message",
      blocks: [{ type: "text", text: Array.from({ length: 100 }, (_, i) => `word${i} `) }],
      interDeltaMs: 100
    })
    await waitForHealth(gateway, (h) => h.pool.leased === 0 && h.sessions.running === 0)
    const deltas = await run(transport, Effect.gen(function*() {
      const client = yield* GatewayClient
      const seen: Array<string> = []
      // Stream.take ends the consumer after two deltas: the call is interrupted, as by a fiber interrupt.
      yield* client.Chat({ model: "sonnet", input: marker }).pipe(
        Stream.filter((e) => e._tag === "TextDelta"),
        Stream.take(2),
        Stream.runForEach((e) => Effect.sync(() => seen.push(e._tag === "TextDelta" ? e.text : ""))),
      )
      return seen
    }))
    expect(deltas).toEqual(["word0 ", "word1 "])
    // The turn is over within 3 s of the cancel, long before the answer's 100 deltas (10 s): the
    // CLI was interrupted (the pool takes it back only once it is idle) or, failing that, killed.
    await waitForHealth(gateway, (h) => h.sessions.running === 0 && h.pool.leased === 0, 3000)
  })

  it("interrupting the calling fiber also ends the turn", async () => {
    const marker = `RPC-FIBER-${tag}`
    upstream.on(marker, { kind: "message", blocks: [{ type: "text", text: Array.from({ length: 100 }, (_, i) => `w${i} `) }], interDeltaMs: 100 })
    await run(transport, Effect.gen(function*() {
      const client = yield* GatewayClient
      const first = yield* Effect.makeLatch(false)
      const fiber = yield* client.Chat({ input: marker }).pipe(
        Stream.runForEach((e) => (e._tag === "TextDelta" ? first.open : Effect.void)),
        Effect.fork
      )
      yield* first.await
      yield* Fiber.interrupt(fiber)
    }))
    await waitForHealth(gateway, (h) => h.sessions.running === 0 && h.pool.leased === 0, 3000)
  })
})

describe("typed errors", () => {
  it("ModelNotFound lists the models", async () => {
    const error = failure(await run("http", chat({ model: "gpt-4o", input: "x" })))
    expect(error._tag).toBe("ModelNotFound")
    if (error._tag !== "ModelNotFound") return
    expect(error.model).toBe("gpt-4o")
    expect(error.available).toContain("sonnet")
  })

  it("ConversationNotFound for an unknown conversation", async () => {
    const error = failure(await run("websocket", chat({ conversationId: "conv_nope", input: "x" })))
    expect(error).toMatchObject({ _tag: "ConversationNotFound", id: "conv_nope" })
    const get = await run("http", Effect.flatMap(GatewayClient, (client) => client.GetConversation({ id: "conv_nope" })).pipe(Effect.either))
    expect(failure(get)).toMatchObject({ _tag: "ConversationNotFound", id: "conv_nope" })
  })

  it.each([
    [{ input: "x", tools: [{ name: "bad name!" }] }, "tools[0].name"],
    [{ input: "x", tools: [{ name: "f", parameters: { type: "string" } }] }, "tools[0].parameters"],
    [{ input: "x", toolChoice: { name: "missing" }, tools: [{ name: "f" }] }, "toolChoice.name"],
    [{ input: "x", maxTokens: 0 }, "maxTokens"],
    [{ input: "x", stop: ["a", "b", "c", "d", "e"] }, "stop"],
    [{ input: "   " }, "input"],
    [{}, "input"]
  ] satisfies ReadonlyArray<readonly [ChatRequest, string]>)("InvalidRequest names the field (%j)", async (request, param) => {
    const error = failure(await run("http", chat(request)))
    expect(error).toMatchObject({ _tag: "InvalidRequest", param })
    if (error._tag === "InvalidRequest") expect(error.message).toContain(param)
  })

  it("UpstreamError keeps the upstream status and says when to retry", async () => {
    upstream.on("RPC-OVL", { kind: "error", status: 529, type: "overloaded_error", message: "Overloaded" })
    const error = failure(await run("http", chat({ input: "RPC-OVL" })))
    expect(error).toMatchObject({ _tag: "UpstreamError", status: 529, retryAfterSeconds: 5 })
  })

  it("ListConversations refuses a bad limit", async () => {
    const result = await run("http", Effect.flatMap(GatewayClient, (client) => client.ListConversations({ limit: 0 })).pipe(Effect.either))
    expect(failure(result)).toMatchObject({ _tag: "InvalidRequest", param: "limit" })
  })
})

describe("the wire, as other RpcClients speak it", () => {
  /** One POST /rpc with these NDJSON messages; the answer's messages. */
  const post = async (messages: ReadonlyArray<unknown>) => {
    const response = await fetch(`${gateway.url}/rpc`, {
      method: "POST",
      headers: { "content-type": "application/ndjson" },
      body: messages.map((m) => JSON.stringify(m) + "\n").join("")
    })
    expect(response.status).toBe(200)
    return (await response.text()).split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as Record<string, unknown>)
  }
  const request = (id: string, tag: string, payload: unknown) => ({ _tag: "Request", id, tag, payload, headers: [] })

  // Chat alone in a request is answered without RpcServer (src/protocols/rpc/Http.ts): as RpcServer does it.
  it("a Chat payload that does not decode ends the call with a defect naming the field", async () => {
    const answer = await post([request("7", "Chat", { input: 5 })])
    expect(answer).toHaveLength(1)
    expect(answer[0]).toMatchObject({ _tag: "Exit", requestId: "7", exit: { _tag: "Failure", cause: { _tag: "Die" } } })
    expect(JSON.stringify(answer[0])).toContain("input")
  })

  it("a Chat batched with another call goes through RpcServer: both answered, the chunks before the Exit", async () => {
    const answer = await post([request("1", "Chat", { input: "wire batch" }), request("2", "ListModels", {})])
    const exits = answer.filter((m) => m._tag === "Exit")
    expect(exits.map((m) => m.requestId).sort()).toEqual(["1", "2"])
    const chunks = answer.filter((m) => m._tag === "Chunk" && m.requestId === "1").flatMap((m) => m.values as Array<{ _tag: string }>)
    expect(chunks[0]?._tag).toBe("Accepted")
    expect(chunks.at(-1)?._tag).toBe("Finished")
    const lastChunk = answer.map((m) => m._tag).lastIndexOf("Chunk")
    expect(answer.findIndex((m) => m._tag === "Exit" && m.requestId === "1")).toBeGreaterThan(lastChunk)
  })

  it("over WebSocket a Chat call's chunks come without waiting for acks, each marked as needing none", async () => {
    const socket = new WebSocket(`${gateway.url.replace(/^http/, "ws")}/rpc`)
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve())
      socket.once("error", reject)
    })
    const messages: Array<Record<string, unknown>> = []
    const done = new Promise<void>((resolve) =>
      socket.on("message", (data) => {
        const message = JSON.parse(String(data)) as Record<string, unknown>
        messages.push(message)
        if (message._tag === "Exit") resolve()
      }))
    // No Ack is ever sent here: a gateway that waited for them would never reach the Exit.
    socket.send(JSON.stringify(request("1", "Chat", { input: "wire websocket" })))
    await done
    socket.close()
    const chunks = messages.filter((m) => m._tag === "Chunk")
    expect(chunks.length).toBeGreaterThan(1)
    for (const chunk of chunks) expect(chunk).toMatchObject({ requestId: "1", ack: false })
  })
})

describe("conversations, models and health", () => {
  it("creates, lists, gets and deletes conversations", async () => {
    await run("websocket", Effect.gen(function*() {
      const client = yield* GatewayClient
      const created = yield* client.CreateConversation({ model: "sonnet", system: "Be brief.", metadata: { app: "rpc-test" } })
      expect(created).toMatchObject({ model: "sonnet", system: "Be brief.", metadata: { app: "rpc-test" }, live: false })
      const page = yield* client.ListConversations({ limit: 100 })
      expect(page.data.map((c) => c.id)).toContain(created.id)
      expect((yield* client.GetConversation({ id: created.id })).messages).toEqual([])
      yield* client.DeleteConversation({ id: created.id })
      const gone = yield* Effect.either(client.GetConversation({ id: created.id }))
      expect(failure(gone)._tag).toBe("ConversationNotFound")
      const bad = yield* Effect.either(client.CreateConversation({ model: "gpt-4o" }))
      expect(failure(bad)._tag).toBe("ModelNotFound")
    }))
  })

  it("creates a conversation in a working directory inside the workspace, and refuses one outside", async () => {
    await run("http", Effect.gen(function*() {
      const client = yield* GatewayClient
      const created = yield* client.CreateConversation({ workingDirectory: "rpc/project" })
      expect(created.workingDirectory).toBe(path.join(gateway.home, "workspace", "rpc", "project"))
      expect(fs.statSync(created.workingDirectory!).isDirectory()).toBe(true)
      const outside = yield* Effect.either(client.CreateConversation({ workingDirectory: "../elsewhere" }))
      expect(failure(outside)).toMatchObject({ _tag: "InvalidRequest", param: "workingDirectory" })
      expect(fs.existsSync(path.join(gateway.home, "elsewhere"))).toBe(false)
    }))
  })

  it("lists models and reports health", async () => {
    const [models, status] = await run("http", Effect.flatMap(GatewayClient, (client) => Effect.all([client.ListModels(), client.Health()])))
    expect(models.map((m) => m.id)).toContain("sonnet")
    expect(status.status).toBe("ok")
    expect(status.cli.version).not.toBeNull()
  })
})

describe("sessions over RPC", () => {
  it("a session's turn streams through SessionEvents; cancelling the stream leaves the session and its turn running", async () => {
    const words = Array.from({ length: 30 }, (_, i) => `s${i} `)
    upstream.on("RPC-SESS-SLOW", { kind: "message", blocks: [{ type: "text", text: words }], interDeltaMs: 60 })
    upstream.on("RPC-SESS-NEXT", { kind: "message", blocks: [{ type: "text", text: ["next ", "answer"] }], usage: { input_tokens: 9, output_tokens: 2 } })
    await run("websocket", Effect.gen(function*() {
      const client = yield* GatewayClient
      const session = yield* client.CreateSession({ working_directory: "rpc-session" })
      expect(session).toMatchObject({ object: "session", permission_mode: "default", turns: 0 })
      expect(session.working_directory).toBe(path.join(gateway.home, "workspace", "rpc-session"))
      expect((yield* client.ListSessions()).map((s) => s.id)).toContain(session.id)

      // Watch, send, and cancel the watch after the first text delta: the turn must go on.
      const first = yield* watchSession(client, session.id)
      expect(lastOf(yield* first.until(() => true)).type).toBe("hello")
      yield* client.SessionSend({ id: session.id, content: "RPC-SESS-SLOW", client_id: "c-1" })
      const early = yield* first.until((e) => e.type === "text_delta")
      expect(early.find((e) => e.type === "turn_started")).toMatchObject({ client_id: "c-1", turn: 1 })
      const cut = lastOf(early)
      yield* Fiber.interrupt(first.fiber)
      expect((yield* client.GetSession({ id: session.id })).state).not.toBe("ended")

      // A new stream with `after` gets what the cancelled one missed, through the turn's result.
      const second = yield* watchSession(client, session.id, "seq" in cut ? cut.seq : 0)
      const rest = yield* second.until((e) => e.type === "result")
      const hello = rest[0]!
      expect(hello.type === "hello" && hello.replay_from).toBe("seq" in cut ? cut.seq : -1)
      expect(textOfSession([...early, ...rest])).toBe(words.join(""))
      const result = lastOf(rest)
      expect(result).toMatchObject({ type: "result", turn: 1, is_error: false, interrupted: false, text: words.join("") })
      yield* second.until((e) => e.type === "state" && e.state === "idle")

      // The session takes the next message as usual.
      yield* client.SessionSend({ id: session.id, content: "RPC-SESS-NEXT" })
      const next = yield* second.until((e) => e.type === "result")
      expect(textOfSession(next)).toBe("next answer")
      expect(lastOf(next)).toMatchObject({ turn: 2, usage: { input_tokens: 9, output_tokens: 2 } })
      // One CLI session for both turns.
      expect(sessionOf("RPC-SESS-NEXT")).toBe(sessionOf("RPC-SESS-SLOW"))

      // Deleting ends the stream with the ended state; the session is then unknown.
      yield* client.DeleteSession({ id: session.id })
      const ended = yield* Fiber.join(second.fiber).pipe(Effect.timeout(Duration.seconds(10)), Effect.as(second.seen))
      expect(lastOf(ended)).toMatchObject({ type: "state", state: "ended", reason: "deleted" })
      expect(failure(yield* Effect.either(client.GetSession({ id: session.id })))).toMatchObject({ _tag: "SessionNotFound", id: session.id })
      expect(failure(yield* Effect.either(client.SessionSend({ id: session.id, content: "x" })))._tag).toBe("SessionNotFound")
    }))
  }, 60_000)

  it("relays a permission request; approving it through the RPC runs the tool", async () => {
    const write = (file: string) => `node -e "require('fs').writeFileSync('${file}','x')"`
    upstream.on("RPC-SESS-WRITE", { kind: "message", blocks: [{ type: "tool_use", id: "toolu_rpc_write", name: "Bash", input: { command: write("rpc-approved.txt"), description: "write approved" } }] })
    upstream.on("toolu_rpc_write", { kind: "message", blocks: [{ type: "text", text: "approved and written" }] })
    await run("http", Effect.gen(function*() {
      const client = yield* GatewayClient
      const session = yield* client.CreateSession({ working_directory: "rpc-perm" })
      const file = path.join(session.working_directory, "rpc-approved.txt")
      const watch = yield* watchSession(client, session.id)
      yield* client.SessionSend({ id: session.id, content: "RPC-SESS-WRITE" })
      const ask = lastOf(yield* watch.until((e) => e.type === "permission_request"))
      if (ask.type !== "permission_request") throw new Error("not a permission request")
      expect(ask).toMatchObject({ tool_name: "Bash", tool_use_id: "toolu_rpc_write", input: { command: write("rpc-approved.txt") } })
      expect(fs.existsSync(file)).toBe(false)
      yield* client.SessionPermission({ id: session.id, request_id: ask.request_id, decision: "allow" })
      const turn = yield* watch.until((e) => e.type === "result")
      expect(lastOf(turn)).toMatchObject({ type: "result", text: "approved and written", is_error: false })
      expect(turn.find((e) => e.type === "permission_resolved")).toMatchObject({ request_id: ask.request_id, decision: "allow", by: "client" })
      expect(turn.find((e) => e.type === "tool_result")).toMatchObject({ tool_use_id: "toolu_rpc_write", is_error: false })
      expect(fs.readFileSync(file, "utf8")).toBe("x")

      // What the socket refuses with an error frame arrives as a typed error.
      const again = yield* Effect.either(client.SessionPermission({ id: session.id, request_id: ask.request_id, decision: "deny" }))
      expect(failure(again)).toMatchObject({ _tag: "InvalidRequest", param: "request_id", code: "unknown_request" })
      yield* watch.until((e) => e.type === "state" && e.state === "idle")
      expect(failure(yield* Effect.either(client.SessionInterrupt({ id: session.id })))).toMatchObject({ _tag: "SessionRefused", code: "not_running" })
      expect(failure(yield* Effect.either(client.SessionSetModel({ id: session.id, model: "gpt-4o" })))).toMatchObject({ _tag: "ModelNotFound", model: "gpt-4o" })
      const mode = yield* Effect.either(client.SessionSetPermissionMode({ id: session.id, mode: "bypassPermissions" }))
      expect(failure(mode)).toMatchObject({ _tag: "InvalidRequest", param: "mode" })
      yield* client.SessionSetPermissionMode({ id: session.id, mode: "acceptEdits" })
      expect(lastOf(yield* watch.until((e) => e.type === "permission_mode_changed"))).toMatchObject({ mode: "acceptEdits" })
      yield* client.SessionSetModel({ id: session.id, model: "opus" })
      expect(lastOf(yield* watch.until((e) => e.type === "model_changed"))).toMatchObject({ type: "model_changed" })
      yield* Fiber.interrupt(watch.fiber)
      yield* client.DeleteSession({ id: session.id })
    }))
  }, 60_000)

  it("refuses settings wider than config and a bad `after`, naming the field", async () => {
    await run("http", Effect.gen(function*() {
      const client = yield* GatewayClient
      const outside = yield* Effect.either(client.CreateSession({ working_directory: "../elsewhere" }))
      expect(failure(outside)).toMatchObject({ _tag: "InvalidRequest", param: "working_directory" })
      const mode = yield* Effect.either(client.CreateSession({ permission_mode: "bypassPermissions" }))
      expect(failure(mode)).toMatchObject({ _tag: "InvalidRequest", param: "permission_mode" })
      const tools = yield* Effect.either(client.CreateSession({ allowed_tools: ["Bash"] }))
      expect(failure(tools)).toMatchObject({ _tag: "InvalidRequest", param: "allowed_tools" })
      const model = yield* Effect.either(client.CreateSession({ model: "gpt-4o" }))
      expect(failure(model)._tag).toBe("ModelNotFound")
      const after = yield* Effect.either(Stream.runCollect(client.SessionEvents({ id: "sess_nope", after: -1 })))
      expect(failure(after)).toMatchObject({ _tag: "InvalidRequest", param: "after" })
      const unknown = yield* Effect.either(Stream.runCollect(client.SessionEvents({ id: "sess_nope" })))
      expect(failure(unknown)).toMatchObject({ _tag: "SessionNotFound", id: "sess_nope" })
    }))
  })
})

describe("stats over RPC", () => {
  it("GetStats gives the figures of GET /stats, and they move after a chat", async () => {
    upstream.on("RPC-STATS", { kind: "message", blocks: [{ type: "text", text: "Counted." }], usage: { input_tokens: 13, output_tokens: 5 } })
    const before = await run("http", Effect.flatMap(GatewayClient, (client) => client.GetStats()))
    const viaHttp = await (await fetch(`${gateway.url}/stats`)).json() as { turns: { total: number }; tokens: { output: number } }
    expect(viaHttp.turns.total).toBe(before.turns.total)
    expect(viaHttp.tokens.output).toBe(before.tokens.output)
    events(await run("websocket", chat({ input: "RPC-STATS" })))
    const after = await run("websocket", Effect.flatMap(GatewayClient, (client) => client.GetStats()))
    expect(after.turns.total).toBe(before.turns.total + 1)
    expect(after.tokens.output - before.tokens.output).toBe(5)
    expect(after.tokens.input - before.tokens.input).toBeGreaterThanOrEqual(13)
    expect(after.requests.by_route["/rpc"]?.requests ?? 0).toBeGreaterThan(before.requests.by_route["/rpc"]?.requests ?? 0)
  })
})

describe("API keys, owners, limits and deadlines", () => {
  let other: Upstream
  let keyed: Gateway
  beforeAll(async () => {
    other = await startUpstream()
    keyed = await startGateway({
      upstreamUrl: other.url,
      config: {
        server: { api_keys: ["key-a", "key-b"], max_body_bytes: 64 * 1024 },
        claude: { max_concurrent_sessions: 1, timeout_seconds: 6 },
        queue: { max_waiting: 0 },
        sessions: { max_per_key: 1 }
      }
    })
  })
  afterAll(async () => {
    for (const [key, runtime] of runtimes) {
      if (key.startsWith(keyed.url)) await runtime.dispose()
    }
    await keyed.close()
    await other.close()
  })

  describe("sessions", () => {
    it("another key's session is SessionNotFound everywhere; a key's cap is a typed limit", async () => {
      const session = await run("http", Effect.flatMap(GatewayClient, (client) => client.CreateSession({})), keyed, "key-a")
      const id = session.id
      const asB = await run("websocket", Effect.gen(function*() {
        const client = yield* GatewayClient
        // Each call's failure (a success would show as itself and fail the match).
        const outcome = <A, E>(effect: Effect.Effect<A, E>) => Effect.match(effect, { onFailure: (e): unknown => e, onSuccess: (a): unknown => a })
        return yield* Effect.all([
          outcome(client.GetSession({ id })),
          outcome(Stream.runCollect(client.SessionEvents({ id, after: 0 }))),
          outcome(client.SessionSend({ id, content: "not yours" })),
          outcome(client.SessionInterrupt({ id })),
          outcome(client.DeleteSession({ id }))
        ])
      }), keyed, "key-b")
      expect(asB).toHaveLength(5)
      for (const result of asB) expect(result).toMatchObject({ _tag: "SessionNotFound", id })
      const listB = await run("http", Effect.flatMap(GatewayClient, (client) => client.ListSessions()), keyed, "key-b")
      expect(listB.map((s) => s.id)).not.toContain(id)

      const second = await run("http", Effect.flatMap(GatewayClient, (client) => Effect.either(client.CreateSession({}))), keyed, "key-a")
      expect(failure(second)).toMatchObject({ _tag: "SessionLimitReached", scope: "key", limit: 1, retryAfterSeconds: null })

      const asA = await run("http", Effect.gen(function*() {
        const client = yield* GatewayClient
        const found = yield* client.GetSession({ id })
        yield* client.DeleteSession({ id })
        return found
      }), keyed, "key-a")
      expect(asA.id).toBe(id)
    })
  })

  it("a conversation belongs to the key that made it", async () => {
    other.on("RPC-OWNER", { kind: "message", blocks: [{ type: "text", text: "Mine." }] })
    const list = events(await run("http", chat({ input: "RPC-OWNER" }), keyed, "key-a"))
    const id = accepted(list)
    const asB = await run("websocket", Effect.flatMap(GatewayClient, (client) => client.GetConversation({ id })).pipe(Effect.either), keyed, "key-b")
    expect(failure(asB)).toMatchObject({ _tag: "ConversationNotFound" })
    const continued = await run("http", chat({ conversationId: id, input: "x" }), keyed, "key-b")
    expect(failure(continued)).toMatchObject({ _tag: "ConversationNotFound" })
    const pageB = await run("http", Effect.flatMap(GatewayClient, (client) => client.ListConversations({})), keyed, "key-b")
    expect(pageB.data.map((c) => c.id)).not.toContain(id)
    const asA = await run("websocket", Effect.flatMap(GatewayClient, (client) => client.GetConversation({ id })), keyed, "key-a")
    expect(asA.messages.map((m) => m.content)).toEqual(["RPC-OWNER", "Mine."])
  })

  it("a call whose own headers carry an unknown key gets Unauthorized", async () => {
    const result = await run(
      "http",
      Effect.flatMap(GatewayClient, (client) => client.ListModels()).pipe(
        RpcClient.withHeaders({ authorization: "Bearer forged" }),
        Effect.either
      ),
      keyed,
      "key-a"
    )
    expect(failure(result)).toMatchObject({ _tag: "Unauthorized" })
  })

  it("a transport without a valid key is refused", async () => {
    const response = await fetch(`${keyed.url}/rpc`, { method: "POST", body: "{}" })
    expect(response.status).toBe(401)
    for (const transport of transports) {
      const result = await run(transport, Effect.flatMap(GatewayClient, (client) => client.ListModels()).pipe(Effect.either), keyed, "wrong")
      expect(failure(result)).toMatchObject({ _tag: "RpcClientError" })
      // A streaming call too (over HTTP it reads its response itself): refused, not left waiting.
      const streamed = await run(transport, chat({ input: "never sent upstream" }), keyed, "wrong")
      expect(failure(streamed)).toMatchObject({ _tag: "RpcClientError" })
    }
    // A key node:http cannot even send fails the call the same way (not a defect).
    expect(failure(await run("http", chat({ input: "x" }), keyed, "bad\nkey"))).toMatchObject({ _tag: "RpcClientError" })
    const plain = await run("http", Effect.flatMap(GatewayClient, (client) => client.ListModels()).pipe(Effect.either), keyed, "bad\nkey")
    expect(failure(plain)).toMatchObject({ _tag: "RpcClientError" })
  })

  it("a call over server.max_body_bytes fails over HTTP instead of waiting (a 400 without NDJSON)", async () => {
    const big = "x".repeat(100 * 1024)
    const streamed = await run("http", chat({ input: big }), keyed, "key-a")
    expect(failure(streamed)).toMatchObject({ _tag: "RpcClientError", message: expect.stringContaining("HTTP 400") })
    const plain = await run("http", Effect.flatMap(GatewayClient, (client) => client.CreateConversation({ system: big })).pipe(Effect.either), keyed, "key-a")
    expect(failure(plain)).toMatchObject({ _tag: "RpcClientError" })
  })

  it("a chunked body (no content-length) over server.max_body_bytes is the same 400, not a 5xx", async () => {
    const call = JSON.stringify({ _tag: "Request", id: "1", tag: "Chat", payload: { input: "x".repeat(100 * 1024) }, headers: [] }) + "\n"
    const response = await new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
      const request = http.request(`${keyed.url}/rpc`, {
        method: "POST",
        headers: { "content-type": "application/ndjson", "transfer-encoding": "chunked", authorization: "Bearer key-a" }
      }, (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => body += chunk)
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }))
      })
      request.on("error", reject)
      // In pieces, so that only what arrives tells the size.
      for (let i = 0; i < call.length; i += 16 * 1024) request.write(call.slice(i, i + 16 * 1024))
      request.end()
    })
    expect(response.status).toBe(400)
    expect(JSON.parse(response.body)).toMatchObject({ error: { code: "request_too_large", message: expect.stringContaining("server.max_body_bytes") } })
    // The rest of the body is not read: the connection is not kept for another request.
    expect(response.connection).toBe("close")
  })

  it("Overloaded with retry-after when every session is busy, Timeout past claude.timeout_seconds", async () => {
    other.on("RPC-HANG", { kind: "hang" })
    await waitForHealth(keyed, () => true) // the app answers
    const result = await run("http", Effect.gen(function*() {
      const client = yield* GatewayClient
      const hanging = yield* Effect.fork(Effect.either(Stream.runCollect(client.Chat({ input: "RPC-HANG" }))))
      // The hanging turn holds the only session slot.
      yield* Effect.promise(() =>
        (async () => {
          const deadline = Date.now() + 20_000
          while (Date.now() < deadline) {
            const h = await (await fetch(`${keyed.url}/health`)).json() as { sessions: { running: number } }
            if (h.sessions.running === 1) return
            await new Promise((r) => setTimeout(r, 50))
          }
          throw new Error("the hanging turn never ran")
        })()
      )
      const busy = yield* Effect.either(Stream.runCollect(client.Chat({ input: "second" })))
      return { busy, hung: yield* Fiber.join(hanging) }
    }), keyed, "key-a")
    expect(failure(result.busy)).toMatchObject({ _tag: "Overloaded", reason: "queue_full", retryAfterSeconds: 1 })
    expect(failure(result.hung)).toMatchObject({ _tag: "Timeout", seconds: 6 })
  }, 30_000)
})
