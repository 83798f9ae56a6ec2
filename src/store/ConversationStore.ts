import { SqlClient, SqlError, SqlSchema } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import Sqlite from "better-sqlite3"
import { Effect, Layer, Option, Schema } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { GatewayConfig } from "../config/GatewayConfig.js"
import { migrate } from "./migrations.js"

/**
 * Where conversations are remembered: their messages, usage, the CLI session that continues them
 * and the fingerprint of their history. SQLite by default (one file in `conversation.data_dir`);
 * the interface is all the rest of the gateway sees, so a shared store can replace it.
 */

export interface ConversationInit {
  /** Whose conversation it is (a hash of the API key; "" without keys). */
  readonly owner: string
  readonly model?: string | undefined
  readonly systemPrompt?: string | undefined
  readonly workingDirectory?: string | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
}

export interface Conversation {
  readonly id: string
  readonly owner: string
  /** Unix seconds. */
  readonly createdAt: number
  readonly updatedAt: number
  readonly model: string | null
  readonly systemPrompt: string | null
  readonly workingDirectory: string | null
  readonly metadata: Readonly<Record<string, string>>
  /** The CLI session that holds the conversation's turns (for `--resume`). */
  readonly cliSessionId: string | null
  /** Chained hash of every message so far (see Conversations). */
  readonly historyHash: string
  readonly promptTokens: number
  readonly completionTokens: number
  readonly costUsd: number
}

/** One message as the client sees it (images stand in as `[image]`). */
export const StoredMessage = Schema.Struct({
  role: Schema.String,
  content: Schema.NullOr(Schema.String),
  tool_calls: Schema.optionalWith(Schema.Array(Schema.Struct({ id: Schema.String, name: Schema.String, arguments: Schema.String })), { exact: true }),
  tool_call_id: Schema.optionalWith(Schema.String, { exact: true })
})
export type StoredMessage = typeof StoredMessage.Type

export interface TurnRecord {
  /** The messages this turn added: the client's new ones and the answer. */
  readonly messages: ReadonlyArray<StoredMessage>
  readonly cliSessionId: string
  readonly historyHash: string
  /** Of the whole history after this turn: what the client's next request will start with. */
  readonly fingerprint: string
  readonly promptTokens: number
  readonly completionTokens: number
  readonly costUsd: number
}

export interface Page {
  readonly data: ReadonlyArray<Conversation>
  readonly hasMore: boolean
}

const Row = Schema.Struct({
  id: Schema.String,
  owner: Schema.String,
  created_at: Schema.Number,
  updated_at: Schema.Number,
  model: Schema.NullOr(Schema.String),
  system_prompt: Schema.NullOr(Schema.String),
  working_directory: Schema.NullOr(Schema.String),
  metadata: Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.String })),
  cli_session_id: Schema.NullOr(Schema.String),
  history_hash: Schema.String,
  prompt_tokens: Schema.Number,
  completion_tokens: Schema.Number,
  cost_usd: Schema.Number
})

const toConversation = (row: typeof Row.Type): Conversation => ({
  id: row.id,
  owner: row.owner,
  createdAt: row.created_at,
  updatedAt: row.updated_at,
  model: row.model,
  systemPrompt: row.system_prompt,
  workingDirectory: row.working_directory,
  metadata: row.metadata,
  cliSessionId: row.cli_session_id,
  historyHash: row.history_hash,
  promptTokens: row.prompt_tokens,
  completionTokens: row.completion_tokens,
  costUsd: row.cost_usd
})

const now = () => Math.floor(Date.now() / 1000)

/** How many rows the store keeps in memory (see `rows`). */
const ROWS_KEPT = 4096

/**
 * Without @effect/sql's own spans (`sql.execute` with the statement's text, `sql.transaction`) on a
 * turn's path: they were half of a traced request's spans and most of its export, and cost every
 * request their steps even untraced (bench/README.md, "Telemetry overhead"). The store's own span
 * (`gateway.store.record_turn`) says what a request wrote.
 */
const untraced = Effect.withTracerEnabled(false)

/** The SQLite file in `conversation.data_dir`. */
const SqliteLive = Layer.unwrapEffect(Effect.gen(function*() {
  const { config } = yield* GatewayConfig
  const dir = config.conversation.data_dir
  yield* Effect.sync(() => fs.mkdirSync(dir, { recursive: true }))
  return SqliteClient.layer({ filename: path.join(dir, "conversations.db") })
}))

