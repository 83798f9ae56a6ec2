import { HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Schema } from "effect"
import { Authorization } from "../../http/auth.js"

/** The gateway's own conversation endpoints (handlers in Http.ts). */

const Opt = <A, I>(schema: Schema.Schema<A, I>) => Schema.optional(Schema.NullOr(schema))

export const CreateConversation = Schema.Struct({
  model: Opt(Schema.String),
  system: Opt(Schema.String),
  working_directory: Opt(Schema.String),
  metadata: Opt(Schema.Record({ key: Schema.String, value: Schema.String }))
})

const ToolCall = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("function"),
  function: Schema.Struct({ name: Schema.String, arguments: Schema.String })
})

export const ConversationObject = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("conversation"),
  created_at: Schema.Number,
  updated_at: Schema.Number,
  model: Schema.NullOr(Schema.String),
  system: Schema.NullOr(Schema.String),
  working_directory: Schema.NullOr(Schema.String),
  metadata: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** Whether the conversation's CLI is running (its next turn skips the resume). */
  live: Schema.Boolean,
  usage: Schema.Struct({ prompt_tokens: Schema.Number, completion_tokens: Schema.Number, total_tokens: Schema.Number }),
  cost_usd: Schema.Number
})

export const ConversationWithMessages = Schema.Struct({
  ...ConversationObject.fields,
  messages: Schema.Array(Schema.Struct({
    role: Schema.String,
    content: Schema.NullOr(Schema.String),
    tool_calls: Schema.optional(Schema.Array(ToolCall)),
    tool_call_id: Schema.optional(Schema.String)
  }))
})

export const ConversationList = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(ConversationObject),
  has_more: Schema.Boolean,
  first_id: Schema.NullOr(Schema.String),
  last_id: Schema.NullOr(Schema.String)
})

export const ConversationDeleted = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("conversation.deleted"),
  deleted: Schema.Literal(true)
})

const IdPath = Schema.Struct({ id: Schema.String })

const RepeatableParam = Schema.Union(Schema.String, Schema.Array(Schema.String))

export class ConversationsApi extends HttpApiGroup.make("conversations")
  .add(HttpApiEndpoint.post("createConversation", "/v1/conversations").setPayload(CreateConversation).addSuccess(ConversationObject, { status: 201 }))
  .add(
    HttpApiEndpoint.get("listConversations", "/v1/conversations")
      // A repeated parameter arrives as a list: decoded, so that the handler can name it in a 400.
      .setUrlParams(Schema.Struct({ limit: Schema.optional(RepeatableParam), after: Schema.optional(RepeatableParam) }))
      .addSuccess(ConversationList)
  )
  .add(HttpApiEndpoint.get("retrieveConversation", "/v1/conversations/:id").setPath(IdPath).addSuccess(ConversationWithMessages))
  .add(HttpApiEndpoint.del("deleteConversation", "/v1/conversations/:id").setPath(IdPath).addSuccess(ConversationDeleted))
  .middleware(Authorization)
{}
