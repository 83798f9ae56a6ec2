import { HttpApiBuilder, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import { GatewayConfig } from "../../config/GatewayConfig.js"
import { GatewayApi } from "../../http/Api.js"
import { commits, SSE_HEADERS, sseResponse } from "../../http/sse.js"
import { recoverAnthropic, toAnthropicError } from "../../http/errors.js"
import { peelUntil } from "../../domain/TurnStream.js"
import { readJson } from "../../http/request.js"
import { Caller } from "../../http/auth.js"
import { ChatService } from "../../services/ChatService.js"
import { ImageFetcher } from "../../services/ImageFetcher.js"
import { ModelCatalog } from "../../services/ModelCatalog.js"
import { TokenCounter } from "../../services/TokenCounter.js"
import { aggregate, eventRenderer, PING } from "./render.js"
import { countableText, decodeCountTokensRequest, decodeMessagesRequest, toAnthropicTurn } from "./translate.js"

/** POST /v1/messages: the HttpApi's handler, and the server's fast path (src/http/direct.ts). */
export const messages = Effect.gen(function*() {
  const chat = yield* ChatService
  const catalog = yield* ModelCatalog
  const images = yield* ImageFetcher
  const { config } = yield* GatewayConfig
  const options = { maxChoices: 1, maxHistoryMessages: config.conversation.max_history_messages }

  return (request: HttpServerRequest.HttpServerRequest) =>
    recoverAnthropic(Effect.gen(function*() {
      const body = yield* readJson(request, config.server.max_body_bytes)
      const decoded = yield* decodeMessagesRequest(body)
      const model = yield* catalog.resolve(decoded.model)
      const headerId = request.headers["x-conversation-id"]
      const { showThinking, turn: pending } = yield* toAnthropicTurn(decoded, model, {
        ...options,
        owner: (yield* Caller).owner,
        conversationId: headerId === undefined || headerId === "" ? undefined : headerId
      })
      const input = yield* Effect.forEach(
        pending.input,
        (block) => (block.type === "image_ref" ? images.load(block.url, block.param) : Effect.succeed(block)),
        { concurrency: 4 }
      )
      const run = yield* chat.turn({ ...pending, input })
      const meta = { id: `msg_${crypto.randomUUID().replaceAll("-", "")}`, model, showThinking }
      const conversationHeader = run.conversationId === undefined ? {} : { "x-conversation-id": run.conversationId }

      if (decoded.stream !== true) {
        const { costUsd, message } = yield* aggregate(run.events, meta)
        return HttpServerResponse.unsafeJson(message, {
          headers: { ...conversationHeader, ...(costUsd === undefined ? {} : { "x-claude-cost-usd": String(costUsd) }) }
        })
      }

      // A failure before the first content still gets a status of its own.
      const events = yield* peelUntil(run.events, commits)
      const render = eventRenderer(meta, (error: Parameters<typeof toAnthropicError>[0]) => toAnthropicError(error).body)
      return yield* sseResponse(events, render, { seconds: config.server.sse_keepalive_seconds, comment: PING }, {
        ...SSE_HEADERS,
        ...conversationHeader
      })
    }))
})

export const AnthropicHttp = HttpApiBuilder.group(GatewayApi, "anthropic", (handlers) =>
  Effect.gen(function*() {
    const catalog = yield* ModelCatalog
    const counter = yield* TokenCounter
    const { config } = yield* GatewayConfig
    const handleMessages = yield* messages

    return handlers
      .handleRaw("messages", ({ request }) => handleMessages(request))
      .handleRaw("countTokens", ({ request }) =>
        recoverAnthropic(Effect.gen(function*() {
          const body = yield* readJson(request, config.server.max_body_bytes)
          const decoded = yield* decodeCountTokensRequest(body)
          const model = yield* catalog.resolve(decoded.model)
          const text = yield* countableText(decoded)
          const tokens = yield* counter.count(model, text)
          return HttpServerResponse.unsafeJson({ input_tokens: tokens })
        })))
  }))
