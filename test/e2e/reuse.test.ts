import * as fs from "node:fs"
import * as path from "node:path"
import type OpenAI from "openai"
import type { ChatCompletion } from "openai/resources/chat/completions"
import { describe, expect, it } from "vitest"
import { cliChildren, type Gateway, health, startGateway, openaiFor, waitForHealth } from "../support/gateway.js"
import { messagesOf, systemText, textOf, type Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// One CLI process serves many conversations: reset between them (/clear + rewind), model and
// system prompt set per lease, tool sets kept apart, retirement, failed resets, native
// continuation after reuse, and client text starting with "/" kept as text. Real CLI, scripted upstream.

let upstream: Upstream
let gateway: Gateway
let client: OpenAI

// max_live 1: a conversation's process goes back to the pool as soon as another conversation is kept.
// Room for the standbys of the several system prompts used here (a replaced prompt has no way back).
useGateway(
  { config: { pool: { prewarm: 1, replace_delay_ms: 60_000, max_standby: 8 }, conversation: { max_live: 1 } } },
  (started) => ({ upstream, gateway, client } = started)
)

const answer = (marker: string, text: string) => upstream.on(marker, { kind: "message", blocks: [{ type: "text", text }] })

type WithConversation = ChatCompletion & { conversation_id?: string }

const ask = async (content: string, extra: Record<string, unknown> = {}, system?: string) =>
  (await client.chat.completions.create({
    model: "sonnet",
    messages: [...(system === undefined ? [] : [{ role: "system" as const, content: system }]), { role: "user", content }],
    ...extra
  })) as WithConversation

const first = (marker: string) => {
  const request = upstream.requestsFor(marker)[0]
  expect(request, `no upstream request for ${marker}`).toBeDefined()
  return request!
}

const reminders = /<system-reminder>[\s\S]*?<\/system-reminder>/g

/** The user and assistant turns upstream received for `marker` (the CLI's own system messages left out). */
const turnsSent = (marker: string, which = 0) =>
  messagesOf(upstream.requestsFor(marker)[which]!.body)
    .filter((m) => m.role === "user" || m.role === "assistant")
    .map((m) => `${m.role}: ${textOf(m.content).replace(reminders, "").trim()}`)

const sessionOf = (marker: string) => first(marker).headers["x-claude-code-session-id"]

/** Wait until the pool has reset `count` processes in all (the reset runs after the response). */
const reusedAtLeast = (count: number) => waitForHealth(gateway, (h) => h.pool.reused >= count, 30_000)

describe("reuse across conversations", () => {
  it("serves new conversations on one reset process, each as clean as a fresh one, across models and system prompts", async () => {
    const start = await waitForHealth(gateway, (h) => h.pool.processes === 1 && h.pool.signatures.some((s) => s.standby === 1))
    const conversations = [
      { marker: "REUSE-1", model: "sonnet", system: undefined, upstreamModel: "claude-sonnet-5-5" },
      { marker: "REUSE-2", model: "haiku", system: "You are SYS-ONE.", upstreamModel: "claude-haiku-5-5" },
      { marker: "REUSE-3", model: "sonnet", system: "You are SYS-TWO.", upstreamModel: "claude-sonnet-5-5" }
    ]
    // Each request is a new conversation; the next one evicts it (max_live 1), and its process is reset.
    for (const [i, c] of conversations.entries()) {
      answer(c.marker, `answer ${i}`)
      const completion = await client.chat.completions.create({
        model: c.model,
        messages: [...(c.system === undefined ? [] : [{ role: "system" as const, content: c.system }]), { role: "user", content: c.marker }]
      })
      expect(completion.choices[0]!.message.content).toBe(`answer ${i}`)
      if (i > 0) await reusedAtLeast(start.pool.reused + i)
    }
    answer("REUSE-LAST", "last")
    await ask("REUSE-LAST", {}, "You are SYS-LAST.")
    // Two processes did it all (one kept for the latest conversation, one reset for the next):
    // one spawn after the prewarmed one, when the second conversation came while the first kept its own.
    const after = await reusedAtLeast(start.pool.reused + 3)
    expect(after.pool.spawned).toBe(start.pool.spawned + 1)
    const sessions = new Set([...conversations.map((c) => sessionOf(c.marker)), sessionOf("REUSE-LAST")])
    expect(sessions.size).toBe(4)
    for (const c of conversations) {
      const body = first(c.marker).body as { model: string }
      // Upstream sees what a fresh process sends: this conversation's one message, nothing of the others.
      expect(turnsSent(c.marker)).toEqual([`user: ${c.marker}`])
      expect(body.model).toBe(c.upstreamModel)
      // No trace of the reset (the /clear command's caveat, name or output) in the messages.
      const raw = JSON.stringify(messagesOf(body))
      expect(raw).not.toContain("local-command")
      expect(raw).not.toContain("command-name")
      for (const other of conversations) if (other !== c) expect(raw).not.toContain(other.marker)
      const system = systemText(body)
      if (c.system === undefined) expect(system).not.toContain("SYS-")
      else expect(system).toContain(c.system)
      for (const other of conversations) {
        if (other.system !== undefined && other.system !== c.system) expect(system).not.toContain(other.system)
      }
    }
    expect(systemText(first("REUSE-LAST").body)).toContain("SYS-LAST")
    expect(systemText(first("REUSE-LAST").body)).not.toContain("SYS-TWO")
  })

  it("never gives a process whose system prompt was replaced to a request that sets none", async () => {
    // The process of the previous test runs with a replaced prompt; the CLI has no way back to its own.
    await reusedAtLeast((await health(gateway)).pool.reused)
    answer("DEFAULT-PROMPT", "default")
    await ask("DEFAULT-PROMPT")
    const system = systemText(first("DEFAULT-PROMPT").body)
    expect(system).not.toContain("SYS-")
    expect(system).toContain("Claude")
  })

  it("continues a conversation natively after its process served another one", async () => {
    answer("NATIVE-A1", "A one.")
    answer("NATIVE-A2", "A two.")
    answer("NATIVE-B1", "B one.")
    answer("NATIVE-C1", "C one.")
    const before = await health(gateway)
    const a = await ask("NATIVE-A1")
    // B evicts A (max_live 1): A's process is reset; C takes it (or a standby), then B's is reset too.
    await ask("NATIVE-B1")
    await reusedAtLeast(before.pool.reused + 1)
    await ask("NATIVE-C1")
    await reusedAtLeast(before.pool.reused + 2)
    const a2 = await ask("NATIVE-A2", { conversation_id: a.conversation_id })
    expect(a2.choices[0]!.message.content).toBe("A two.")
    // A's next turn sees all its earlier turns, and nothing of B or C.
    expect(turnsSent("NATIVE-A2")).toEqual(["user: NATIVE-A1", "assistant: A one.", "user: NATIVE-A2"])
    expect(sessionOf("NATIVE-A2")).toBe(sessionOf("NATIVE-A1"))
    expect(turnsSent("NATIVE-C1")).toEqual(["user: NATIVE-C1"])
  })

  it("keeps tool sets apart: a process that offered client functions never serves a request without them", async () => {
    const weather = {
      type: "function" as const,
      function: { name: "get_weather", description: "Weather of a city", parameters: { type: "object", properties: { city: { type: "string" } } } }
    }
    answer("TOOLSET-1", "tools one")
    answer("TOOLSET-2", "tools two")
    answer("TOOLSET-PLAIN", "plain")
    const before = await health(gateway)
    await ask("TOOLSET-1", { tools: [weather] })
    await ask("TOOLSET-PLAIN")
    await reusedAtLeast(before.pool.reused + 1)
    await ask("TOOLSET-2", { tools: [weather] })
    const toolNames = (marker: string) =>
      ((first(marker).body as { tools?: Array<{ name: string }> }).tools ?? []).map((tool) => tool.name)
    expect(toolNames("TOOLSET-1")).toContain("mcp__client__get_weather")
    expect(toolNames("TOOLSET-2")).toContain("mcp__client__get_weather")
    expect(toolNames("TOOLSET-PLAIN").filter((name) => name.startsWith("mcp__client__"))).toEqual([])
  })

  it("honours a changed system prompt on a conversation's next turn (live process and resumed session)", async () => {
    answer("SYSCHANGE-1", "one")
    answer("SYSCHANGE-2", "two")
    answer("SYSCHANGE-3", "three")
    answer("SYSCHANGE-OTHER", "other")
    const c = await ask("SYSCHANGE-1", {}, "You are SYS-FIRST.")
    // The live process of the conversation: the new prompt applies from this turn.
    await ask("SYSCHANGE-2", { conversation_id: c.conversation_id }, "You are SYS-SECOND.")
    expect(systemText(first("SYSCHANGE-2").body)).toContain("SYS-SECOND")
    expect(systemText(first("SYSCHANGE-2").body)).not.toContain("SYS-FIRST")
    expect(turnsSent("SYSCHANGE-2")).toEqual(["user: SYSCHANGE-1", "assistant: one", "user: SYSCHANGE-2"])
    // Evicted, then resumed: the resumed session's recorded prompt gives way to the request's.
    await ask("SYSCHANGE-OTHER")
    await ask("SYSCHANGE-3", { conversation_id: c.conversation_id }, "You are SYS-THIRD.")
    expect(systemText(first("SYSCHANGE-3").body)).toContain("SYS-THIRD")
    expect(systemText(first("SYSCHANGE-3").body)).not.toContain("SYS-SECOND")
    expect(turnsSent("SYSCHANGE-3")).toEqual([
      "user: SYSCHANGE-1",
      "assistant: one",
      "user: SYSCHANGE-2",
      "assistant: two",
      "user: SYSCHANGE-3"
    ])
  })
})

describe("a client that goes away mid-stream", () => {
  it("stops the turn, and the process is reset for the next conversation", async () => {
    const own = await startGateway({
      upstreamUrl: upstream.url,
      config: { pool: { prewarm: 1, replace_delay_ms: 60_000 }, conversation: { max_live: 0 } }
    })
    try {
      const c = openaiFor(own)
      upstream.on("GONE-1", {
        kind: "message",
        blocks: [{ type: "text", text: Array.from({ length: 100 }, (_, i) => `word${i} `) }],
        interDeltaMs: 100
      })
      answer("GONE-2", "after")
      const before = await waitForHealth(own, (h) => h.pool.processes === 1 && h.pool.signatures.some((s) => s.standby === 1))
      const controller = new AbortController()
      const stream = await c.chat.completions.create(
        { model: "sonnet", messages: [{ role: "user", content: "GONE-1" }], stream: true },
        { signal: controller.signal }
      )
      let received = 0
      try {
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content) received++
          if (received === 2) controller.abort()
        }
      } catch {
        // the abort surfaces as an error in the iterator
      }
      expect(received).toBe(2)
      // Only an idle CLI is reset: its turn was interrupted (10 s of deltas were left).
      const reset = await waitForHealth(own, (h) => h.pool.reused === before.pool.reused + 1, 8_000)
      expect(reset.pool.processes).toBe(1)
      const next = await c.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "GONE-2" }] })
      expect(next.choices[0]!.message.content).toBe("after")
      expect(turnsSent("GONE-2")).toEqual(["user: GONE-2"])
      expect((await health(own)).pool.spawned).toBe(before.pool.spawned)
    } finally {
      await own.close()
    }
  })
})

