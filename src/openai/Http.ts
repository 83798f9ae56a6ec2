import { HttpApiBuilder, HttpIncomingMessage, HttpServerResponse } from "@effect/platform"
import type { HttpServerRequest } from "@effect/platform"
import { Effect, Option, Schedule, Stream } from "effect"
import * as crypto from "node:crypto"
import { ChatService } from "../ChatService.js"
import { InvalidRequest, ModelNotFound } from "../Errors.js"
import { GatewayApi } from "../http/Api.js"
import { errorResponse, type GatewayError, toHttpError } from "../http/errors.js"
import { peelUntil } from "../lib/peel.js"
import { GatewayConfig } from "../GatewayConfig.js"
import { ImageFetcher } from "../ImageFetcher.js"
import { ModelCatalog } from "../ModelCatalog.js"
import type { TurnEvent } from "../Turn.js"
import { aggregate, mergeChoices, sseFrames } from "./render.js"
import type { Model } from "./Schema.js"
import { decodeChatRequest, toTurnRequest } from "./translate.js"

const KEEP_ALIVE = ": keep-alive\n\n"

const SSE_HEADERS = {
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
  connection: "keep-alive"
}

const readJson = (request: HttpServerRequest.HttpServerRequest, maxBytes: number) =>
  request.json.pipe(
    HttpIncomingMessage.withMaxBodySize(Option.some(maxBytes)),
    Effect.mapError(() =>
      new InvalidRequest({
        message: `We could not parse the JSON body of your request: it must be a JSON object of at most ${maxBytes} bytes.`,
        param: null,
        code: "invalid_json"
      })
    )
  )

/** Headers are committed with the first byte: wait for the first content (or a failure) before that. */
const commits = (event: TurnEvent) => event._tag !== "Started"

const recover = <A, R>(effect: Effect.Effect<A | HttpServerResponse.HttpServerResponse, GatewayError, R>) =>
  Effect.catchAll(effect, (error) => Effect.succeed(errorResponse(error)))

export const OpenAIHttp = HttpApiBuilder.group(GatewayApi, "openai", (handlers) =>
  Effect.gen(function*() {
    const chat = yield* ChatService
    const catalog = yield* ModelCatalog
    const images = yield* ImageFetcher
    const { config } = yield* GatewayConfig
    // More choices than sessions would wait on each other: n is capped by both.
    const maxChoices = Math.min(config.claude.max_choices, config.claude.max_concurrent_sessions)

    const modelObject = (id: string, created: number): Model => ({ id, object: "model", created, owned_by: "anthropic" })
    const created = Math.floor(Date.now() / 1000)

    return handlers
      .handle("listModels", () =>
        Effect.map(catalog.models, (models) => ({
          object: "list" as const,
          data: models.map((m) => modelObject(m.id, created))
        })))
      .handle("retrieveModel", ({ path }) =>
        recover(Effect.flatMap(catalog.models, (models) =>
          models.some((m) => m.id === path.id)
            ? Effect.succeed(modelObject(path.id, created))
            : Effect.fail(new ModelNotFound({ model: path.id, available: models.map((m) => m.id) })))))
      .handleRaw("chatCompletions", ({ request }) =>
        recover(Effect.gen(function*() {
          const body = yield* readJson(request, config.server.max_body_bytes)
          const chatRequest = yield* decodeChatRequest(body)
          const model = yield* catalog.resolve(chatRequest.model)
          const pending = yield* toTurnRequest(chatRequest, model, { maxChoices })
          const input = yield* Effect.forEach(
            pending.input,
            (block) => (block.type === "image_ref" ? images.load(block.url, block.param) : Effect.succeed(block)),
            { concurrency: 4 }
          )
          const turn = { ...pending, input }
          const meta = {
            id: `chatcmpl-${crypto.randomUUID().replaceAll("-", "")}`,
            created: Math.floor(Date.now() / 1000),
            model
          }
          // `n` independent runs, each on its own CLI (n is checked against the session limit).
          const runs = yield* Effect.forEach(
            Array.from({ length: chatRequest.n ?? 1 }),
            () => chat.turn(turn),
            { concurrency: "unbounded" }
          )

          if (chatRequest.stream !== true) {
            const results = yield* Effect.forEach(runs, (events) => aggregate(events, meta), { concurrency: "unbounded" })
            const { completion, costUsd } = mergeChoices(results)
            return HttpServerResponse.unsafeJson(completion, {
              headers: costUsd === undefined ? {} : { "x-claude-cost-usd": String(costUsd) }
            })
          }

          const peeled = yield* Effect.forEach(runs, (events) =>
            Effect.map(peelUntil(events, commits), ([head, rest]) => Stream.concat(Stream.fromChunk(head), rest)))
          const frames = sseFrames(peeled, meta, {
            includeUsage: chatRequest.stream_options?.include_usage === true,
            onError: (error) => toHttpError(error).body
          })
          const keepAlive = config.server.sse_keepalive_seconds
          const withKeepAlive = keepAlive === 0 ? frames : Stream.merge(
            frames,
            Stream.fromSchedule(Schedule.spaced(`${keepAlive} seconds`)).pipe(Stream.as(KEEP_ALIVE)),
            { haltStrategy: "left" }
          )
          return HttpServerResponse.stream(Stream.encodeText(withKeepAlive), {
            contentType: "text/event-stream",
            headers: SSE_HEADERS
          })
        })))
  }))
