import { HttpApiBuilder, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Chunk, Effect, Option, Stream } from "effect"
import * as crypto from "node:crypto"
import { GatewayConfig } from "../../config/GatewayConfig.js"
import { InvalidRequest, ResponseNotFound } from "../../domain/errors.js"
import type { TurnEvent } from "../../domain/Turn.js"
import { GatewayApi } from "../../http/Api.js"
import { commits, KEEP_ALIVE, SSE_HEADERS, sseResponse } from "../../http/sse.js"
import { recover, toHttpError } from "../../http/errors.js"
import { peelUntil } from "../../domain/TurnStream.js"
import { readJson } from "../../http/request.js"
import { Caller } from "../../http/auth.js"
import { ChatService } from "../../services/ChatService.js"
import { Conversations } from "../../services/Conversations.js"
import { ImageFetcher } from "../../services/ImageFetcher.js"
import { ModelCatalog } from "../../services/ModelCatalog.js"
import { ResponseStore } from "../../store/ResponseStore.js"
import { frame, ResponseBuilder } from "./render.js"
import type { ResponseObject, ResponsesRequest } from "./Schema.js"
import { type Continuation, decodeResponsesRequest, toTurn } from "./translate.js"


const newId = (prefix: string) => `${prefix}_${crypto.randomUUID().replaceAll("-", "")}`

/** The request's input as items with ids (what GET …/input_items lists). */
const inputItems = (input: ResponsesRequest["input"]): Array<unknown> =>
  typeof input === "string"
    ? [{ type: "message", id: newId("msg"), role: "user", content: [{ type: "input_text", text: input }] }]
    : input.map((item) => {
      if (typeof item !== "object" || item === null) return item
      if ("id" in item && typeof item.id === "string") return item
      const type = "type" in item && typeof item.type === "string" ? item.type : "message"
      const prefix = type === "function_call" ? "fc" : type === "function_call_output" ? "fco" : type === "reasoning" ? "rs" : "msg"
      return { type, ...item, id: newId(prefix) }
    })

/** POST /v1/responses: the HttpApi's handler, and the server's fast path (src/http/direct.ts). */
export const createResponse = Effect.gen(function*() {
  const chat = yield* ChatService
  const catalog = yield* ModelCatalog
  const images = yield* ImageFetcher
  const conversations = yield* Conversations
  const responses = yield* ResponseStore
  const { config } = yield* GatewayConfig
  const maxHistoryMessages = config.conversation.max_history_messages

  /**
   * What `previous_response_id` continues: the response's conversation, natively, while the
   * response is its latest turn; a branch from an earlier response starts a new conversation told
   * the recorded messages up to that response.
   */
  const continuationOf = (request: ResponsesRequest, owner: string): Effect.Effect<Continuation, ResponseNotFound | InvalidRequest> =>
    Effect.gen(function*() {
      if (request.previous_response_id != null && request.conversation != null) {
        return yield* Effect.fail(new InvalidRequest({
          message: "'previous_response_id' and 'conversation' cannot be used together: each names what the response continues.",
          param: "conversation",
          code: "invalid_value"
        }))
      }
      if (request.conversation != null) {
        return { conversationId: typeof request.conversation === "string" ? request.conversation : request.conversation.id, prior: [] }
      }
      const previousId = request.previous_response_id
      if (previousId == null) return { conversationId: undefined, prior: [] }
      const notFound = new ResponseNotFound({ id: previousId, param: "previous_response_id" })
      const previous = yield* Effect.flatten(responses.get(previousId, owner).pipe(Effect.map(Option.match({
        onNone: () => Effect.fail(notFound),
        onSome: Effect.succeed
      }))))
      const conversation = yield* conversations.store.get(previous.conversationId)
      if (Option.isNone(conversation)) return yield* Effect.fail(notFound)
      const messages = yield* conversations.store.messages(previous.conversationId)
      if (conversation.value.historyHash === previous.historyHash) {
        // The response's own answer, so that function_call_output items answer its calls.
        const last = messages.at(-1)
        return { conversationId: previous.conversationId, prior: last?.role === "assistant" ? [last] : [] }
      }
      return { conversationId: undefined, prior: messages.slice(0, previous.messageCount) }
    })

  return (request: HttpServerRequest.HttpServerRequest) =>
    recover(Effect.gen(function*() {
      const body = yield* decodeResponsesRequest(yield* readJson(request, config.server.max_body_bytes))
      const owner = (yield* Caller).owner
      const continuation = yield* continuationOf(body, owner)
      const model = yield* catalog.resolve(body.model)
      const { ignored, rename, tools, turn: pending } = yield* toTurn(body, model, continuation, { maxChoices: 1, maxHistoryMessages, owner })
      if (ignored.length > 0) yield* Effect.logDebug("responses: request parts left out", { ignored })
      const input = yield* Effect.forEach(
        pending.input,
        (block) => (block.type === "image_ref" ? images.load(block.url, rename(block.param)) : Effect.succeed(block)),
        { concurrency: 4 }
      )
      const store = body.store ?? true
      // A stored response must exist for GET and previous_response_id: only `store: false` ones are cached.
      const started = yield* chat.turn({ ...pending, input }, { cacheable: !store })
      const conversationId = started.conversationId
      const response: ResponseObject = {
        id: newId("resp"),
        object: "response",
        created_at: Math.floor(Date.now() / 1000),
        status: "in_progress",
        error: null,
        incomplete_details: null,
        instructions: body.instructions ?? null,
        max_output_tokens: body.max_output_tokens ?? null,
        model,
        output: [],
        parallel_tool_calls: body.parallel_tool_calls ?? true,
        previous_response_id: body.previous_response_id ?? null,
        reasoning: { effort: body.reasoning?.effort ?? null, summary: body.reasoning?.summary ?? null },
        store,
        temperature: body.temperature ?? null,
        text: { format: body.text?.format ?? { type: "text" } },
        tool_choice: body.tool_choice ?? "auto",
        tools,
        top_p: body.top_p ?? null,
        truncation: body.truncation ?? "disabled",
        usage: null,
        user: body.user ?? null,
        metadata: body.metadata ?? {},
        ...(conversationId === undefined ? {} : { conversation_id: conversationId }),
        ...(ignored.length > 0 ? { ignored } : {})
      }
      const builder = new ResponseBuilder(response)
      const items = store ? inputItems(body.input) : undefined
      /** Once the turn is recorded: what previous_response_id needs, and with `store` the response itself. */
      const persist = Effect.gen(function*() {
        if (conversationId === undefined) return
        const conversation = yield* conversations.store.get(conversationId)
        if (Option.isNone(conversation)) return
        yield* responses.save({
          id: response.id,
          owner,
          conversationId,
          createdAt: response.created_at,
          messageCount: yield* responses.messageCount(conversationId),
          historyHash: conversation.value.historyHash,
          body: store ? builder.response : undefined,
          inputItems: items
        })
      })
      const apply = (event: TurnEvent) =>
        Effect.suspend(() => {
          const events = builder.apply(event)
          return event._tag === "Finished" ? Effect.as(persist, events) : Effect.succeed(events)
        })
      const headers = {
        ...(conversationId === undefined ? {} : { "x-conversation-id": conversationId })
      }

      if (body.stream !== true) {
        yield* Stream.runForEach(started.events, apply)
        return HttpServerResponse.unsafeJson(builder.response, {
          headers: { ...headers, ...(builder.costUsd === undefined ? {} : { "x-claude-cost-usd": String(builder.costUsd) }) }
        })
      }

      // The response's opening events come before the first event's (or the failure's).
      let opened = false
      const open = () => {
        if (opened) return ""
        opened = true
        return builder.start().map(frame).join("")
      }
      const events = yield* peelUntil(started.events, commits)
      return yield* sseResponse(events, {
        frames: (event) => open() + builder.apply(event).map(frame).join(""),
        end: open,
        error: (error) => open() + builder.fail(toHttpError(error).body.error).map(frame).join(""),
        // Stored before the client reads `response.completed`: a GET right after it finds the response.
        rendered: (chunk) => Chunk.some(chunk, (event) => event._tag === "Finished") ? persist : Effect.void
      }, { seconds: config.server.sse_keepalive_seconds, comment: KEEP_ALIVE }, { ...SSE_HEADERS, ...headers })
    }))
})

