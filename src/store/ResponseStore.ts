import { Effect, Option, Schema } from "effect"
import { ConversationStore } from "./ConversationStore.js"

/**
 * Responses API objects, next to the conversations they belong to (same database; the table is a
 * migration of ConversationStore, and deleting a conversation deletes its responses). A response
 * always keeps what `previous_response_id` needs (its conversation and where in it the response
 * ends); its body and input items only when it was created with `store` true.
 */

export interface ResponseRecord {
  readonly id: string
  readonly owner: string
  readonly conversationId: string
  /** Unix seconds. */
  readonly createdAt: number
  /** How many of the conversation's recorded messages the response ends after. */
  readonly messageCount: number
  /** The conversation's history hash right after this response: it is the head while they match. */
  readonly historyHash: string
  /** The response object (JSON), when stored. */
  readonly body: unknown
  /** The request's input items (JSON array), when stored. */
  readonly inputItems: ReadonlyArray<unknown> | undefined
}

const Row = Schema.Struct({
  id: Schema.String,
  owner: Schema.String,
  conversation_id: Schema.String,
  created_at: Schema.Number,
  message_count: Schema.Number,
  history_hash: Schema.String,
  body: Schema.NullOr(Schema.parseJson(Schema.Unknown)),
  input_items: Schema.NullOr(Schema.parseJson(Schema.Array(Schema.Unknown)))
})
const decodeRows = Schema.decodeUnknown(Schema.Array(Row))

export class ResponseStore extends Effect.Service<ResponseStore>()("ResponseStore", {
  effect: Effect.gen(function*() {
    const { sql } = yield* ConversationStore

    /** The response `id` if it belongs to `owner`. */
    const get = (id: string, owner: string): Effect.Effect<Option.Option<ResponseRecord>> =>
      sql`SELECT * FROM responses WHERE id = ${id} AND owner = ${owner}`.pipe(
        Effect.flatMap(decodeRows),
        Effect.map((rows) =>
          Option.map(Option.fromNullable(rows[0]), (row): ResponseRecord => ({
            id: row.id,
            owner: row.owner,
            conversationId: row.conversation_id,
            createdAt: row.created_at,
            messageCount: row.message_count,
            historyHash: row.history_hash,
            body: row.body ?? undefined,
            inputItems: row.input_items ?? undefined
          }))
        ),
        Effect.orDie
      )

    const save = (record: ResponseRecord): Effect.Effect<void> =>
      sql`INSERT INTO responses ${
        sql.insert({
          id: record.id,
          owner: record.owner,
          conversation_id: record.conversationId,
          created_at: record.createdAt,
          message_count: record.messageCount,
          history_hash: record.historyHash,
          body: record.body === undefined ? null : JSON.stringify(record.body),
          input_items: record.inputItems === undefined ? null : JSON.stringify(record.inputItems)
        })
      }`.pipe(Effect.asVoid, Effect.orDie, Effect.withSpan("gateway.store.response"))

    /** Delete the response `id` of `owner`; whether there was one. */
    const remove = (id: string, owner: string): Effect.Effect<boolean> =>
      sql`DELETE FROM responses WHERE id = ${id} AND owner = ${owner} RETURNING id`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.orDie
      )

    /** How many messages the conversation has recorded. */
    const messageCount = (conversationId: string): Effect.Effect<number> =>
      sql`SELECT COUNT(*) AS n FROM messages WHERE conversation_id = ${conversationId}`.pipe(
        Effect.flatMap(Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ n: Schema.Number })))),
        Effect.map(([row]) => row.n),
        Effect.orDie
      )

    return { get, save, remove, messageCount } as const
  }),
  dependencies: [ConversationStore.Default]
}) {}
