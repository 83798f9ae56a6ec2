import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import OpenAI from "openai"
import type { ChatCompletion, ChatCompletionMessageParam } from "openai/resources/chat/completions"
import { describe, expect, it } from "vitest"
import { cliChildren, type Gateway, health, openaiFor, postChat, startGateway, waitForHealth } from "../support/gateway.js"
import { messagesOf, textOf, type Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// Conversations: conversation_id, /v1/conversations, native continuation for stateless clients,
// persisted across restarts (real CLI, scripted upstream that logs every request body).

let upstream: Upstream
let gateway: Gateway
let client: OpenAI

useGateway({}, (started) => ({ upstream, gateway, client } = started))

const answer = (marker: string, text: string) => upstream.on(marker, { kind: "message", blocks: [{ type: "text", text }] })

/** The CLI's own reminders in user messages. */
const reminders = /<system-reminder>[\s\S]*?<\/system-reminder>/g

/** The user and assistant turns upstream received for `marker` (the CLI's own system messages left out). */
const turnsSent = (marker: string, which = 0) =>
  messagesOf(upstream.requestsFor(marker)[which]!.body)
    .filter((m) => m.role === "user" || m.role === "assistant")
    .map((m) => `${m.role}: ${textOf(m.content).replace(reminders, "").trim()}`)

const sessionOf = (marker: string) => upstream.requestsFor(marker)[0]!.headers["x-claude-code-session-id"]

type WithConversation = ChatCompletion & { conversation_id?: string }

const chat = async (messages: Array<ChatCompletionMessageParam>, extra: Record<string, unknown> = {}, c = client) => {
  const { data, response } = await c.chat.completions.create({ model: "sonnet", messages, ...extra }).withResponse()
  const completion = data as WithConversation
  expect(response.headers.get("x-conversation-id")).toBe(completion.conversation_id)
  return completion
}

const getJson = async (path: string, init?: RequestInit) => {
  const response = await fetch(`${gateway.url}${path}`, init)
  return { status: response.status, body: await response.json() as Record<string, unknown> }
}

describe("conversation_id", () => {
  it("continues the CLI session: upstream gets the first turn as real prior messages", async () => {
    answer("CONV-A1", "First answer.")
    answer("CONV-A2", "Second answer.")
    answer("CONV-A3", "Third answer.")
    const first = await chat([{ role: "user", content: "CONV-A1" }])
    expect(first.conversation_id).toMatch(/^conv_/)
    const second = await chat([{ role: "user", content: "CONV-A2" }], { conversation_id: first.conversation_id })
    expect(second.conversation_id).toBe(first.conversation_id)
    expect(turnsSent("CONV-A2")).toEqual(["user: CONV-A1", "assistant: First answer.", "user: CONV-A2"])
    expect(sessionOf("CONV-A2")).toBe(sessionOf("CONV-A1"))
    // The header works as well as the body field.
    const third = await client.chat.completions.create(
      { model: "sonnet", messages: [{ role: "user", content: "CONV-A3" }] },
      { headers: { "x-conversation-id": first.conversation_id! } }
    )
    expect(third.choices[0]!.message.content).toBe("Third answer.")
    expect(turnsSent("CONV-A3")).toHaveLength(5)
    expect(sessionOf("CONV-A3")).toBe(sessionOf("CONV-A1"))
  })

  it("streams carry the conversation id in the header and in every chunk", async () => {
    answer("CONV-S1", "streamed")
    const { data: stream, response } = await client.chat.completions
      .create({ model: "sonnet", messages: [{ role: "user", content: "CONV-S1" }], stream: true })
      .withResponse()
    const id = response.headers.get("x-conversation-id")
    expect(id).toMatch(/^conv_/)
    for await (const chunk of stream) expect((chunk as { conversation_id?: string }).conversation_id).toBe(id)
  })

  it("an unknown id is a 404 before any CLI work", async () => {
    // Processes taken from the pool (hits) or spawned for a request (misses); background top-ups are neither.
    const taken = async () => {
      const { pool } = await health(gateway)
      return pool.hits + pool.misses
    }
    const before = await taken()
    const response = await postChat(gateway, { model: "sonnet", conversation_id: "conv_nope", messages: [{ role: "user", content: "hi" }] })
    expect(response.status).toBe(404)
    expect(await response.json()).toMatchObject({ error: { code: "conversation_not_found", param: "conversation_id" } })
    expect(await taken()).toBe(before)
    expect(upstream.requestsFor("conv_nope")).toHaveLength(0)
  })

  it("serves two concurrent requests on one conversation in order, never interleaved", async () => {
    upstream.on("CONV-C1", { kind: "message", blocks: [{ type: "text", text: "slow one" }], delayMs: 600 })
    answer("CONV-C2", "quick one")
    const created = await getJson("/v1/conversations", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })
    const id = created.body.id as string
    const first = chat([{ role: "user", content: "CONV-C1" }], { conversation_id: id })
    await new Promise((r) => setTimeout(r, 100))
    const second = chat([{ role: "user", content: "CONV-C2" }], { conversation_id: id })
    expect((await first).choices[0]!.message.content).toBe("slow one")
    expect((await second).choices[0]!.message.content).toBe("quick one")
    // The second turn started after the first had finished: it saw the first as history.
    expect(turnsSent("CONV-C2")).toEqual(["user: CONV-C1", "assistant: slow one", "user: CONV-C2"])
  })
})

