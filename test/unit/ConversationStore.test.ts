import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ConversationStore } from "../../src/store/ConversationStore.js"
import { chainHash, fingerprint } from "../../src/services/Conversations.js"
import { GatewayConfig } from "../../src/config/GatewayConfig.js"
import { historyMessage } from "../../src/domain/Turn.js"

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-store-"))
const store = (dir: string) =>
  ConversationStore.Default.pipe(Layer.provide(GatewayConfig.layerWith({ conversation: { data_dir: dir } })))

describe("ConversationStore (SQLite)", () => {
  it.effect("creates, records turns, finds by fingerprint, pages and deletes", () =>
    Effect.gen(function*() {
      const conversations = yield* ConversationStore
      const a = yield* conversations.create({ owner: "", model: "sonnet", metadata: { k: "v" } })
      expect(a).toMatchObject({ model: "sonnet", metadata: { k: "v" }, cliSessionId: null, historyHash: "", promptTokens: 0 })
      const messages = [historyMessage("user", "hi"), historyMessage("assistant", "hello")]
      yield* conversations.recordTurn(a.id, {
        messages,
        cliSessionId: "session-1",
        historyHash: "h1",
        fingerprint: "f1",
        promptTokens: 10,
        completionTokens: 3,
        costUsd: 0.5
      })
      // An empty session id (a turn that reported none) keeps the recorded one.
      yield* conversations.recordTurn(a.id, {
        messages: [historyMessage("user", "again")],
        cliSessionId: "",
        historyHash: "h2",
        fingerprint: "f2",
        promptTokens: 1,
        completionTokens: 1,
        costUsd: 0
      })
      const updated = Option.getOrThrow(yield* conversations.get(a.id))
      expect(updated).toMatchObject({ cliSessionId: "session-1", historyHash: "h2", promptTokens: 11, completionTokens: 4, costUsd: 0.5 })
      expect((yield* conversations.messages(a.id)).map((m) => m.content)).toEqual(["hi", "hello", "again"])
      // The messages a turn brings (migration 0005's trigger) are not kept twice.
      const { sql } = conversations
      expect(yield* sql`SELECT pending_messages FROM conversations WHERE id = ${a.id}`).toEqual([{ pending_messages: null }])
      expect(Option.isNone(yield* conversations.findByFingerprint("f1", 0))).toBe(true)
      expect(Option.getOrThrow(yield* conversations.findByFingerprint("f2", 0)).id).toBe(a.id)
      expect(Option.isNone(yield* conversations.findByFingerprint("f2", updated.updatedAt + 1))).toBe(true)

      const b = yield* conversations.create({ owner: "" })
      yield* conversations.create({ owner: "someone else" })
      const first = yield* conversations.list({ owner: "", limit: 1 })
      expect(first.data.map((c) => c.id)).toEqual([b.id])
      expect(first.hasMore).toBe(true)
      const second = yield* conversations.list({ owner: "", limit: 1, after: b.id })
      expect(second.data.map((c) => c.id)).toEqual([a.id])
      expect(yield* conversations.purge(b.updatedAt - 1)).toBe(0)
      expect(yield* conversations.remove(a.id)).toBe(true)
      expect(yield* conversations.remove(a.id)).toBe(false)
      expect(yield* conversations.messages(a.id)).toEqual([])
      expect(yield* conversations.purge(b.updatedAt + 1)).toBe(2)
      expect(Option.isNone(yield* conversations.get(b.id))).toBe(true)
    }).pipe(Effect.provide(store(dataDir))))

  it.effect("reads a conversation it keeps in memory exactly as the file has it", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-store-"))
      const inFile = (id: string) => Effect.flatMap(ConversationStore, (s) => s.get(id)).pipe(Effect.provide(store(dir)))
      yield* Effect.gen(function*() {
        const conversations = yield* ConversationStore
        const a = yield* conversations.create({ owner: "o", model: "sonnet", systemPrompt: "p", metadata: { k: "v" } })
        expect(yield* conversations.get(a.id)).toEqual(yield* inFile(a.id))
        const turn = { messages: [historyMessage("user", "hi")], fingerprint: "f", completionTokens: 2 }
        yield* conversations.recordTurn(a.id, { ...turn, cliSessionId: "s1", historyHash: "h1", promptTokens: 7, costUsd: 0.1 })
        yield* conversations.recordTurn(a.id, { ...turn, cliSessionId: "", historyHash: "h2", promptTokens: 5, costUsd: 0.2 })
        const kept = yield* conversations.get(a.id)
        expect(kept).toMatchObject(Option.some({ cliSessionId: "s1", historyHash: "h2", promptTokens: 12, completionTokens: 4 }))
        expect(kept).toEqual(yield* inFile(a.id))
        // A write the store does not mirror (attachSession) drops the kept row: the next read is the file's.
        const b = yield* conversations.create({ owner: "o" })
        yield* conversations.attachSession(b.id, "s2")
        expect(yield* conversations.get(b.id)).toEqual(yield* inFile(b.id))
        expect(Option.getOrThrow(yield* conversations.get(b.id)).cliSessionId).toBe("s2")
        yield* conversations.remove(a.id)
        expect(Option.isNone(yield* conversations.get(a.id))).toBe(true)
        expect(yield* conversations.purge(Number.MAX_SAFE_INTEGER)).toBe(1)
        expect(Option.isNone(yield* conversations.get(b.id))).toBe(true)
      }).pipe(Effect.provide(store(dir)))
    }))

  it.effect("keeps its data across reopenings (migrations run once)", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-store-"))
      const id = yield* Effect.map(ConversationStore, (s) => s.create({ owner: "", systemPrompt: "kept" })).pipe(
        Effect.flatten,
        Effect.map((c) => c.id),
        Effect.provide(store(dir))
      )
      const again = yield* Effect.flatMap(ConversationStore, (s) => s.get(id)).pipe(Effect.provide(store(dir)))
      expect(Option.isSome(again)).toBe(true)
    }))
})

