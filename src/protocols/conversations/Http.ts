import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Option } from "effect"
import type { Conversation } from "../../store/ConversationStore.js"
import { Conversations } from "../../services/Conversations.js"
import { ConversationNotFound, InvalidRequest } from "../../domain/errors.js"
import { GatewayConfig } from "../../config/GatewayConfig.js"
import { GatewayApi } from "../../http/Api.js"
import { recover } from "../../http/errors.js"
import { workingDirectory as resolveWorkingDirectory } from "../../http/workingDirectory.js"
import { decodeBody, readJson } from "../../http/request.js"
import { Caller } from "../../http/auth.js"
import { ModelCatalog } from "../../services/ModelCatalog.js"
import { ToolBridge } from "../../services/ToolBridge.js"
import { checkSystemPrompt } from "../openai/translate.js"
import { CreateConversation } from "./Api.js"

const invalid = (message: string, param: string) => new InvalidRequest({ message, param, code: "invalid_value" })

export const ConversationsHttp = HttpApiBuilder.group(GatewayApi, "conversations", (handlers) =>
  Effect.gen(function*() {
    const conversations = yield* Conversations
    const bridge = yield* ToolBridge
    const catalog = yield* ModelCatalog
    const { config } = yield* GatewayConfig
    const store = conversations.store
    const workingDirectory = (requested: string) => resolveWorkingDirectory(config.claude.workspace, requested)

    const render = (conversation: Conversation, live: ReadonlySet<string>) => ({
      id: conversation.id,
      object: "conversation" as const,
      created_at: conversation.createdAt,
      updated_at: conversation.updatedAt,
      model: conversation.model,
      system: conversation.systemPrompt,
      working_directory: conversation.workingDirectory,
      metadata: conversation.metadata,
      live: live.has(conversation.id),
      usage: {
        prompt_tokens: conversation.promptTokens,
        completion_tokens: conversation.completionTokens,
        total_tokens: conversation.promptTokens + conversation.completionTokens
      },
      cost_usd: conversation.costUsd
    })

    /** A conversation of this caller's (another key's is as good as unknown). */
    const find = (id: string, owner: string) =>
      Effect.flatMap(store.get(id), (found) =>
        Option.match(Option.filter(found, (conversation) => conversation.owner === owner), {
          onNone: () => Effect.fail(new ConversationNotFound({ id })),
          onSome: Effect.succeed
        }))

    return handlers
      .handleRaw("createConversation", ({ request }) =>
        recover(Effect.gen(function*() {
          const body = yield* decodeBody(CreateConversation, yield* readJson(request, config.server.max_body_bytes))
          if (body.model != null) yield* catalog.resolve(body.model)
          if (body.system != null) yield* checkSystemPrompt(body.system, "system")
          const conversation = yield* store.create({
            owner: (yield* Caller).owner,
            model: body.model ?? undefined,
            systemPrompt: body.system ?? undefined,
            workingDirectory: body.working_directory == null ? undefined : yield* workingDirectory(body.working_directory),
            metadata: body.metadata ?? undefined
          })
          return HttpServerResponse.unsafeJson(render(conversation, new Set()), { status: 201 })
        })))
      .handle("listConversations", ({ urlParams }) =>
        recover(Effect.gen(function*() {
          const owner = (yield* Caller).owner
          if (typeof urlParams.limit !== "string" && urlParams.limit !== undefined) {
            return yield* Effect.fail(invalid("Invalid value for 'limit': give it once.", "limit"))
          }
          if (typeof urlParams.after !== "string" && urlParams.after !== undefined) {
            return yield* Effect.fail(invalid("Invalid value for 'after': give it once.", "after"))
          }
          const limit = urlParams.limit === undefined ? 20 : Number(urlParams.limit)
          if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
            return yield* Effect.fail(invalid("Invalid value for 'limit': expected an integer from 1 to 100.", "limit"))
          }
          const after = urlParams.after
          if (after !== undefined) yield* find(after, owner)
          const page = yield* store.list({ owner, limit, after })
          const live = yield* conversations.liveIds
          const data = page.data.map((conversation) => render(conversation, live))
          return HttpServerResponse.unsafeJson({
            object: "list",
            data,
            has_more: page.hasMore,
            first_id: data[0]?.id ?? null,
            last_id: data.at(-1)?.id ?? null
          })
        })))
      .handle("retrieveConversation", ({ path: { id } }) =>
        recover(Effect.gen(function*() {
          const conversation = yield* find(id, (yield* Caller).owner)
          const messages = yield* store.messages(id)
          return HttpServerResponse.unsafeJson({
            ...render(conversation, yield* conversations.liveIds),
            messages: messages.map((message) => ({
              role: message.role,
              content: message.content,
              ...(message.tool_calls !== undefined
                ? {
                  tool_calls: message.tool_calls.map((call) => ({
                    id: call.id,
                    type: "function",
                    function: { name: call.name, arguments: call.arguments }
                  }))
                }
                : {}),
              ...(message.tool_call_id !== undefined ? { tool_call_id: message.tool_call_id } : {})
            }))
          })
        })))
      .handle("deleteConversation", ({ path: { id } }) =>
        recover(Effect.scoped(Effect.gen(function*() {
          yield* find(id, (yield* Caller).owner)
          // After the conversation's running turn, if any; its parked turns end with it.
          yield* conversations.lock(id)
          yield* bridge.endParked(id)
          if (!(yield* conversations.remove(id))) return yield* Effect.fail(new ConversationNotFound({ id }))
          return HttpServerResponse.unsafeJson({ id, object: "conversation.deleted", deleted: true })
        }))))
  }))