describe("stateless clients that re-send the history", () => {
  it("continue the same CLI session for three turns, with no transcript", async () => {
    answer("HIST-1", "one")
    answer("HIST-2", "two")
    answer("HIST-3", "three")
    const messages: Array<ChatCompletionMessageParam> = [{ role: "system", content: "Be brief." }, { role: "user", content: "HIST-1" }]
    const first = await chat(messages)
    messages.push(first.choices[0]!.message, { role: "user", content: "HIST-2" })
    const second = await chat(messages)
    const spawnedAfterSecond = (await health(gateway)).pool.spawned
    messages.push(second.choices[0]!.message, { role: "user", content: "HIST-3" })
    const third = await chat(messages)
    expect(new Set([first.conversation_id, second.conversation_id, third.conversation_id]).size).toBe(1)
    expect(new Set([sessionOf("HIST-1"), sessionOf("HIST-2"), sessionOf("HIST-3")]).size).toBe(1)
    expect(turnsSent("HIST-3")).toEqual(["user: HIST-1", "assistant: one", "user: HIST-2", "assistant: two", "user: HIST-3"])
    for (const marker of ["HIST-2", "HIST-3"]) expect(JSON.stringify(upstream.requestsFor(marker)[0]!.body)).not.toContain("conversation_history")
    // The third turn ran on the conversation's live CLI: nothing was spawned for it.
    const spawnedStandbys = (await health(gateway)).pool.signatures.length
    expect((await health(gateway)).pool.spawned - spawnedAfterSecond).toBeLessThanOrEqual(spawnedStandbys)
  })

  it("two requests re-sending the same history at once: the second starts a conversation of its own", async () => {
    answer("TWIN-1", "base")
    upstream.on("TWIN-2", { kind: "message", blocks: [{ type: "text", text: "twin answer" }], delayMs: 400 })
    const base = await chat([{ role: "user", content: "TWIN-1" }])
    const history: Array<ChatCompletionMessageParam> = [{ role: "user", content: "TWIN-1" }, base.choices[0]!.message, { role: "user", content: "TWIN-2" }]
    const [a, b] = await Promise.all([chat(history), new Promise((r) => setTimeout(r, 100)).then(() => chat(history))])
    // One continues the conversation; the other must not be appended after an answer its client never saw.
    expect(new Set([a.conversation_id, b.conversation_id]).size).toBe(2)
    expect([a.conversation_id, b.conversation_id]).toContain(base.conversation_id)
  })

  it("an edited history starts a new conversation, with the history as a transcript", async () => {
    answer("EDIT-1", "original")
    answer("EDIT-2", "after the edit")
    const first = await chat([{ role: "user", content: "EDIT-1" }])
    const edited = await chat([
      { role: "user", content: "EDIT-1" },
      { role: "assistant", content: "something else" },
      { role: "user", content: "EDIT-2" }
    ])
    expect(edited.conversation_id).not.toBe(first.conversation_id)
    expect(sessionOf("EDIT-2")).not.toBe(sessionOf("EDIT-1"))
    expect(JSON.stringify(upstream.requestsFor("EDIT-2")[0]!.body)).toContain("<conversation_history>")
  })
})