export class ConversationStore extends Effect.Service<ConversationStore>()("ConversationStore", {
  scoped: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { config: { filename } } = yield* SqliteClient.SqliteClient
    // The store is the gateway's own state: a failing database is a defect, not a client error.
    yield* sql`PRAGMA foreign_keys = ON`.pipe(Effect.orDie)
    // WAL (the client's default) with NORMAL sync: no fsync per turn; a power cut may lose the last turns, never the file.
    yield* sql`PRAGMA synchronous = NORMAL`.pipe(Effect.orDie)
    yield* migrate.pipe(Effect.orDie)

    /**
     * The rows used lately, as they are in the file, least recently used first. The store is the
     * file's only writer and every write below keeps them true, so a later turn reads its
     * conversation without a statement (a SELECT and the row's decoding cost each turn ~100 run-loop
     * steps; bench/README.md, "Per-request CPU"). `writes` counts every write (once it is done): a
     * read that raced one is not kept (it may hold what the write changed). A turn's write updates
     * the row it found kept: the conversation's lock keeps other turns' writes out meanwhile.
     */
    const rows = new Map<string, Conversation>()
    let writes = 0
    const keep = (conversation: Conversation) => {
      rows.delete(conversation.id)
      rows.set(conversation.id, conversation)
      if (rows.size > ROWS_KEPT) rows.delete(rows.keys().next().value!)
    }
    const forget = (id: string) => {
      writes++
      rows.delete(id)
    }

    const byId = SqlSchema.findOne({
      Request: Schema.String,
      Result: Row,
      execute: (id) => sql`SELECT * FROM conversations WHERE id = ${id}`
    })
    const get = (id: string): Effect.Effect<Option.Option<Conversation>> =>
      Effect.suspend(() => {
        const kept = rows.get(id)
        if (kept !== undefined) {
          keep(kept)
          return Effect.succeed(Option.some(kept))
        }
        const before = writes
        return byId(id).pipe(
          Effect.map(Option.map((row) => {
            const conversation = toConversation(row)
            if (writes === before) keep(conversation)
            return conversation
          })),
          Effect.orDie,
          untraced
        )
      })

    const create = (init: ConversationInit): Effect.Effect<Conversation> =>
      Effect.gen(function*() {
        const id = `conv_${crypto.randomUUID().replaceAll("-", "")}`
        const at = now()
        const row = {
          id,
          owner: init.owner,
          created_at: at,
          updated_at: at,
          model: init.model ?? null,
          system_prompt: init.systemPrompt ?? null,
          working_directory: init.workingDirectory ?? null
        }
        const metadata = { ...init.metadata }
        yield* sql`INSERT INTO conversations ${sql.insert({ ...row, metadata: JSON.stringify(metadata) })}`.pipe(Effect.orDie)
        // The row as the file now has it (the table's defaults for the rest).
        const conversation = toConversation({
          ...row,
          metadata,
          cli_session_id: null,
          history_hash: "",
          prompt_tokens: 0,
          completion_tokens: 0,
          cost_usd: 0
        })
        forget(id)
        keep(conversation)
        return conversation
      })

    const messageRows = SqlSchema.findAll({
      Request: Schema.String,
      Result: Schema.Struct({ message: Schema.parseJson(StoredMessage) }),
      execute: (id) => sql`SELECT message FROM messages WHERE conversation_id = ${id} ORDER BY position`
    })
    const messages = (id: string): Effect.Effect<ReadonlyArray<StoredMessage>> =>
      messageRows(id).pipe(Effect.map((rows) => rows.map((row) => row.message)), Effect.orDie)

    /** One owner's conversations, newest first; `after` is the last id of the previous page. */
    const page = SqlSchema.findAll({
      Request: Schema.Struct({ owner: Schema.String, limit: Schema.Number, after: Schema.optional(Schema.String) }),
      Result: Row,
      execute: ({ after, limit, owner }) =>
        after === undefined
          ? sql`SELECT * FROM conversations WHERE owner = ${owner} ORDER BY rowid DESC LIMIT ${limit + 1}`
          : sql`SELECT * FROM conversations WHERE owner = ${owner}
                AND rowid < (SELECT rowid FROM conversations WHERE id = ${after})
                ORDER BY rowid DESC LIMIT ${limit + 1}`
    })
    const list = (options: { readonly owner: string; readonly limit: number; readonly after?: string | undefined }): Effect.Effect<Page> =>
      page({ owner: options.owner, limit: options.limit, ...(options.after === undefined ? {} : { after: options.after }) }).pipe(
        Effect.map((rows) => ({ data: rows.slice(0, options.limit).map(toConversation), hasMore: rows.length > options.limit })),
        Effect.orDie
      )

    const remove = (id: string): Effect.Effect<boolean> =>
      Effect.gen(function*() {
        const found = Option.isSome(yield* get(id))
        if (found) yield* sql`DELETE FROM conversations WHERE id = ${id}`.pipe(Effect.orDie)
        forget(id)
        return found
      })

    /**
     * A turn's record is one statement (the trigger of migration 0005 appends the messages it brings),
     * run on a connection of the store's own to the same file, synchronously: through @effect/sql it
     * cost a later turn ~137 run-loop steps (its statement cache, the connection's semaphore, the
     * fiber refs of its span), here a few (bench/README.md, "Per-request CPU"). Both connections
     * run each statement to its end before they return (no transaction is held open across an
     * await), so neither ever waits for the other's lock.
     */
    const writer = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const db = new Sqlite(filename, { fileMustExist: true })
        db.pragma("foreign_keys = ON")
        db.pragma("synchronous = NORMAL")
        return db
      }),
      (db) => Effect.sync(() => db.close())
    )
    const recordStatement = writer.prepare(`UPDATE conversations SET
      updated_at = ?,
      cli_session_id = COALESCE(NULLIF(?, ''), cli_session_id),
      history_hash = ?,
      fingerprint = ?,
      prompt_tokens = prompt_tokens + ?,
      completion_tokens = completion_tokens + ?,
      cost_usd = cost_usd + ?,
      pending_messages = ?
      WHERE id = ?`)
    // `useSpan`: the span is not made the parent of what runs inside (nothing does), which would cost a `locally`.
    const recordTurn = (id: string, turn: TurnRecord): Effect.Effect<void> =>
      Effect.useSpan("gateway.store.record_turn", { attributes: { "gateway.conversation_id": id }, captureStackTrace: false }, () => Effect.try({
        try: () => {
          const at = now()
          const kept = rows.get(id)
          recordStatement.run(
            at,
            turn.cliSessionId,
            turn.historyHash,
            turn.fingerprint,
            turn.promptTokens,
            turn.completionTokens,
            turn.costUsd,
            JSON.stringify(turn.messages.map((message) => JSON.stringify(message))),
            id
          )
          forget(id)
          if (kept === undefined) return
          // The same arithmetic as the statement's (SQLite's REAL is a double too).
          keep({
            ...kept,
            updatedAt: at,
            cliSessionId: turn.cliSessionId === "" ? kept.cliSessionId : turn.cliSessionId,
            historyHash: turn.historyHash,
            promptTokens: kept.promptTokens + turn.promptTokens,
            completionTokens: kept.completionTokens + turn.completionTokens,
            costUsd: kept.costUsd + turn.costUsd
          })
        },
        catch: (cause) => new SqlError.SqlError({ cause, message: "Failed to record a turn" })
      }).pipe(Effect.orDie))

    /** The conversation whose history has this fingerprint, if it was updated since `notBefore` (unix s). */
    const byFingerprint = SqlSchema.findOne({
      Request: Schema.Struct({ fingerprint: Schema.String, notBefore: Schema.Number }),
      Result: Row,
      execute: ({ fingerprint, notBefore }) =>
        sql`SELECT * FROM conversations WHERE fingerprint = ${fingerprint} AND updated_at >= ${notBefore}
            ORDER BY updated_at DESC LIMIT 1`
    })
    const findByFingerprint = (fingerprint: string, notBefore: number): Effect.Effect<Option.Option<Conversation>> =>
      byFingerprint({ fingerprint, notBefore }).pipe(Effect.map(Option.map(toConversation)), Effect.orDie)

    /** A conversation's CLI session, when none is recorded yet (its first turn did not finish). */
    const attachSession = (id: string, cliSessionId: string): Effect.Effect<void> =>
      sql`UPDATE conversations SET cli_session_id = COALESCE(cli_session_id, ${cliSessionId}) WHERE id = ${id}`.pipe(
        Effect.map(() => forget(id)),
        Effect.orDie
      )

    /** Delete the conversations last updated before `before` (unix s); how many went. */
    const purge = (before: number): Effect.Effect<number> =>
      sql<{ readonly id: string }>`DELETE FROM conversations WHERE updated_at < ${before} RETURNING id`.pipe(
        Effect.map((deleted) => {
          for (const { id } of deleted) forget(id)
          return deleted.length
        }),
        Effect.orDie
      )

    // `sql`: stores of other objects kept in the same database (ResponseStore).
    return { create, get, messages, list, remove, recordTurn, attachSession, findByFingerprint, purge, sql } as const
  }),
  dependencies: [SqliteLive]
}) {}
