import { Headers, HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { Rpc, RpcServer } from "@effect/rpc"
import type { FromServerEncoded } from "@effect/rpc/RpcMessage"
import { Cause, Chunk, Context, Effect, Either, Exit, Layer, Option, Redacted, Schema, Scope, Stream, Tracer } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { TreeFormatter } from "effect/ParseResult"
import type { TurnError } from "../../cli/TurnEvents.js"
import type { TurnEvent } from "../../domain/Turn.js"
import * as TurnStream from "../../domain/TurnStream.js"
import { GatewayConfig } from "../../config/GatewayConfig.js"
import { ConversationNotFound as DomainConversationNotFound, InvalidRequest as DomainInvalidRequest } from "../../domain/errors.js"
import { provideOnOwnFiber } from "../../http/direct.js"
import { errorResponse } from "../../http/errors.js"
import { offeredKey } from "../../http/request.js"
import { callerOf, REFUSED } from "../../http/auth.js"
import { Admission } from "../../services/Admission.js"
import { ChatService } from "../../services/ChatService.js"
import { Conversations } from "../../services/Conversations.js"
import { ModelCatalog } from "../../services/ModelCatalog.js"
import { Pool } from "../../services/Pool.js"
import { healthReport } from "../../services/Health.js"
import { ToolBridge } from "../../services/ToolBridge.js"
import { workingDirectory } from "../../services/Workspace.js"
import type { Conversation as StoredConversation } from "../../store/ConversationStore.js"
import { Authentication, Caller, ChatError, ChatEvent, ChatRequest, GatewayRpcs, Unauthorized } from "./Api.js"
import { checkSystemPrompt } from "../openai/translate.js"
import { toChatEvent, toTurnRequest, toWireError } from "./translate.js"
import { sessionHandlers } from "./sessions.js"
import * as HttpProtocol from "./HttpProtocol.js"
import * as SocketProtocol from "./SocketProtocol.js"

/** The RPC handlers over ChatService, Conversations and ModelCatalog, and their mount at /rpc. */

/**
 * The key is checked again per call (the HTTP middleware already checked the transport's): a call
 * may carry headers of its own, and only a key that is valid decides whose conversations it sees.
 */
const callerFor = Effect.map(GatewayConfig, ({ config }) => {
  const keys = config.server.api_keys.map((key) => Redacted.make(key))
  return (headers: Headers.Headers) => callerOf(keys, offeredKey(headers))
})

export const AuthenticationLive = Layer.effect(
  Authentication,
  Effect.map(callerFor, (caller) =>
    Authentication.of(({ headers }) => {
      const found = caller(headers)
      return found === undefined ? Effect.fail(new Unauthorized({ message: REFUSED })) : Effect.succeed(found)
    }))
)

const render = (conversation: StoredConversation, live: ReadonlySet<string>) => ({
  id: conversation.id,
  createdAt: conversation.createdAt,
  updatedAt: conversation.updatedAt,
  model: conversation.model,
  system: conversation.systemPrompt,
  workingDirectory: conversation.workingDirectory,
  metadata: conversation.metadata,
  live: live.has(conversation.id),
  usage: { promptTokens: conversation.promptTokens, completionTokens: conversation.completionTokens },
  costUsd: conversation.costUsd
})

/** A call's turn: its conversation (announced first, as `Accepted`) and its events' pull. */
interface ChatTurn {
  readonly conversationId: string | undefined
  readonly events: Effect.Effect<Chunk.Chunk<TurnEvent>, Option.Option<TurnError>>
}

/** Opens a Chat call's turn (for the RPC handler and the direct path). */
class ChatTurns extends Context.Tag("claude-code-api/rpc/ChatTurns")<ChatTurns, {
  /** The turn's resources go to the Scope in the context, which the caller closes with `release`. */
  readonly open: (request: ChatRequest, owner: string) => Effect.Effect<ChatTurn, ChatError, Scope.Scope>
  /**
   * Closes a turn's scope after its call has answered, off the call's path: releasing the turn
   * (settling the CLI, keeping it for the conversation) runs after the last event, as after an
   * HTTP response's last byte, so that the client does not wait for it. With an interruption
   * (the client went away) ChatService ends the turn's CLI exactly as for an HTTP client that
   * disconnects.
   */
  readonly release: (turnScope: Scope.CloseableScope, exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
}>() {}

/**
 * Resumes in a later macrotask. A call's last writes reach the socket in a `process.nextTick`
 * (a Readable piped to the response; a WebSocket send), which runs only once every microtask
 * queued before it has: a release forked as the call ends would otherwise run whole (~0.5–1 ms)
 * between the call's last event and the socket (bench/README.md, RPC rows).
 */
const nextMacrotask = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

const ChatTurnsLive = Layer.scoped(ChatTurns, Effect.gen(function*() {
  const chat = yield* ChatService
  const catalog = yield* ModelCatalog
  const { config } = yield* GatewayConfig
  // Where turns are released after their call has answered (closed with the server).
  const background = yield* Effect.scope
  return {
    open: (request, owner) =>
      Effect.flatMap(catalog.resolve(request.model ?? config.claude.default_model), (model) =>
        Effect.flatMap(toTurnRequest(request, model, owner), (turn) =>
          Effect.flatMap(chat.turn(turn), (result) =>
            Effect.map(TurnStream.toPull(result.events), (events) => ({ conversationId: result.conversationId, events })))))
        .pipe(Effect.mapError(toWireError)),
    // Uninterruptible once forked: a gateway that shuts down still releases the turns it answered.
    release: (turnScope, exit) =>
      Effect.asVoid(Effect.forkIn(Effect.uninterruptible(Effect.zipRight(nextMacrotask, Scope.close(turnScope, exit))), background))
  }
}))

export const GatewayRpcsLive = GatewayRpcs.toLayer(Effect.gen(function*() {
  const turns = yield* ChatTurns
  const catalog = yield* ModelCatalog
  const conversations = yield* Conversations
  const bridge = yield* ToolBridge
  const { config } = yield* GatewayConfig
  const context = yield* Effect.context<ModelCatalog | Pool | Admission | ToolBridge | Conversations | GatewayConfig>()
  const store = conversations.store

  /** A conversation of this caller's (another key's is as good as unknown). */
  const find = (id: string, owner: string) =>
    Effect.flatMap(store.get(id), (found) =>
      Option.match(Option.filter(found, (conversation) => conversation.owner === owner), {
        onNone: () => Effect.fail(new DomainConversationNotFound({ id })),
        onSome: Effect.succeed
      }))

  const sessionCalls = yield* sessionHandlers

  return {
    Chat: (request) =>
      Stream.unwrapScoped(Effect.flatMap(Caller, ({ owner }) =>
        Effect.flatMap(Effect.acquireRelease(Scope.make(), turns.release), (turnScope) =>
          Effect.map(Scope.extend(turns.open(request, owner), turnScope), ({ conversationId, events }) => {
            const rest = Stream.repeatEffectChunkOption(Effect.mapBoth(events, { onSuccess: Chunk.map(toChatEvent), onFailure: Option.map(toWireError) }))
            return conversationId === undefined ? rest : Stream.concat(Stream.succeed<ChatEvent>({ _tag: "Accepted", conversationId }), rest)
          })))),

    CreateConversation: (payload) =>
      Effect.gen(function*() {
        const { owner } = yield* Caller
        if (payload.model !== undefined) yield* catalog.resolve(payload.model)
        if (payload.system !== undefined) yield* checkSystemPrompt(payload.system, "system")
        const conversation = yield* store.create({
          owner,
          model: payload.model,
          systemPrompt: payload.system,
          workingDirectory: payload.workingDirectory === undefined
            ? undefined
            : yield* workingDirectory(config.claude.workspace, payload.workingDirectory, "workingDirectory"),
          metadata: payload.metadata
        })
        return render(conversation, new Set())
      }).pipe(Effect.mapError(toWireError)),

    ListConversations: ({ after, limit = 20 }) =>
      Effect.gen(function*() {
        const { owner } = yield* Caller
        if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
          return yield* new DomainInvalidRequest({
            message: "Invalid value for 'limit': expected an integer from 1 to 100.",
            param: "limit",
            code: "invalid_value"
          })
        }
        if (after !== undefined) yield* find(after, owner)
        const page = yield* store.list({ owner, limit, after })
        const live = yield* conversations.liveIds
        return { data: page.data.map((conversation) => render(conversation, live)), hasMore: page.hasMore }
      }).pipe(Effect.mapError(toWireError)),

    GetConversation: ({ id }) =>
      Effect.gen(function*() {
        const { owner } = yield* Caller
        const conversation = yield* find(id, owner)
        const messages = yield* store.messages(id)
        return {
          ...render(conversation, yield* conversations.liveIds),
          messages: messages.map((message) => ({
            role: message.role,
            content: message.content,
            toolCalls: message.tool_calls ?? [],
            toolCallId: message.tool_call_id ?? null
          }))
        }
      }).pipe(Effect.mapError(toWireError)),

    DeleteConversation: ({ id }) =>
      Effect.scoped(Effect.gen(function*() {
        const { owner } = yield* Caller
        yield* find(id, owner)
        // After the conversation's running turn, if any; its parked turns end with it.
        yield* conversations.lock(id)
        yield* bridge.endParked(id)
        if (!(yield* conversations.remove(id))) return yield* new DomainConversationNotFound({ id })
      })).pipe(Effect.mapError(toWireError)),

    ListModels: () => catalog.models,

    Health: () => Effect.map(Effect.provide(healthReport, context), ({ body }) => body),

    ...sessionCalls
  }
}))

/** What `POST /rpc` answers for a body over `server.max_body_bytes` (unread) or one that cannot be read. */
const bodyLimits = (maxBytes: number) => ({
  maxBytes,
  // The rest of the body is never read: the connection goes with the answer, as for the chat routes' 413.
  tooLarge: HttpServerResponse.setHeader(
    errorResponse(
      new DomainInvalidRequest({
        message: `The RPC request body is larger than server.max_body_bytes (${maxBytes} bytes).`,
        param: null,
        code: "request_too_large"
      })
    ),
    "connection",
    "close"
  ),
  unreadable: errorResponse
})

/**
 * `Chat` alone in an HTTP request, answered without the RPC server: the same messages (its events'
 * chunks, then its Exit, or a Defect), span, key check and payload check as through RpcServer, but
 * none of its per-call client, fiber, routing, middleware and effectful encoding (~N run-loop steps
 * of a later turn; bench/README.md, RPC rows).
 */
/**
 * A chunk of a direct call over WebSocket says that it needs no Ack: the client acks only the
 * chunks without it (RpcServer's, an older gateway's, which wait for each Ack before the next).
 */
type UnackedChunk = Extract<FromServerEncoded, { readonly _tag: "Chunk" }> & { readonly ack: false }

const directChat = (options: { readonly websocket: boolean }) => Effect.gen(function*() {
  const turns = yield* ChatTurns
  const caller = yield* callerFor
  const rpc = GatewayRpcs.requests.get("Chat")!
  const decodePayload = Schema.decodeUnknownEither(ChatRequest)
  const encodeChunk = Schema.encodeSync(Schema.Array(ChatEvent))
  const encodeExit = Schema.encodeSync(Rpc.exitSchema(rpc)) as (exit: Exit.Exit<void, ChatError | Unauthorized>) => Schema.ExitEncoded<unknown, unknown, unknown>
  const encodeDefect = Schema.encodeSync(Schema.Defect)
  // Every call that succeeds ends with the same Exit.
  const encodedVoid = encodeExit(Exit.void)
  const call: HttpProtocol.DirectCall = (message, write) => {
    if (message.tag !== "Chat") return undefined
    const requestId = message.id
    const exit = (exit: Exit.Exit<void, ChatError | Unauthorized>) => write({ _tag: "Exit", requestId, exit: encodeExit(exit) })
    const exitVoid = { _tag: "Exit", requestId, exit: encodedVoid } as const
    const payload = decodePayload(message.payload)
    // As RpcServer answers a payload that does not decode: the call dies with the parse error's text.
    if (Either.isLeft(payload)) return exit(Exit.die(TreeFormatter.formatErrorSync(payload.left)))
    const found = caller(Headers.fromInput(message.headers))
    if (found === undefined) return exit(Exit.fail(new Unauthorized({ message: REFUSED })))
    const chunk = (values: ReadonlyArray<ChatEvent>) => {
      const encoded = encodeChunk(values) as NonEmptyReadonlyArray<unknown>
      if (!options.websocket) return write({ _tag: "Chunk", requestId, values: encoded })
      const unacked: UnackedChunk = { _tag: "Chunk", requestId, values: encoded, ack: false }
      return write(unacked)
    }
    // Set once the call's Exit is out: nothing is written after it.
    let exited = false
    // The events as they come, straight from the turn's pull (a few run-loop steps per chunk).
    const loop = (events: ChatTurn["events"]): Effect.Effect<void, ChatError> =>
      Effect.matchEffect(events, {
        onFailure: Option.match({ onNone: () => Effect.void, onSome: (error) => Effect.fail(toWireError(error)) }),
        onSuccess: (turnEvents) => {
          const values = Chunk.toReadonlyArray(Chunk.map(turnEvents, toChatEvent))
          if (values[values.length - 1]?._tag !== "Finished") return Effect.flatMap(chunk(values), () => loop(events))
          // `Finished` ends a turn's events (ChatService records the turn before it hands it on):
          // its Exit goes out with it, and the rest of the call (the end of the pull, the span, the
          // release) waits for a later macrotask, past the socket write (~0.15 ms of the turn,
          // bench/README.md, "Typed RPC ÷ openai"). Uninterruptible: a client that leaves once it
          // has the Exit has had a whole turn, whose CLI stays for the conversation.
          exited = true
          return Effect.zipRight(chunk(values), Effect.zipRight(write(exitVoid), Effect.uninterruptible(Effect.zipRight(nextMacrotask, Effect.ignore(events)))))
        }
      })
    const answer = ({ conversationId, events }: ChatTurn) =>
      conversationId === undefined ? loop(events) : Effect.flatMap(chunk([{ _tag: "Accepted", conversationId }]), () => loop(events))
    // Like RpcServer: the client's span is the parent where the transport carries it (WebSocket).
    const parent = options.websocket && message.spanId !== undefined
      ? Tracer.externalSpan({ traceId: message.traceId ?? "", spanId: message.spanId, sampled: message.sampled ?? true })
      : undefined
    const turn = Effect.useSpan("RpcServer.Chat", { captureStackTrace: false, attributes: { requestId }, parent }, (span) =>
      Effect.flatMap(Scope.make(), (turnScope) =>
        Effect.onExit(
          // Each call runs on a fiber of its own to its end (both transports fork it): the span and
          // the turn's scope are added to that fiber's context, not provided through `locally`s
          // (withSpan, Effect.scoped, Scope.extend: ~40 run-loop steps per call).
          provideOnOwnFiber(Tracer.ParentSpan, span, provideOnOwnFiber(Scope.Scope, turnScope, Effect.flatMap(turns.open(payload.right, found.owner), answer))),
          (exit) => turns.release(turnScope, exit)
        )))
    return Effect.matchCauseEffect(turn, {
      onSuccess: () => (exited ? Effect.void : write(exitVoid)),
      // A defect is fatal to the call's client, as RpcServer sends it (not for an interruption).
      onFailure: (cause) =>
        exited ? Effect.void : Cause.isDie(cause) && !Cause.isInterrupted(cause)
          ? write({ _tag: "Defect", defect: encodeDefect(Cause.squash(cause)) })
          : exit(Exit.failCause(cause))
    })
  }
  return call
})

/** The apps of /rpc: POST is the HTTP transport (NDJSON), GET upgrades to the WebSocket transport. */
export class RpcApps extends Context.Tag("claude-code-api/rpc/RpcApps")<RpcApps, {
  readonly http: HttpApp.Default<never, Scope.Scope>
  readonly websocket: HttpApp.Default<never, Scope.Scope>
}>() {}

/**
 * One RPC server per transport, both over the same handlers, running as long as the layer. NDJSON
 * over HTTP, so that streamed events are written as they come; JSON frames over WebSocket.
 */
export const RpcAppsLive = Layer.scoped(
  RpcApps,
  Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const http = yield* HttpProtocol.make(yield* directChat({ websocket: false }), bodyLimits(config.server.max_body_bytes))
    const websocket = yield* SocketProtocol.make(yield* directChat({ websocket: true }))
    for (const protocol of [http.protocol, websocket.protocol]) {
      yield* RpcServer.make(GatewayRpcs).pipe(
        Effect.provideService(RpcServer.Protocol, protocol),
        Effect.interruptible,
        Effect.forkScoped
      )
    }
    return { http: http.httpApp, websocket: websocket.httpApp }
  })
).pipe(Layer.provide(Layer.merge(GatewayRpcsLive, AuthenticationLive).pipe(Layer.provideMerge(ChatTurnsLive))))

/**
 * /rpc on the HttpApi's router. The gateway's server answers `POST /rpc` from its fast path
 * (src/http/direct.ts) before the router; the route stays for a request without a valid key, which
 * the router's middleware refuses.
 */
export const RpcLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const apps = yield* RpcApps
    yield* router.post("/rpc", apps.http)
    yield* router.get("/rpc", apps.websocket)
  })
)