describe("/v1/conversations", () => {
  it("creates, lists with pagination, shows messages and usage, and deletes", async () => {
    const post = (body: unknown) =>
      getJson("/v1/conversations", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
    const created = await post({ model: "sonnet", system: "You are CONV-SYS.", metadata: { user: "ada" }, working_directory: "projects/a" })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({ object: "conversation", model: "sonnet", system: "You are CONV-SYS.", metadata: { user: "ada" } })
    expect(created.body.working_directory).toBe(`${gateway.home}/workspace/projects/a`)
    const id = created.body.id as string

    answer("API-1", "api answer")
    await chat([{ role: "user", content: "API-1" }], { conversation_id: id })
    // The conversation's system prompt and working directory applied.
    const body = JSON.stringify(upstream.requestsFor("API-1")[0]!.body)
    expect(body).toContain("You are CONV-SYS.")
    expect(body).toContain("projects/a")

    const shown = await getJson(`/v1/conversations/${id}`)
    expect(shown.body).toMatchObject({
      id,
      live: true,
      messages: [{ role: "user", content: "API-1" }, { role: "assistant", content: "api answer" }],
      usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 }
    })
    expect(shown.body.cost_usd).toBeGreaterThan(0)
    expect(shown.body.updated_at).toBeGreaterThanOrEqual(shown.body.created_at as number)

    const second = (await post({})).body.id as string
    const page1 = await getJson("/v1/conversations?limit=1")
    expect(page1.body).toMatchObject({ object: "list", has_more: true, first_id: second, last_id: second })
    const page2 = await getJson(`/v1/conversations?limit=1&after=${second}`)
    expect(page2.body).toMatchObject({ first_id: id })

    expect((await post({ model: "gpt-nope" })).status).toBe(404)
    const outside = await post({ working_directory: "../../etc" })
    expect(outside.status).toBe(400)
    expect(outside.body).toMatchObject({ error: { param: "working_directory" } })
    expect((await getJson("/v1/conversations?limit=0")).status).toBe(400)
    // A link inside the workspace that leads outside it is outside too.
    fs.mkdirSync(path.join(gateway.home, "workspace"), { recursive: true })
    fs.symlinkSync(os.tmpdir(), path.join(gateway.home, "workspace", "escape"))
    const linked = await post({ working_directory: "escape/x" })
    expect(linked.status).toBe(400)

    // DELETE ends the live CLI and forgets the conversation.
    const before = await health(gateway)
    const deleted = await getJson(`/v1/conversations/${id}`, { method: "DELETE" })
    expect(deleted.body).toEqual({ id, object: "conversation.deleted", deleted: true })
    const after = await waitForHealth(gateway, (h) => h.conversations.live === before.conversations.live - 1)
    expect(after.pool.leased).toBe(before.pool.leased - 1)
    expect((await getJson(`/v1/conversations/${id}`)).status).toBe(404)
    expect((await getJson(`/v1/conversations/${id}`, { method: "DELETE" })).status).toBe(404)
  })
})

describe("live CLIs", () => {
  it("a turn cut short (stop sequence) is interrupted, not killed: the next turn runs on the same CLI", async () => {
    upstream.on("CUT-1", { kind: "message", blocks: [{ type: "text", text: ["alpha ", "STOP", " omega ", "and more"] }], interDeltaMs: 80 })
    answer("CUT-2", "after the cut")
    const first = await chat([{ role: "user", content: "CUT-1" }], { stop: ["STOP"] })
    expect(first.choices[0]!.message.content).toBe("alpha ")
    const misses = (await health(gateway)).pool.misses
    const second = await chat([{ role: "user", content: "CUT-2" }], { conversation_id: first.conversation_id })
    expect(second.choices[0]!.message.content).toBe("after the cut")
    // No CLI of its own (a resume would be one): the interrupted CLI took the turn, in the same session.
    expect((await health(gateway)).pool.misses).toBe(misses)
    expect(sessionOf("CUT-2")).toBe(sessionOf("CUT-1"))
  })


  it("a client that goes away mid-stream leaves the CLI interrupted and kept for the next turn", async () => {
    upstream.on("GONE-MID", {
      kind: "message",
      blocks: [{ type: "text", text: Array.from({ length: 60 }, (_, i) => `w${i} `) }],
      interDeltaMs: 50
    })
    answer("BACK-AGAIN", "still here")
    const controller = new AbortController()
    const stream = await client.chat.completions.create(
      { model: "sonnet", messages: [{ role: "user", content: "GONE-MID" }], stream: true },
      { signal: controller.signal }
    )
    let id: string | undefined
    let received = 0
    try {
      for await (const chunk of stream) {
        id ??= (chunk as { conversation_id?: string }).conversation_id
        if (chunk.choices[0]?.delta.content && ++received === 3) controller.abort()
      }
    } catch {
      // the abort surfaces in the iterator
    }
    expect(id).toMatch(/^conv_/)
    await waitForHealth(gateway, (h) => h.sessions.running === 0 && (h.pool.signatures.find((s) => s.model === "sonnet")?.standby ?? 0) >= 1)
    const misses = (await health(gateway)).pool.misses
    const next = await chat([{ role: "user", content: "BACK-AGAIN" }], { conversation_id: id })
    expect(next.choices[0]!.message.content).toBe("still here")
    expect((await health(gateway)).pool.misses).toBe(misses)
    expect(sessionOf("BACK-AGAIN")).toBe(sessionOf("GONE-MID"))
  })

  it("past conversation.max_live the least recently used ends, and its next turn resumes the session", async () => {
    answer("LRU-A1", "a1")
    answer("LRU-B1", "b1")
    answer("LRU-A2", "a2")
    const small = await startGateway({ upstreamUrl: upstream.url, config: { conversation: { max_live: 1 } } })
    try {
      const smallClient = openaiFor(small)
      const a = await chat([{ role: "user", content: "LRU-A1" }], {}, smallClient)
      expect((await health(small)).conversations.live).toBe(1)
      await chat([{ role: "user", content: "LRU-B1" }], {}, smallClient)
      const h = await waitForHealth(small, (h) => h.conversations.live === 1 && h.pool.leased === 1)
      const misses = h.pool.misses
      await chat([{ role: "user", content: "LRU-A2" }], { conversation_id: a.conversation_id }, smallClient)
      // A CLI of its own (a standby cannot resume a session), and the same session upstream.
      expect((await health(small)).pool.misses).toBe(misses + 1)
      expect(sessionOf("LRU-A2")).toBe(sessionOf("LRU-A1"))
      expect(turnsSent("LRU-A2")).toEqual(["user: LRU-A1", "assistant: a1", "user: LRU-A2"])
    } finally {
      await small.close()
    }
  })
})