describe("max_tokens per lease", () => {
  it("is switched on a reused process (no boot per value), for new conversations and a conversation's next turn", async () => {
    const maxTokens = (marker: string) => (first(marker).body as { max_tokens: number }).max_tokens
    answer("MAXTOK-0", "default")
    await ask("MAXTOK-0")
    const start = await health(gateway)
    for (const [i, value] of [700, 1300, undefined].entries()) {
      await reusedAtLeast(start.pool.reused + i)
      answer(`MAXTOK-${i + 1}`, `capped ${i}`)
      const completion = await ask(`MAXTOK-${i + 1}`, value === undefined ? {} : { max_tokens: value })
      expect(completion.choices[0]!.message.content).toBe(`capped ${i}`)
      expect(maxTokens(`MAXTOK-${i + 1}`)).toBe(value ?? maxTokens("MAXTOK-0"))
    }
    // A conversation's next turn on its live process, with another value.
    answer("MAXTOK-NEXT", "next")
    const opened = await ask("MAXTOK-OPEN", { max_tokens: 900 })
    await ask("MAXTOK-NEXT", { max_tokens: 400, conversation_id: opened.conversation_id })
    expect(maxTokens("MAXTOK-OPEN")).toBe(900)
    expect(maxTokens("MAXTOK-NEXT")).toBe(400)
    expect(sessionOf("MAXTOK-NEXT")).toBe(sessionOf("MAXTOK-OPEN"))
    // Three values and the default served by reset processes: a process per value would have booted each.
    const after = await health(gateway)
    expect(after.pool.spawned - start.pool.spawned).toBeLessThanOrEqual(1)
  })
})