describe("history fingerprints", () => {
  it("chain message by message, so a conversation extends its hash without its history", () => {
    const [a, b, c] = [historyMessage("user", "a"), historyMessage("assistant", "b"), historyMessage("user", "c")]
    expect(chainHash(chainHash("", [a, b]), [c])).toBe(chainHash("", [a, b, c]))
    expect(chainHash("", [a, b])).not.toBe(chainHash("", [b, a]))
    // Content null and "" are the same message; so are absent and empty tool calls.
    expect(historyMessage("assistant", "")).toEqual({ role: "assistant", content: null })
    expect(fingerprint("", "sig-1", "h")).not.toBe(fingerprint("", "sig-2", "h"))
    // Another API key never matches the same history.
    expect(fingerprint("key-a", "sig", "h")).not.toBe(fingerprint("key-b", "sig", "h"))
  })
})

describe("ConversationStore migrations", () => {
  it.effect("opens a database written before the Migrator (PRAGMA user_version = 1) and keeps its conversations", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-store-old-"))
      // The schema and row exactly as the gateway wrote them before migrations moved to @effect/sql's Migrator.
      const old = `CREATE TABLE conversations (id TEXT PRIMARY KEY, owner TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, model TEXT, system_prompt TEXT, working_directory TEXT, metadata TEXT NOT NULL DEFAULT '{}',
        cli_session_id TEXT, history_hash TEXT NOT NULL DEFAULT '', fingerprint TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0);
        CREATE INDEX conversations_fingerprint ON conversations (fingerprint);
        CREATE TABLE messages (conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position INTEGER NOT NULL, created_at INTEGER NOT NULL, message TEXT NOT NULL, PRIMARY KEY (conversation_id, position));
        INSERT INTO conversations (id, created_at, updated_at, cli_session_id) VALUES ('conv_old', 1, 1, 'session-old');
        INSERT INTO messages VALUES ('conv_old', 0, 1, '{"role":"user","content":"hi"}');
        PRAGMA user_version = 1`
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.forEach(old.split(";"), (statement) => sql.unsafe(statement))).pipe(
          Effect.provide(SqliteClient.layer({ filename: path.join(dir, "conversations.db") }))
        )
      const found = yield* Effect.flatMap(ConversationStore, (conversations) =>
        Effect.all([conversations.get("conv_old"), conversations.messages("conv_old")])).pipe(Effect.provide(store(dir)))
      expect(Option.getOrThrow(found[0])).toMatchObject({ id: "conv_old", cliSessionId: "session-old" })
      expect(found[1]).toEqual([{ role: "user", content: "hi" }])
      fs.rmSync(dir, { recursive: true, force: true })
    }))
})
