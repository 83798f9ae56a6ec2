import { HttpApiBuilder, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Stream } from "effect"
import * as crypto from "node:crypto"
import { Admission } from "../../services/Admission.js"
import { ChatService } from "../../services/ChatService.js"
import { InvalidRequest, ModelNotFound } from "../../domain/errors.js"
import { GatewayApi } from "../../http/Api.js"
import { commits, KEEP_ALIVE, SSE_HEADERS } from "../../http/sse.js"
import { anthropicErrorResponse, errorResponse, recover, toHttpError } from "../../http/errors.js"
import { readJson } from "../../http/request.js"
import { Caller } from "../../http/auth.js"
import { withKeepAlive } from "../../http/keepAlive.js"
import { peelUntil } from "../../domain/TurnStream.js"
import { GatewayConfig } from "../../config/GatewayConfig.js"
import { ImageFetcher } from "../../services/ImageFetcher.js"
import { ModelCatalog } from "../../services/ModelCatalog.js"
import { aggregate, mergeChoices, sseFrames, sseChoiceResponse } from "./render.js"
import { modelInfo } from "../anthropic/render.js"
import type { Model } from "./Schema.js"
import { decodeChatRequest, toTurnRequest } from "./translate.js"


/** POST /v1/chat/completions: the HttpApi's handler, and the server's fast path (src/http/direct.ts). */
export const chatCompletions = Effect.gen(function*() {
  const chat = yield* ChatService
  const admission = yield* Admission
  const catalog = yield* ModelCatalog
  const images = yield* ImageFetcher
  const { config } = yield* GatewayConfig
  // More choices than sessions would wait on each other: n is capped by both.
  const maxChoices = Math.min(config.claude.max_choices, config.claude.max_concurrent_sessions)
  const maxHistoryMessages = config.conversation.max_history_messages

  return (request: HttpServerRequest.HttpServerRequest) =>
    recover(Effect.gen(function*() {
      const body = yield* readJson(request, config.server.max_body_bytes)
      const decoded = yield* decodeChatRequest(body)
      const headerId = request.headers["x-conversation-id"]
      const chatRequest = decoded.conversation_id == null && headerId !== undefined && headerId !== ""
        ? { ...decoded, conversation_id: headerId }
        : decoded
      const choices = chatRequest.n ?? 1
      if (choices > 1 && chatRequest.conversation_id != null) {
        return yield* Effect.fail(new InvalidRequest({
          message: "'n' greater than 1 cannot be combined with 'conversation_id': each choice would continue it differently.",
          param: "n",
          code: "unsupported_parameter"
        }))
      }
      const model = yield* catalog.resolve(chatRequest.model)
      const owner = (yield* Caller).owner
      const translated = yield* toTurnRequest(chatRequest, model, { maxChoices, maxHistoryMessages, owner })
      // `n` independent runs belong to no conversation.
      const pending = choices > 1 ? { ...translated, conversation: undefined } : translated
      // Bounded in count, bytes and time; a client that goes away interrupts the fetches.
      const input = yield* images.resolveAll(pending.input)
      const turn = { ...pending, input }
      const meta = {
        id: `chatcmpl-${crypto.randomUUID().replaceAll("-", "")}`,
        created: Math.floor(Date.now() / 1000),
        model
      }
      // `n` independent runs, each on its own CLI (n is checked against the session limit).
      if (choices > 1) yield* admission.admitMany(choices)
      // One run (the common case) without the fibers of a concurrent forEach.
      const started = choices === 1
        ? [yield* chat.turn(turn)]
        : yield* Effect.forEach(Array.from({ length: choices }), () => chat.turn(turn, { admitted: true }), { concurrency: "unbounded" })
      const runs = started.map((run) => run.events)
      const conversationId = started[0]?.conversationId
      const conversationHeader = conversationId === undefined ? {} : { "x-conversation-id": conversationId }

      if (chatRequest.stream !== true) {
        const results = runs.length === 1 && runs[0] !== undefined
          ? [yield* aggregate(runs[0], meta)]
          : yield* Effect.forEach(runs, (events) => aggregate(events, meta), { concurrency: "unbounded" })
        const { completion, costUsd } = mergeChoices(results)
        return HttpServerResponse.unsafeJson(
          conversationId === undefined ? completion : { ...completion, conversation_id: conversationId },
          { headers: { ...conversationHeader, ...(costUsd === undefined ? {} : { "x-claude-cost-usd": String(costUsd) }) } }
        )
      }

      const peeled = yield* Effect.forEach(runs, (events) => peelUntil(events, commits))
      const frameOptions = {
        conversationId,
        includeUsage: chatRequest.stream_options?.include_usage === true,
        onError: (error: Parameters<typeof toHttpError>[0]) => toHttpError(error).body
      }
      const keepAlive = config.server.sse_keepalive_seconds
      const headers = { ...SSE_HEADERS, ...conversationHeader }
      if (peeled.length === 1 && peeled[0] !== undefined) {
        return yield* sseChoiceResponse(peeled[0], meta, frameOptions, { seconds: keepAlive, comment: KEEP_ALIVE }, headers)
      }
      const frames = sseFrames(peeled, meta, frameOptions)
      return HttpServerResponse.stream(Stream.encodeText(keepAlive === 0 ? frames : withKeepAlive(frames, keepAlive, KEEP_ALIVE)), {
        contentType: "text/event-stream",
        headers
      })
    }))
})

export const OpenAIHttp = HttpApiBuilder.group(GatewayApi, "openai", (handlers) =>
  Effect.gen(function*() {
    const catalog = yield* ModelCatalog
    const completions = yield* chatCompletions

    const modelObject = (id: string, created: number): Model => ({ id, object: "model", created, owned_by: "anthropic" })
    const created = Math.floor(Date.now() / 1000)
    const createdAt = new Date(created * 1000).toISOString()

    return handlers
      // Anthropic clients (they send `anthropic-version`) get Anthropic's shape of the same list.
      .handle("listModels", ({ request }) =>
        Effect.map(catalog.models, (models) =>
          request.headers["anthropic-version"] !== undefined
            ? HttpServerResponse.unsafeJson({
              data: models.map((m) => modelInfo(m.id, createdAt)),
              has_more: false,
              first_id: models[0]?.id ?? null,
              last_id: models[models.length - 1]?.id ?? null
            })
            : {
              object: "list" as const,
              data: models.map((m) => modelObject(m.id, created))
            }))
      .handle("retrieveModel", ({ path, request }) => {
        const anthropic = request.headers["anthropic-version"] !== undefined
        return Effect.flatMap(catalog.models, (models) =>
          models.some((m) => m.id === path.id)
            ? Effect.succeed(anthropic ? HttpServerResponse.unsafeJson(modelInfo(path.id, createdAt)) : modelObject(path.id, created))
            : Effect.fail(new ModelNotFound({ model: path.id, available: models.map((m) => m.id) }))).pipe(
            Effect.catchAll((error) => Effect.succeed(anthropic ? anthropicErrorResponse(error) : errorResponse(error)))
          )
      })
      .handleRaw("chatCompletions", ({ request }) => completions(request))
  }))