export const ResponsesHttp = HttpApiBuilder.group(GatewayApi, "responses", (handlers) =>
  Effect.gen(function*() {
    const responses = yield* ResponseStore
    const handleCreate = yield* createResponse

    return handlers
      .handleRaw("createResponse", ({ request }) => handleCreate(request))
      .handle("retrieveResponse", ({ path: { id } }) =>
        recover(Effect.gen(function*() {
          const found = yield* responses.get(id, (yield* Caller).owner)
          if (Option.isNone(found) || found.value.body === undefined) return yield* Effect.fail(new ResponseNotFound({ id, param: null }))
          return HttpServerResponse.unsafeJson(found.value.body)
        })))
      .handle("deleteResponse", ({ path: { id } }) =>
        recover(Effect.gen(function*() {
          if (!(yield* responses.remove(id, (yield* Caller).owner))) {
            return yield* Effect.fail(new ResponseNotFound({ id, param: null }))
          }
          return HttpServerResponse.unsafeJson({ id, object: "response.deleted", deleted: true })
        })))
      .handle("listInputItems", ({ path: { id }, urlParams }) =>
        recover(Effect.gen(function*() {
          const found = yield* responses.get(id, (yield* Caller).owner)
          if (Option.isNone(found) || found.value.inputItems === undefined) return yield* Effect.fail(new ResponseNotFound({ id, param: null }))
          const limit = urlParams.limit === undefined ? 20 : Number(urlParams.limit)
          if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
            return yield* Effect.fail(new InvalidRequest({ message: "Invalid value for 'limit': expected an integer from 1 to 100.", param: "limit", code: "invalid_value" }))
          }
          const order = urlParams.order ?? "desc"
          if (order !== "asc" && order !== "desc") {
            return yield* Effect.fail(new InvalidRequest({ message: "Invalid value for 'order': expected 'asc' or 'desc'.", param: "order", code: "invalid_value" }))
          }
          const idOf = (item: unknown) => typeof item === "object" && item !== null && "id" in item && typeof item.id === "string" ? item.id : undefined
          const all = order === "asc" ? [...found.value.inputItems] : [...found.value.inputItems].reverse()
          const start = urlParams.after === undefined ? 0 : all.findIndex((item) => idOf(item) === urlParams.after) + 1
          if (start === 0 && urlParams.after !== undefined) {
            return yield* Effect.fail(new InvalidRequest({ message: `Invalid value for 'after': no input item '${urlParams.after}' in this response.`, param: "after", code: "invalid_value" }))
          }
          const data = all.slice(start, start + limit)
          return HttpServerResponse.unsafeJson({
            object: "list",
            data,
            first_id: idOf(data[0]) ?? null,
            last_id: idOf(data.at(-1)) ?? null,
            has_more: start + limit < all.length
          })
        })))
  }))