describe("a CLI session that is gone", () => {
  it("continues the conversation in a new session, told the recorded turns", async () => {
    // The second request's transcript holds both markers: its own is tried first.
    answer("GONE-2", "carried on")
    answer("GONE-1", "remembered")
    const lean = await startGateway({ upstreamUrl: upstream.url, config: { conversation: { max_live: 0 } } })
    try {
      const leanClient = openaiFor(lean)
      const first = await chat([{ role: "user", content: "GONE-1" }], {}, leanClient)
      // The first turn's process has been reset for reuse (in the background) before the files change.
      await waitForHealth(lean, (h) => h.pool.leased === 0 && h.pool.reused + h.pool.resetFailed >= 1)
      // Only this conversation's session is gone: the pool's other (reused) processes keep theirs.
      const projects = path.join(lean.home, ".claude", "projects")
      const transcripts = fs.readdirSync(projects).map((dir) => path.join(projects, dir, `${String(sessionOf("GONE-1"))}.jsonl`))
      expect(transcripts.filter((file) => fs.existsSync(file))).toHaveLength(1)
      for (const file of transcripts) fs.rmSync(file, { force: true })
      const second = await chat([{ role: "user", content: "GONE-2" }], { conversation_id: first.conversation_id }, leanClient)
      expect(second.choices[0]!.message.content).toBe("carried on")
      expect(second.conversation_id).toBe(first.conversation_id)
      expect(sessionOf("GONE-2")).not.toBe(sessionOf("GONE-1"))
      const sent = JSON.stringify(upstream.requestsFor("GONE-2")[0]!.body)
      expect(sent).toContain("<conversation_history>")
      expect(sent).toContain("remembered")
    } finally {
      await lean.close()
    }
  })
})

describe("persistence", () => {
  it("continues a conversation after a gateway restart by resuming its CLI session", async () => {
    answer("RESTART-1", "before the restart")
    answer("RESTART-2", "after the restart")
    const first = await startGateway({ upstreamUrl: upstream.url })
    const firstClient = openaiFor(first)
    const opened = await chat([{ role: "user", content: "RESTART-1" }], {}, firstClient)
    const before = cliChildren()
    await first.close({ keepHome: true })
    // The first gateway's CLIs are gone (the other gateway's standbys may remain).
    expect(cliChildren().filter((pid) => before.includes(pid)).length).toBeLessThan(before.length)

    const second = await startGateway({ upstreamUrl: upstream.url, home: first.home })
    try {
      const secondClient = openaiFor(second)
      const resumed = await chat([{ role: "user", content: "RESTART-2" }], { conversation_id: opened.conversation_id }, secondClient)
      expect(resumed.choices[0]!.message.content).toBe("after the restart")
      expect(turnsSent("RESTART-2")).toEqual(["user: RESTART-1", "assistant: before the restart", "user: RESTART-2"])
      expect(sessionOf("RESTART-2")).toBe(sessionOf("RESTART-1"))
    } finally {
      await second.close()
    }
  })
})
