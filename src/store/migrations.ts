import { Migrator, SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The store's schema, as @effect/sql migrations (recorded in the `effect_sql_migrations` table).
 * Append new ones; never edit one that has shipped. The first one is idempotent: databases from
 * before the Migrator (PRAGMA user_version = 1) already have its tables.
 */
export const migrations = Migrator.fromRecord({
  "0001_conversations": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE IF NOT EXISTS conversations (
      id TEXT PRIMARY KEY,
      owner TEXT NOT NULL DEFAULT '',
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      model TEXT,
      system_prompt TEXT,
      working_directory TEXT,
      metadata TEXT NOT NULL DEFAULT '{}',
      cli_session_id TEXT,
      history_hash TEXT NOT NULL DEFAULT '',
      fingerprint TEXT,
      prompt_tokens INTEGER NOT NULL DEFAULT 0,
      completion_tokens INTEGER NOT NULL DEFAULT 0,
      cost_usd REAL NOT NULL DEFAULT 0
    )`
    yield* sql`CREATE INDEX IF NOT EXISTS conversations_fingerprint ON conversations (fingerprint)`
    yield* sql`CREATE TABLE IF NOT EXISTS messages (
      conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
      position INTEGER NOT NULL,
      created_at INTEGER NOT NULL,
      message TEXT NOT NULL,
      PRIMARY KEY (conversation_id, position)
    )`
  }),
  // Responses API objects (src/store/ResponseStore.ts): what previous_response_id continues, and,
  // when stored, the response and its input items for GET /v1/responses/{id}.
  "0002_responses": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE responses (
      id TEXT PRIMARY KEY,
      owner TEXT NOT NULL DEFAULT '',
      conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
      created_at INTEGER NOT NULL,
      message_count INTEGER NOT NULL,
      history_hash TEXT NOT NULL,
      body TEXT,
      input_items TEXT
    )`
    yield* sql`CREATE INDEX responses_conversation ON responses (conversation_id)`
  }),
  // Cached answers (src/services/Cache.ts with cache.store = "sqlite"): a turn's events as JSON.
  "0003_cache_entries": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE cache_entries (
      key TEXT PRIMARY KEY,
      events TEXT NOT NULL,
      bytes INTEGER NOT NULL,
      stored_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      recency INTEGER NOT NULL
    )`
    yield* sql`CREATE INDEX cache_entries_recency ON cache_entries (recency)`
  }),
  // Interactive sessions (src/store/SessionStore.ts): what a reconnect after a restart resumes.
  "0004_sessions": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE sessions (
      id TEXT PRIMARY KEY,
      owner TEXT NOT NULL DEFAULT '',
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      state TEXT NOT NULL,
      ended_reason TEXT,
      settings TEXT NOT NULL,
      cli_session_id TEXT,
      input_tokens INTEGER NOT NULL DEFAULT 0,
      output_tokens INTEGER NOT NULL DEFAULT 0,
      cache_read_tokens INTEGER NOT NULL DEFAULT 0,
      cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
      cost_usd REAL NOT NULL DEFAULT 0,
      turns INTEGER NOT NULL DEFAULT 0,
      last_seq INTEGER NOT NULL DEFAULT 0
    )`
    yield* sql`CREATE INDEX sessions_owner ON sessions (owner)`
  }),
  // A turn recorded by one statement (ConversationStore.recordTurn): the UPDATE of a conversation
  // brings the turn's messages as a JSON array, which this trigger appends and clears. One
  // statement is atomic without a transaction, whose BEGIN, COMMIT and connection lock cost each
  // turn ~250 run-loop steps (bench/README.md, "Per-request CPU").
  "0005_record_turn": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE conversations ADD COLUMN pending_messages TEXT`
    yield* sql`CREATE TRIGGER conversations_record_turn AFTER UPDATE OF pending_messages ON conversations
      WHEN NEW.pending_messages IS NOT NULL
      BEGIN
        INSERT INTO messages (conversation_id, position, created_at, message)
          SELECT NEW.id, (SELECT COALESCE(MAX(position) + 1, 0) FROM messages WHERE conversation_id = NEW.id) + key,
            NEW.updated_at, value
          FROM json_each(NEW.pending_messages);
        UPDATE conversations SET pending_messages = NULL WHERE id = NEW.id;
      END`
  })
})

/** Runs the migrations not yet applied, each in a transaction. */
export const migrate = Migrator.make({})({ loader: migrations })