describe("client text starting with /", () => {
  it("reaches the model as text, and a /model line changes nothing", async () => {
    answer("/help SLASH-1", "not a command")
    answer("/model opus SLASH-2", "still text")
    answer("SLASH-3", "after")
    const help = await ask("/help SLASH-1")
    expect(help.choices[0]!.message.content).toBe("not a command")
    expect(turnsSent("/help SLASH-1")).toEqual(["user: /help SLASH-1"])
    const model = await ask("/model opus SLASH-2")
    expect(model.choices[0]!.message.content).toBe("still text")
    await ask("SLASH-3", { conversation_id: model.conversation_id })
    expect((first("SLASH-3").body as { model: string }).model).toBe("claude-sonnet-5-5")
    expect(turnsSent("SLASH-3")).toEqual(["user: /model opus SLASH-2", "assistant: still text", "user: SLASH-3"])
  })
})

describe("retirement and failed resets", () => {
  it("retires a process after pool.max_uses conversations", async () => {
    const others = new Set(cliChildren())
    const retiring = await startGateway({
      upstreamUrl: upstream.url,
      config: { pool: { prewarm: 1, max_uses: 2, replace_delay_ms: 60_000 }, conversation: { max_live: 0 } }
    })
    try {
      const c = openaiFor(retiring)
      const start = await waitForHealth(retiring, (h) => h.pool.processes === 1 && h.pool.signatures.some((s) => s.standby === 1))
      const [pid] = cliChildren().filter((p) => !others.has(p))
      answer("RETIRE-1", "r1")
      answer("RETIRE-2", "r2")
      await c.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "RETIRE-1" }] })
      await waitForHealth(retiring, (h) => h.pool.reused === start.pool.reused + 1 && h.pool.leased === 0, 30_000)
      await c.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "RETIRE-2" }] })
      const retired = await waitForHealth(retiring, (h) => h.pool.retired === 1 && h.pool.leased === 0, 30_000)
      expect(retired.pool.reused).toBe(start.pool.reused + 1)
      // Both conversations ran on the one process, which is gone now.
      expect(sessionOf("RETIRE-1")).not.toBe(sessionOf("RETIRE-2"))
      await waitFor(() => !cliChildren().includes(pid!))
    } finally {
      await retiring.close()
    }
  })

  it("kills a process whose reset fails (here: takes longer than pool.reset_timeout_ms)", async () => {
    const others = new Set(cliChildren())
    const failing = await startGateway({
      upstreamUrl: upstream.url,
      config: { pool: { prewarm: 1, reset_timeout_ms: 1, replace_delay_ms: 60_000 }, conversation: { max_live: 0 } }
    })
    try {
      const c = openaiFor(failing)
      await waitForHealth(failing, (h) => h.pool.processes === 1 && h.pool.signatures.some((s) => s.standby === 1))
      const [pid] = cliChildren().filter((p) => !others.has(p))
      answer("RESETFAIL-1", "f1")
      answer("RESETFAIL-2", "f2")
      await c.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "RESETFAIL-1" }] })
      const failed = await waitForHealth(failing, (h) => h.pool.resetFailed === 1 && h.pool.processes === 0, 30_000)
      expect(failed.pool.reused).toBe(0)
      await waitFor(() => !cliChildren().includes(pid!))
      // The next conversation gets a process of its own and a clean start.
      const next = await c.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "RESETFAIL-2" }] })
      expect(next.choices[0]!.message.content).toBe("f2")
      expect(turnsSent("RESETFAIL-2")).toEqual(["user: RESETFAIL-2"])
    } finally {
      await failing.close()
    }
  })
})

const waitFor = async (ready: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms
  while (!ready()) {
    if (Date.now() > deadline) throw new Error("condition never held")
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe("a standby whose session files were removed", () => {
  it("still answers: a turn that fails before its first output is served by another process", async () => {
    const projects = path.join(gateway.home, ".claude", "projects")
    for (let i = 0; i < 4; i++) {
      answer(`FILES-${i}`, `answer ${i}`)
      const completion = await ask(`FILES-${i}`)
      expect(completion.choices[0]!.message.content).toBe(`answer ${i}`)
      // An operator cleans the CLI's transcripts while processes are being reset and stand by.
      // (moved away first, in one step: a CLI may be writing into it at that moment)
      if (fs.existsSync(projects)) {
        const gone = `${projects}.removed-${i}`
        fs.renameSync(projects, gone)
        fs.rmSync(gone, { recursive: true, force: true, maxRetries: 20, retryDelay: 10 })
      }
    }
  })
})
