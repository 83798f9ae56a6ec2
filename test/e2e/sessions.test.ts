import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cliProcesses, type Gateway, startGateway, waitForNoCliChildren } from "../support/gateway.js"
import { SessionSocket as Client, type Json } from "../support/sessionSocket.js"
import { messagesOf, startUpstream, type Upstream } from "../support/upstream.js"

/**
 * Interactive sessions over WebSocket (docs/api/sessions.md), with the real CLI against the
 * scripted upstream: a session's life, permission prompts allowed, denied and timed out, interrupt,
 * a gateway restart, another key, the caps, tickets.
 */

const KEY_A = "sk-sessions-a"
const KEY_B = "sk-sessions-b"
const KEY_C = "sk-sessions-c"
const auth = (key: string) => ({ authorization: `Bearer ${key}` })

const api = async (gateway: Gateway, method: string, route: string, key: string | undefined, body?: unknown) => {
  const response = await fetch(`${gateway.url}${route}`, {
    method,
    headers: { ...(key === undefined ? {} : auth(key)), ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  return { status: response.status, headers: response.headers, body: (text === "" ? {} : JSON.parse(text)) as Json }
}

const userTexts = (body: unknown) => JSON.stringify(messagesOf(body).filter((m) => m.role === "user").map((m) => m.content))

const sessionClis = () => cliProcesses().filter((p) => p.args.includes("--permission-prompt-tool"))

const start = async (upstream: Upstream, config: Record<string, Record<string, unknown>> = {}, home?: string) =>
  startGateway({
    upstreamUrl: upstream.url,
    ...(home === undefined ? {} : { home }),
    config: { server: { api_keys: [KEY_A, KEY_B, KEY_C] }, pool: { prewarm: 0 }, ...config }
  })

describe("sessions", () => {
  let upstream: Upstream
  let gateway: Gateway
  const clients: Array<Client> = []
  const connect = async (route: string, headers: Record<string, string> = auth(KEY_A)) => {
    const client = await Client.open(gateway, route, headers)
    clients.push(client)
    return client
  }
  const create = async (body: Json = {}, key = KEY_A) => {
    const created = await api(gateway, "POST", "/v1/sessions", key, body)
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    return created.body
  }
  const remove = async (id: string) => expect((await api(gateway, "DELETE", `/v1/sessions/${id}`, KEY_A)).status).toBe(200)

  beforeAll(async () => {
    upstream = await startUpstream()
    gateway = await start(upstream)
  })
  afterAll(async () => {
    for (const client of clients) await client.close()
    await gateway?.close()
    await upstream?.close()
    expect(await waitForNoCliChildren()).toEqual([])
  })

  it("lives: create, two turns, reconnect with after, delete", async () => {
    upstream.on("SESS-LIFE-ONE", { kind: "message", blocks: [{ type: "text", text: ["first ", "answer"] }], usage: { input_tokens: 20, output_tokens: 4 } })
    upstream.on("SESS-LIFE-TWO", { kind: "message", blocks: [{ type: "text", text: ["second ", "answer"] }] })
    const session = await create({ system_prompt: "SESS-LIFE-SYSTEM", working_directory: "life" })
    expect(session).toMatchObject({ object: "session", turns: 0, permission_mode: "default", websocket_url: `/v1/sessions/${session.id}/ws` })
    expect(["starting", "idle"]).toContain(session.state)
    expect(session.working_directory).toBe(path.join(gateway.home, "workspace", "life"))

    const client = await connect(session.websocket_url)
    const hello = await client.next((f) => f.type === "hello")
    expect(hello.session.id).toBe(session.id)

    const one = await client.turn("SESS-LIFE-ONE")
    expect(one.frames.filter((f) => f.type === "text_delta").map((f) => f.text).join("")).toBe("first answer")
    expect(one.frames.map((f) => f.type)).toEqual(expect.arrayContaining(["state", "turn_started", "text_delta", "result"]))
    expect(one.result).toMatchObject({ turn: 1, subtype: "success", is_error: false, interrupted: false, text: "first answer" })
    expect(one.result.usage.input_tokens).toBe(20)
    expect(one.result.cost_usd).toBeGreaterThan(0)
    const two = await client.turn("SESS-LIFE-TWO")
    expect(two.result).toMatchObject({ turn: 2, text: "second answer", cli_session_id: one.result.cli_session_id })
    expect(two.result.total_cost_usd).toBeCloseTo(one.result.cost_usd + two.result.cost_usd, 10)
    // The same CLI session: the second request upstream carries the first turn.
    const [second] = upstream.requestsFor("SESS-LIFE-TWO")
    expect(userTexts(second!.body)).toContain("SESS-LIFE-ONE")
    expect(JSON.stringify(second!.body)).toContain("SESS-LIFE-SYSTEM")

    // Every server event has the next seq.
    const sequenced = client.frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number)
    expect(sequenced).toEqual(sequenced.map((_, i) => sequenced[0]! + i))

    // A second client that saw up to the first result gets exactly what came after it.
    const watcher = await connect(`${session.websocket_url}?after=${one.result.seq}`)
    const replayHello = await watcher.next((f) => f.type === "hello")
    expect(replayHello).toMatchObject({ replay_from: one.result.seq, truncated: false })
    const missed = client.frames.filter((f) => f.seq > one.result.seq)
    await watcher.next((f) => f.seq === missed.at(-1)!.seq)
    expect(watcher.frames.slice(1)).toEqual(missed)

    const got = await api(gateway, "GET", `/v1/sessions/${session.id}`, KEY_A)
    expect(got.body).toMatchObject({ id: session.id, state: "idle", turns: 2, cli_session_id: one.result.cli_session_id, last_seq: missed.at(-1)!.seq })
    expect(got.body.cost_usd).toBeCloseTo(two.result.total_cost_usd, 10)
    expect(got.body.usage.input_tokens).toBeGreaterThanOrEqual(20)
    const listed = await api(gateway, "GET", "/v1/sessions", KEY_A)
    expect(listed.body.data.map((s: Json) => s.id)).toContain(session.id)

    expect(sessionClis()).toHaveLength(1)
    await remove(session.id)
    // Both watchers learn it, and their sockets close.
    for (const c of [client, watcher]) {
      await c.next((f) => f.type === "state" && f.state === "ended" && f.reason === "deleted")
      await c.next(() => false, 0, 5000).catch(() => undefined)
      expect(c.closed?.code).toBe(1000)
    }
    expect((await api(gateway, "GET", `/v1/sessions/${session.id}`, KEY_A)).status).toBe(404)
    expect(await waitForNoCliChildren()).toEqual([])
  })

  it("relays a permission prompt; an approved command runs, a denied one does not", async () => {
    const write = (file: string) => `node -e "require('fs').writeFileSync('${file}','x')"`
    upstream.on("SESS-APPROVE", { kind: "message", blocks: [{ type: "tool_use", id: "toolu_sess_approve", name: "Bash", input: { command: write("approved.txt"), description: "write approved" } }] })
    upstream.on("toolu_sess_approve", { kind: "message", blocks: [{ type: "text", text: "approved and written" }] })
    upstream.on("SESS-DENY", { kind: "message", blocks: [{ type: "tool_use", id: "toolu_sess_deny", name: "Bash", input: { command: write("denied.txt"), description: "write denied" } }] })
    upstream.on("toolu_sess_deny", { kind: "message", blocks: [{ type: "text", text: "could not write" }] })
    const session = await create({ working_directory: "perm" })
    const client = await connect(session.websocket_url)

    let from = client.frames.length
    client.send({ type: "user_message", content: "SESS-APPROVE" })
    const ask = await client.next((f) => f.type === "permission_request", from)
    expect(ask).toMatchObject({ tool_name: "Bash", tool_use_id: "toolu_sess_approve", input: { command: write("approved.txt") }, timeout_seconds: 120 })
    await client.next((f) => f.type === "state" && f.state === "waiting_for_permission", from)
    expect(fs.existsSync(path.join(session.working_directory, "approved.txt"))).toBe(false)
    client.send({ type: "permission_decision", request_id: ask.request_id, decision: "allow" })
    const approved = await client.next((f) => f.type === "result", from)
    expect(approved.text).toBe("approved and written")
    const turn = client.frames.slice(from)
    expect(turn.find((f) => f.type === "tool_use")).toMatchObject({ id: "toolu_sess_approve", name: "Bash" })
    expect(turn.find((f) => f.type === "permission_resolved")).toMatchObject({ request_id: ask.request_id, decision: "allow", by: "client" })
    expect(turn.find((f) => f.type === "tool_result")).toMatchObject({ tool_use_id: "toolu_sess_approve", is_error: false })
    expect(fs.readFileSync(path.join(session.working_directory, "approved.txt"), "utf8")).toBe("x")
    // A second decision for the same prompt is refused, to this client only.
    client.send({ type: "permission_decision", request_id: ask.request_id, decision: "deny" })
    expect(await client.next((f) => f.type === "error", from)).toMatchObject({ code: "unknown_request" })

    from = client.frames.length
    client.send({ type: "user_message", content: "SESS-DENY" })
    const ask2 = await client.next((f) => f.type === "permission_request", from)
    client.send({ type: "permission_decision", request_id: ask2.request_id, decision: "deny", message: "SESS-NOT-ALLOWED" })
    const denied = await client.next((f) => f.type === "result", from)
    expect(denied.text).toBe("could not write")
    expect(client.frames.slice(from).find((f) => f.type === "tool_result")).toMatchObject({ tool_use_id: "toolu_sess_deny", is_error: true })
    // The model was told why.
    expect(JSON.stringify(upstream.requestsFor("toolu_sess_deny")[0]!.body)).toContain("SESS-NOT-ALLOWED")
    expect(fs.existsSync(path.join(session.working_directory, "denied.txt"))).toBe(false)

    // Allowed with an edited input: the edited command is what runs.
    upstream.on("SESS-EDIT", { kind: "message", blocks: [{ type: "tool_use", id: "toolu_sess_edit", name: "Bash", input: { command: write("asked.txt"), description: "write asked" } }] })
    upstream.on("toolu_sess_edit", { kind: "message", blocks: [{ type: "text", text: "edited" }] })
    from = client.frames.length
    client.send({ type: "user_message", content: "SESS-EDIT" })
    const ask3 = await client.next((f) => f.type === "permission_request", from)
    client.send({ type: "permission_decision", request_id: ask3.request_id, decision: "allow", updated_input: { command: write("edited.txt"), description: "write edited" } })
    expect((await client.next((f) => f.type === "result", from)).text).toBe("edited")
    expect(fs.existsSync(path.join(session.working_directory, "edited.txt"))).toBe(true)
    expect(fs.existsSync(path.join(session.working_directory, "asked.txt"))).toBe(false)
    await remove(session.id)
  })

  it("interrupts a turn mid-stream; the next message works", async () => {
    const words = Array.from({ length: 200 }, (_, i) => `w${i} `)
    upstream.on("SESS-SLOW", { kind: "message", blocks: [{ type: "text", text: words }], interDeltaMs: 50 })
    upstream.on("SESS-AFTER-INTERRUPT", { kind: "message", blocks: [{ type: "text", text: "still here" }] })
    const session = await create()
    const client = await connect(session.websocket_url)
    const from = client.frames.length
    client.send({ type: "user_message", content: "SESS-SLOW" })
    await client.next((f) => f.type === "text_delta", from)
    client.send({ type: "interrupt" })
    const result = await client.next((f) => f.type === "result", from)
    expect(result).toMatchObject({ interrupted: true, is_error: true, subtype: "error_during_execution" })
    const streamed = client.frames.slice(from).filter((f) => f.type === "text_delta").map((f) => f.text).join("")
    expect(streamed.length).toBeLessThan(words.join("").length)
    await client.next((f) => f.type === "state" && f.state === "idle" && f.seq > result.seq, from)
    const next = await client.turn("SESS-AFTER-INTERRUPT")
    expect(next.result).toMatchObject({ text: "still here", interrupted: false, is_error: false })
    await remove(session.id)
  })

  it("keeps sessions to their key: another key gets 404, and tickets stand for one connection", async () => {
    const session = await create()
    for (const [method, route] of [["GET", `/v1/sessions/${session.id}`], ["DELETE", `/v1/sessions/${session.id}`], ["POST", `/v1/sessions/${session.id}/ticket`]] as const) {
      const refused = await api(gateway, method, route, KEY_B)
      expect(refused.status).toBe(404)
      expect(refused.body.error.code).toBe("session_not_found")
    }
    expect((await api(gateway, "GET", "/v1/sessions", KEY_B)).body.data).toEqual([])
    await expect(Client.open(gateway, session.websocket_url, auth(KEY_B))).rejects.toThrow("status 404")
    await expect(Client.open(gateway, session.websocket_url, {})).rejects.toThrow("status 401")
    expect((await api(gateway, "GET", "/v1/sessions", "sk-wrong")).status).toBe(401)

    const ticket = await api(gateway, "POST", `/v1/sessions/${session.id}/ticket`, KEY_A)
    expect(ticket.status).toBe(201)
    expect(ticket.body.websocket_url).toBe(`/v1/sessions/${session.id}/ws?ticket=${ticket.body.ticket}`)
    const browser = await connect(ticket.body.websocket_url, {})
    expect((await browser.next((f) => f.type === "hello")).session.id).toBe(session.id)
    browser.send({ type: "ping" })
    await browser.next((f) => f.type === "pong")
    browser.send({ type: "bogus" })
    expect(await browser.next((f) => f.type === "error")).toMatchObject({ code: "invalid_message" })
    await expect(Client.open(gateway, ticket.body.websocket_url, {})).rejects.toThrow("status 401")
    // A ticket is for its session only.
    const other = await create()
    const otherTicket = await api(gateway, "POST", `/v1/sessions/${other.id}/ticket`, KEY_A)
    await expect(Client.open(gateway, `/v1/sessions/${session.id}/ws?ticket=${otherTicket.body.ticket}`, {})).rejects.toThrow("status 401")
    await remove(session.id)
    await remove(other.id)
  })

  it("refuses a permission mode, tools or a directory wider than config", async () => {
    const refused = async (body: Json, param: string) => {
      const response = await api(gateway, "POST", "/v1/sessions", KEY_A, body)
      expect(response.status, JSON.stringify(response.body)).toBe(400)
      expect(response.body.error.param).toBe(param)
    }
    await refused({ permission_mode: "bypassPermissions" }, "permission_mode")
    await refused({ allowed_tools: ["Bash"] }, "allowed_tools")
    await refused({ working_directory: "../outside" }, "working_directory")
    await refused({ max_budget_usd: -1 }, "max_budget_usd")
    const session = await create()
    const client = await connect(session.websocket_url)
    client.send({ type: "set_permission_mode", mode: "bypassPermissions" })
    expect(await client.next((f) => f.type === "error")).toMatchObject({ code: "not_allowed" })
    client.send({ type: "set_permission_mode", mode: "acceptEdits" })
    expect(await client.next((f) => f.type === "permission_mode_changed")).toMatchObject({ mode: "acceptEdits" })
    expect((await api(gateway, "GET", `/v1/sessions/${session.id}`, KEY_A)).body.permission_mode).toBe("acceptEdits")
    // A model switch applies from the next upstream call; an unknown model is refused.
    client.send({ type: "set_model", model: "no-such-model" })
    expect(await client.next((f) => f.type === "error" && f.code === "invalid_message")).toMatchObject({ message: expect.stringContaining("no-such-model") })
    client.send({ type: "set_model", model: "haiku" })
    const changed = await client.next((f) => f.type === "model_changed")
    upstream.on("SESS-HAIKU", { kind: "message", blocks: [{ type: "text", text: "small" }] })
    await client.turn("SESS-HAIKU")
    expect((upstream.requestsFor("SESS-HAIKU")[0]!.body as Json).model).toContain("haiku")
    expect((await api(gateway, "GET", `/v1/sessions/${session.id}`, KEY_A)).body.model).toBe(changed.model)
    await remove(session.id)
  })
})

describe("sessions with short limits", () => {
  let upstream: Upstream
  let gateway: Gateway
  beforeAll(async () => {
    upstream = await startUpstream()
    gateway = await start(upstream, { sessions: { permission_timeout_seconds: 1, max_per_key: 1, max_total: 2 } })
  })
  afterAll(async () => {
    await gateway?.close()
    await upstream?.close()
    expect(await waitForNoCliChildren()).toEqual([])
  })

  it("denies a permission request nobody answers", async () => {
    upstream.on("SESS-TIMEOUT", { kind: "message", blocks: [{ type: "tool_use", id: "toolu_sess_timeout", name: "Bash", input: { command: `node -e "require('fs').writeFileSync('late.txt','x')"`, description: "write late" } }] })
    upstream.on("toolu_sess_timeout", { kind: "message", blocks: [{ type: "text", text: "nobody answered" }] })
    const created = await api(gateway, "POST", "/v1/sessions", KEY_A, { working_directory: "timeout" })
    const client = await Client.open(gateway, created.body.websocket_url, auth(KEY_A))
    client.send({ type: "user_message", content: "SESS-TIMEOUT" })
    const ask = await client.next((f) => f.type === "permission_request")
    expect(ask.timeout_seconds).toBe(1)
    expect(await client.next((f) => f.type === "permission_resolved")).toMatchObject({ request_id: ask.request_id, decision: "deny", by: "timeout" })
    expect((await client.next((f) => f.type === "result")).text).toBe("nobody answered")
    expect(fs.existsSync(path.join(created.body.working_directory, "late.txt"))).toBe(false)
    await client.close()
    expect((await api(gateway, "DELETE", `/v1/sessions/${created.body.id}`, KEY_A)).status).toBe(200)
  })

  it("caps sessions per key and in total with 429", async () => {
    const a = await api(gateway, "POST", "/v1/sessions", KEY_A, {})
    expect(a.status).toBe(201)
    const a2 = await api(gateway, "POST", "/v1/sessions", KEY_A, {})
    expect(a2.status).toBe(429)
    expect(a2.body.error.code).toBe("too_many_sessions")
    const b = await api(gateway, "POST", "/v1/sessions", KEY_B, {})
    expect(b.status).toBe(201)
    const c = await api(gateway, "POST", "/v1/sessions", KEY_C, {})
    expect(c.status).toBe(429)
    expect(c.headers.get("retry-after")).toBe("30")
    expect((await api(gateway, "DELETE", `/v1/sessions/${a.body.id}`, KEY_A)).status).toBe(200)
    const c2 = await api(gateway, "POST", "/v1/sessions", KEY_C, {})
    expect(c2.status).toBe(201)
    for (const [key, id] of [[KEY_B, b.body.id], [KEY_C, c2.body.id]] as const) {
      expect((await api(gateway, "DELETE", `/v1/sessions/${id}`, key)).status).toBe(200)
    }
  })
})

describe("sessions across a gateway restart", () => {
  let upstream: Upstream
  beforeAll(async () => {
    upstream = await startUpstream()
  })
  afterAll(async () => {
    await upstream?.close()
    expect(await waitForNoCliChildren()).toEqual([])
  })

  it("resumes the session's CLI when a client reconnects", async () => {
    upstream.on("SESS-BEFORE-RESTART", { kind: "message", blocks: [{ type: "text", text: "before" }] })
    upstream.on("SESS-AFTER-RESTART", { kind: "message", blocks: [{ type: "text", text: "after" }] })
    const first = await start(upstream)
    let home: string
    let id: string
    let cliSession: string
    let lastSeq: number
    try {
      home = first.home
      const created = await api(first, "POST", "/v1/sessions", KEY_A, {})
      id = created.body.id
      const client = await Client.open(first, created.body.websocket_url, auth(KEY_A))
      const { result } = await client.turn("SESS-BEFORE-RESTART")
      cliSession = result.cli_session_id
      lastSeq = client.frames.at(-1)!.seq
      await client.close()
    } finally {
      await first.close({ keepHome: true })
    }
    expect(await waitForNoCliChildren()).toEqual([])

    const second = await start(upstream, {}, home)
    try {
      const got = await api(second, "GET", `/v1/sessions/${id}`, KEY_A)
      expect(got.body).toMatchObject({ state: "idle", turns: 1, cli_session_id: cliSession, last_seq: lastSeq })
      expect((await api(second, "GET", `/v1/sessions/${id}`, KEY_B)).status).toBe(404)
      const client = await Client.open(second, `/v1/sessions/${id}/ws?after=${lastSeq}`, auth(KEY_A))
      expect(await client.next((f) => f.type === "hello")).toMatchObject({ replay_from: lastSeq })
      const { frames, result } = await client.turn("SESS-AFTER-RESTART")
      expect(frames.every((f) => f.seq === undefined || f.seq > lastSeq)).toBe(true)
      expect(result).toMatchObject({ turn: 2, text: "after" })
      expect(cliProcesses().some((p) => p.args.includes(`--resume ${cliSession}`))).toBe(true)
      // The resumed CLI session holds the first turn.
      expect(userTexts(upstream.requestsFor("SESS-AFTER-RESTART")[0]!.body)).toContain("SESS-BEFORE-RESTART")
      await client.close()
      expect((await api(second, "DELETE", `/v1/sessions/${id}`, KEY_A)).status).toBe(200)
    } finally {
      await second.close()
    }
  })
})

describe("idle sessions", () => {
  let upstream: Upstream
  let gateway: Gateway
  beforeAll(async () => {
    upstream = await startUpstream()
    gateway = await start(upstream, { sessions: { idle_timeout_minutes: 0.05 } })
  })
  afterAll(async () => {
    await gateway?.close()
    await upstream?.close()
    expect(await waitForNoCliChildren()).toEqual([])
  })

  it("end after sessions.idle_timeout_minutes: the CLI goes, clients are told, the record stays", async () => {
    upstream.on("SESS-IDLE", { kind: "message", blocks: [{ type: "text", text: "soon idle" }] })
    const created = await api(gateway, "POST", "/v1/sessions", KEY_A, {})
    const client = await Client.open(gateway, created.body.websocket_url, auth(KEY_A))
    await client.turn("SESS-IDLE")
    expect(await client.next((f) => f.type === "state" && f.state === "ended")).toMatchObject({ reason: "idle_timeout" })
    await client.next(() => false, 0, 5000).catch(() => undefined)
    expect(client.closed?.code).toBe(1000)
    expect(await waitForNoCliChildren()).toEqual([])
    const got = await api(gateway, "GET", `/v1/sessions/${created.body.id}`, KEY_A)
    expect(got.body).toMatchObject({ state: "ended", turns: 1 })
    // Reconnecting shows the ended session, and the socket closes.
    const again = await Client.open(gateway, created.body.websocket_url, auth(KEY_A))
    expect((await again.next((f) => f.type === "hello")).session.state).toBe("ended")
    await again.next(() => false, 0, 5000).catch(() => undefined)
    expect(again.closed?.code).toBe(1000)
    // An ended session no longer counts against the caps; it can still be deleted.
    expect((await api(gateway, "DELETE", `/v1/sessions/${created.body.id}`, KEY_A)).status).toBe(200)
    expect((await api(gateway, "GET", `/v1/sessions/${created.body.id}`, KEY_A)).status).toBe(404)
  })
})
