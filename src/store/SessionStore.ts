import { SqlSchema } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { PermissionMode, SessionState } from "../protocols/sessions/Messages.js"
import { ConversationStore } from "./ConversationStore.js"

/**
 * Interactive sessions, in the conversations' database (the table is a migration of
 * ConversationStore): enough to list them and, after a gateway restart, to resume a session's CLI
 * (`--resume <cli_session_id>`) with the settings it was created with.
 */

/** What a session was created with; `model` and `permissionMode` change at runtime. */
export const SessionSettings = Schema.Struct({
  model: Schema.String,
  systemPrompt: Schema.NullOr(Schema.String),
  workingDirectory: Schema.String,
  permissionMode: PermissionMode,
  allowedTools: Schema.Array(Schema.String),
  disallowedTools: Schema.Array(Schema.String),
  maxBudgetUsd: Schema.NullOr(Schema.Number)
})
export type SessionSettings = typeof SessionSettings.Type

export interface SessionRecord {
  readonly id: string
  readonly owner: string
  /** Unix seconds. */
  readonly createdAt: number
  readonly updatedAt: number
  readonly state: SessionState
  readonly endedReason: string | null
  readonly settings: SessionSettings
  readonly cliSessionId: string | null
  readonly inputTokens: number
  readonly outputTokens: number
  readonly cacheReadTokens: number
  readonly cacheCreationTokens: number
  readonly costUsd: number
  readonly turns: number
  readonly lastSeq: number
}

const Row = Schema.Struct({
  id: Schema.String,
  owner: Schema.String,
  created_at: Schema.Number,
  updated_at: Schema.Number,
  state: SessionState,
  ended_reason: Schema.NullOr(Schema.String),
  settings: Schema.parseJson(SessionSettings),
  cli_session_id: Schema.NullOr(Schema.String),
  input_tokens: Schema.Number,
  output_tokens: Schema.Number,
  cache_read_tokens: Schema.Number,
  cache_creation_tokens: Schema.Number,
  cost_usd: Schema.Number,
  turns: Schema.Number,
  last_seq: Schema.Number
})

const toRecord = (row: typeof Row.Type): SessionRecord => ({
  id: row.id,
  owner: row.owner,
  createdAt: row.created_at,
  updatedAt: row.updated_at,
  state: row.state,
  endedReason: row.ended_reason,
  settings: row.settings,
  cliSessionId: row.cli_session_id,
  inputTokens: row.input_tokens,
  outputTokens: row.output_tokens,
  cacheReadTokens: row.cache_read_tokens,
  cacheCreationTokens: row.cache_creation_tokens,
  costUsd: row.cost_usd,
  turns: row.turns,
  lastSeq: row.last_seq
})

const toRow = (record: SessionRecord) => ({
  id: record.id,
  owner: record.owner,
  created_at: record.createdAt,
  updated_at: record.updatedAt,
  state: record.state,
  ended_reason: record.endedReason,
  settings: JSON.stringify(Schema.encodeSync(SessionSettings)(record.settings)),
  cli_session_id: record.cliSessionId,
  input_tokens: record.inputTokens,
  output_tokens: record.outputTokens,
  cache_read_tokens: record.cacheReadTokens,
  cache_creation_tokens: record.cacheCreationTokens,
  cost_usd: record.costUsd,
  turns: record.turns,
  last_seq: record.lastSeq
})

export class SessionStore extends Effect.Service<SessionStore>()("SessionStore", {
  effect: Effect.gen(function*() {
    // The migrations run when ConversationStore is built.
    const { sql } = yield* ConversationStore

    const byId = SqlSchema.findOne({
      Request: Schema.String,
      Result: Row,
      execute: (id) => sql`SELECT * FROM sessions WHERE id = ${id}`
    })
    const get = (id: string): Effect.Effect<Option.Option<SessionRecord>> =>
      byId(id).pipe(Effect.map(Option.map(toRecord)), Effect.orDie)

    const byOwner = SqlSchema.findAll({
      Request: Schema.String,
      Result: Row,
      execute: (owner) => sql`SELECT * FROM sessions WHERE owner = ${owner} ORDER BY rowid DESC`
    })
    const list = (owner: string): Effect.Effect<ReadonlyArray<SessionRecord>> =>
      byOwner(owner).pipe(Effect.map((rows) => rows.map(toRecord)), Effect.orDie)

    const notEnded = SqlSchema.findAll({
      Request: Schema.Void,
      Result: Row,
      execute: () => sql`SELECT * FROM sessions WHERE state <> 'ended' ORDER BY rowid`
    })
    /** Sessions a restart may resume. */
    const open: Effect.Effect<ReadonlyArray<SessionRecord>> = notEnded(undefined).pipe(
      Effect.map((rows) => rows.map(toRecord)),
      Effect.orDie
    )

    const insert = (record: SessionRecord): Effect.Effect<void> =>
      sql`INSERT INTO sessions ${sql.insert(toRow(record))}`.pipe(Effect.asVoid, Effect.orDie)

    /** Write a session's current record (the whole row: one writer per session, the Sessions service). */
    const save = (record: SessionRecord): Effect.Effect<void> => {
      const { id, ...rest } = toRow(record)
      return sql`UPDATE sessions SET ${sql.update(rest)} WHERE id = ${id}`.pipe(Effect.asVoid, Effect.orDie)
    }

    const remove = (id: string): Effect.Effect<void> => sql`DELETE FROM sessions WHERE id = ${id}`.pipe(Effect.asVoid, Effect.orDie)

    return { get, list, open, insert, save, remove } as const
  }),
  dependencies: [ConversationStore.Default]
}) {}
