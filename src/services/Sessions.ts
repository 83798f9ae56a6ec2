import { Deferred, Duration, Effect, ExecutionStrategy, Exit, identity, Option, Queue, Schedule, Schema, Scope, Stream } from "effect"
import * as crypto from "node:crypto"
import { type CliHandle, CliProcess, type ControlHandler } from "../cli/CliProcess.js"
import type { CliError, ControlRequestFailed } from "../cli/CliErrors.js"
import { CliTimeout } from "../cli/CliErrors.js"
import type { CliMessage, ControlRequest } from "../cli/Protocol.js"
import { GatewayConfig } from "../config/GatewayConfig.js"
import type { InputBlock, LaunchOptions } from "../domain/Turn.js"
import {
  type ClientMessage,
  ErrorEvent,
  Hello,
  ModelChanged,
  type PermissionMode,
  PermissionModeChanged,
  PermissionRequest,
  PermissionResolved,
  Pong,
  type ServerMessage,
  type SessionEventMessage,
  type SessionObject,
  type SessionState,
  StateChanged,
  TextDelta,
  ThinkingDelta,
  ToolResult,
  ToolUse,
  TurnResult,
  TurnStarted,
  type UserMessage
} from "../protocols/sessions/Messages.js"
import { type SessionRecord, type SessionSettings, SessionStore } from "../store/SessionStore.js"

/**
 * Interactive sessions: one CLI process per session (never the chat pool's), driven by clients
 * over WebSocket. The CLI runs with `--permission-prompt-tool stdio`: its `can_use_tool` control
 * requests become `permission_request` events that a client allows or denies (denied after
 * `sessions.permission_timeout_seconds`). Every event gets the session's next sequence number and
 * goes to every attached client and into a bounded replay buffer. User messages are taken one
 * turn at a time; interrupts, decisions and switches apply at once. The record is in SQLite, so a
 * session outlives a gateway restart: its CLI is then resumed (`--resume`) when a client attaches.
 */

export class SessionNotFound extends Schema.TaggedError<SessionNotFound>()("SessionNotFound", { id: Schema.String }) {
  override get message() {
    return `No session with id '${this.id}'.`
  }
}

/** `sessions.max_per_key` or `sessions.max_total` reached (429). */
export class SessionLimitReached extends Schema.TaggedError<SessionLimitReached>()("SessionLimitReached", {
  scope: Schema.Literal("key", "total"),
  limit: Schema.Number
}) {
  override get message() {
    return this.scope === "key"
      ? `This API key already has ${this.limit} open sessions (sessions.max_per_key): end one first.`
      : `The gateway already has ${this.limit} open sessions (sessions.max_total): retry later.`
  }
}

/** Server events with a sequence number. */
export type SessionEvent = SessionEventMessage

/** What a subscriber's queue carries: an event, or `null` when the gateway shuts down. */
export type Delivery = SessionEvent | null

/**
 * One attached client: its events (at most `sessions.replay_buffer` waiting), and a signal that
 * fires when it fell that far behind. It is then detached: a reconnect with `?after=N` replays
 * what it missed, which the replay buffer still holds at that moment.
 */
interface Subscriber {
  readonly queue: Queue.Queue<Delivery>
  readonly behind: Deferred.Deferred<void>
}

interface Decision {
  readonly decision: "allow" | "deny"
  readonly by: string
  readonly message?: string | undefined
  readonly updatedInput?: Readonly<Record<string, unknown>> | undefined
}

interface Process {
  readonly handle: CliHandle
  readonly scope: Scope.CloseableScope
  /** The CLI's `total_cost_usd` adds up over the process's turns: what it said last. */
  costSoFar: number
}

interface Live {
  record: SessionRecord
  readonly scope: Scope.CloseableScope
  readonly inbox: Queue.Queue<UserMessage>
  readonly subscribers: Set<Subscriber>
  readonly buffer: Array<SessionEvent>
  seq: number
  process: Process | undefined
  booting: boolean
  readonly boot: Effect.Semaphore
  /** Control writes (interrupt, set_model, …) one at a time. */
  readonly control: Effect.Semaphore
  readonly permissions: Map<string, Deferred.Deferred<Decision>>
  lastActivity: number
  turn: { readonly number: number; interrupted: boolean; readonly toolUses: Set<string> } | undefined
  ended: boolean
}

export interface Attachment {
  readonly hello: Hello
  readonly replay: ReadonlyArray<SessionEvent>
  /** Live events after the replay; undefined when the session has ended. */
  readonly events: Queue.Dequeue<Delivery> | undefined
  /**
   * Completes when this client fell `sessions.replay_buffer` events behind (it reads too slowly):
   * it gets no more events and should be told to reconnect with `?after=` its last seq.
   */
  readonly behind: Effect.Effect<void>
  /** Apply a client message; `reply` reaches only this client (pong, a refusal). */
  readonly send: (message: ClientMessage, reply: (message: ServerMessage) => Effect.Effect<void>) => Effect.Effect<void>
}

export interface CreateSettings {
  readonly owner: string
  readonly settings: SessionSettings
}

const PermissionAsk = Schema.Struct({
  tool_name: Schema.String,
  input: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { default: () => ({}) }),
  tool_use_id: Schema.optional(Schema.String),
  description: Schema.optional(Schema.String),
  decision_reason: Schema.optional(Schema.String)
})
const decodeAsk = Schema.decodeUnknownOption(PermissionAsk)

const ToolResultBlock = Schema.Struct({
  type: Schema.Literal("tool_result"),
  tool_use_id: Schema.String,
  content: Schema.optional(Schema.Unknown),
  is_error: Schema.optional(Schema.Boolean)
})
const decodeToolResult = Schema.decodeUnknownOption(ToolResultBlock)

const resultText = (content: unknown): string => {
  if (typeof content === "string") return content
  if (!Array.isArray(content)) return ""
  return content.map((block: unknown) =>
    typeof block === "object" && block !== null && "type" in block
      ? block.type === "text" && "text" in block && typeof block.text === "string" ? block.text : `[${String(block.type)}]`
      : ""
  ).join("")
}

const nowSeconds = () => Math.floor(Date.now() / 1000)

/** How long a CLI has to end a timed-out turn after the interrupt before it is killed. */
const TURN_KILL_GRACE_SECONDS = 10

const errorText = (error: CliError | ControlRequestFailed) => error.message

export class Sessions extends Effect.Service<Sessions>()("Sessions", {
  scoped: Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const cli = yield* CliProcess
    const store = yield* SessionStore
    const limits = config.sessions
    const sessions = new Map<string, Live>()
    const tickets = new Map<string, { readonly id: string; readonly owner: string; readonly expires: number }>()

    // ---------------------------------------------------------------------------------------
    // events and records

    const emit = (live: Live, make: (seq: number) => SessionEvent) => {
      const event = make(++live.seq)
      live.buffer.push(event)
      if (live.buffer.length > limits.replay_buffer) live.buffer.shift()
      for (const subscriber of live.subscribers) {
        Queue.unsafeOffer(subscriber.queue, event)
        // One more would push its oldest undelivered event out of the replay buffer.
        if (Option.getOrElse(subscriber.queue.unsafeSize(), () => 0) >= limits.replay_buffer) {
          live.subscribers.delete(subscriber)
          Deferred.unsafeDone(subscriber.behind, Exit.void)
        }
      }
    }
    const emitEffect = (live: Live, make: (seq: number) => SessionEvent) => Effect.sync(() => emit(live, make))

    const update = (live: Live, changes: Partial<SessionRecord>) => {
      live.record = { ...live.record, ...changes, updatedAt: nowSeconds() }
    }
    const save = (live: Live) => store.save({ ...live.record, lastSeq: live.seq })

    const setState = (live: Live, state: SessionState, reason?: string) =>
      Effect.suspend(() => {
        if (live.record.state === state || live.record.state === "ended") return Effect.void
        update(live, { state, ...(state === "ended" ? { endedReason: reason ?? null } : {}) })
        emit(live, (seq) => new StateChanged({ type: "state", seq, state, ...(reason === undefined ? {} : { reason }) }))
        return save(live)
      })

    const view = (record: SessionRecord, lastSeq: number): SessionObject => ({
      id: record.id,
      object: "session",
      created_at: record.createdAt,
      updated_at: record.updatedAt,
      state: record.state,
      model: record.settings.model,
      system_prompt: record.settings.systemPrompt,
      working_directory: record.settings.workingDirectory,
      permission_mode: record.settings.permissionMode,
      allowed_tools: record.settings.allowedTools,
      disallowed_tools: record.settings.disallowedTools,
      max_budget_usd: record.settings.maxBudgetUsd,
      cli_session_id: record.cliSessionId,
      usage: {
        input_tokens: record.inputTokens,
        output_tokens: record.outputTokens,
        cache_read_input_tokens: record.cacheReadTokens,
        cache_creation_input_tokens: record.cacheCreationTokens
      },
      cost_usd: record.costUsd,
      turns: record.turns,
      last_seq: lastSeq,
      websocket_url: `/v1/sessions/${record.id}/ws`
    })
    const liveView = (live: Live) => view(live.record, live.seq)

    // ---------------------------------------------------------------------------------------
    // permission prompts

    const resolvePermission = (live: Live, requestId: string, decision: Decision) =>
      Effect.suspend(() => {
        const waiter = live.permissions.get(requestId)
        return waiter === undefined ? Effect.succeed(false) : Deferred.succeed(waiter, decision)
      })

    const denyAll = (live: Live, by: string, message: string) =>
      Effect.forEach([...live.permissions.keys()], (id) => resolvePermission(live, id, { decision: "deny", by, message }), { discard: true })

    /** The CLI's control requests for this session: `can_use_tool` goes to the clients. */
    const prompts = (live: Live): ControlHandler => (request: ControlRequest) => {
      if (request.request.subtype !== "can_use_tool") {
        return Effect.fail(`the gateway does not handle ${request.request.subtype} requests`)
      }
      const ask = decodeAsk(request.request)
      if (Option.isNone(ask)) return Effect.fail("can_use_tool without a tool_name")
      const { decision_reason, description, input, tool_name, tool_use_id } = ask.value
      const requestId = request.request_id
      const timeout = limits.permission_timeout_seconds
      return Effect.gen(function*() {
        const waiter = yield* Deferred.make<Decision>()
        live.permissions.set(requestId, waiter)
        emit(live, (seq) =>
          new PermissionRequest({
            type: "permission_request",
            seq,
            request_id: requestId,
            tool_name,
            tool_use_id: tool_use_id ?? null,
            input,
            description: description ?? null,
            decision_reason: decision_reason ?? null,
            expires_at: Date.now() + timeout * 1000,
            timeout_seconds: timeout
          }))
        yield* setState(live, "waiting_for_permission")
        const timedOut: Decision = { decision: "deny", by: "timeout", message: `No decision within ${timeout} seconds.` }
        // Whoever completes the waiter first decides (a client, the timeout, an interrupt, the end).
        const decision = yield* Effect.race(
          Deferred.await(waiter),
          Effect.sleep(Duration.seconds(timeout)).pipe(
            Effect.zipRight(Deferred.succeed(waiter, timedOut)),
            Effect.zipRight(Deferred.await(waiter))
          )
        )
        live.permissions.delete(requestId)
        emit(live, (seq) =>
          new PermissionResolved({
            type: "permission_resolved",
            seq,
            request_id: requestId,
            decision: decision.decision,
            by: decision.by,
            ...(decision.message === undefined ? {} : { message: decision.message })
          }))
        if (live.permissions.size === 0 && live.turn !== undefined) yield* setState(live, "running")
        return decision.decision === "allow"
          ? { behavior: "allow", updatedInput: decision.updatedInput ?? input, ...(tool_use_id === undefined ? {} : { toolUseID: tool_use_id }) }
          : { behavior: "deny", message: decision.message ?? "Denied by the user.", ...(tool_use_id === undefined ? {} : { toolUseID: tool_use_id }) }
      }).pipe(Effect.ensuring(Effect.sync(() => live.permissions.delete(requestId))))
    }

    // ---------------------------------------------------------------------------------------
    // the CLI process

    const launchOf = (live: Live, resume: string | undefined): LaunchOptions => {
      const s = live.record.settings
      return {
        model: s.model,
        systemPrompt: s.systemPrompt ?? undefined,
        cwd: s.workingDirectory,
        resume,
        permissionMode: s.permissionMode,
        permissionPrompts: true,
        allowedTools: s.allowedTools,
        disallowedTools: s.disallowedTools,
        maxBudgetUsd: s.maxBudgetUsd ?? undefined
      }
    }

    /** The session's CLI, spawned (resuming its CLI session, if it has one) when it has none. */
    const ensureProcess = (live: Live): Effect.Effect<CliHandle, CliError | ControlRequestFailed> =>
      live.boot.withPermits(1)(Effect.gen(function*() {
        if (live.process !== undefined) {
          if (yield* live.process.handle.isRunning) return live.process.handle
          yield* Scope.close(live.process.scope, Exit.void)
          live.process = undefined
        }
        const cliSession = live.record.cliSessionId
        const resume = cliSession !== null && (yield* cli.hasSession(cliSession)) ? cliSession : undefined
        const scope = yield* Scope.fork(live.scope, ExecutionStrategy.sequential)
        const handle = yield* cli.spawn(launchOf(live, resume), prompts(live)).pipe(
          Scope.extend(scope),
          Effect.tap((handle) => handle.ready),
          // A CLI that never answers its initialize would hold the session's boot lock for good.
          Effect.timeoutFail({ duration: `${config.claude.timeout_seconds} seconds`, onTimeout: () => new CliTimeout({ seconds: config.claude.timeout_seconds }) }),
          Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
        )
        live.process = { handle, scope, costSoFar: 0 }
        // A boot is activity: the idle clock starts when the session is ready.
        live.lastActivity = Date.now()
        // A CLI that dies between turns is replaced (resumed) at the next message.
        yield* handle.exited.pipe(
          Effect.flatMap((exit) =>
            Effect.sync(() => {
              if (live.process?.handle !== handle) return
              live.process = undefined
              // Mid-turn the turn reports it; between turns the clients learn it here.
              if (live.turn === undefined) {
                emit(live, (seq) => new ErrorEvent({ type: "error", seq, code: "cli_error", message: `${exit.message} The next message resumes the session.` }))
              }
            })
          ),
          Effect.forkIn(scope)
        )
        if (live.turn === undefined && live.record.state === "starting") yield* setState(live, "idle")
        return handle
      }))

    /** Boot the CLI in the background (a new session, or one attached to after a restart). */
    const wake = (live: Live) =>
      Effect.suspend(() => {
        if (live.process !== undefined || live.booting || live.ended) return Effect.void
        live.booting = true
        return Effect.gen(function*() {
          if (live.turn === undefined) yield* setState(live, "starting")
          yield* ensureProcess(live).pipe(
            Effect.catchAll((error) =>
              Effect.zipRight(
                emitEffect(live, (seq) => new ErrorEvent({ type: "error", seq, code: "cli_error", message: errorText(error) })),
                live.turn === undefined ? setState(live, "idle") : Effect.void
              )
            )
          )
        }).pipe(Effect.ensuring(Effect.sync(() => (live.booting = false))), Effect.forkIn(live.scope), Effect.asVoid)
      })

    // ---------------------------------------------------------------------------------------
    // turns

    const onCliMessage = (live: Live, message: CliMessage) =>
      Effect.suspend(() => {
        const turn = live.turn
        if (turn === undefined) return Effect.void
        switch (message._tag) {
          case "SystemInit":
            if (live.record.cliSessionId !== message.session_id) {
              update(live, { cliSessionId: message.session_id })
              return save(live)
            }
            return Effect.void
          case "StreamEvent": {
            const event = message.event
            if (event.type !== "content_block_delta" || !("delta" in event)) return Effect.void
            const delta = event.delta
            if (delta.type === "text_delta" && "text" in delta) {
              emit(live, (seq) => new TextDelta({ type: "text_delta", seq, text: delta.text }))
            } else if (delta.type === "thinking_delta" && "thinking" in delta) {
              emit(live, (seq) => new ThinkingDelta({ type: "thinking_delta", seq, text: delta.thinking }))
            }
            return Effect.void
          }
          case "AssistantMessage":
            for (const block of message.message.content) {
              if (block.type !== "tool_use" || !("id" in block) || turn.toolUses.has(block.id)) continue
              turn.toolUses.add(block.id)
              emit(live, (seq) =>
                new ToolUse({
                  type: "tool_use",
                  seq,
                  id: block.id,
                  name: block.name,
                  input: block.input,
                  parent_tool_use_id: message.parent_tool_use_id ?? null
                }))
            }
            return Effect.void
          case "UserMessage": {
            const content = message.message.content
            if (typeof content === "string") return Effect.void
            for (const item of content) {
              const result = decodeToolResult(item)
              if (Option.isNone(result)) continue
              emit(live, (seq) =>
                new ToolResult({
                  type: "tool_result",
                  seq,
                  tool_use_id: result.value.tool_use_id,
                  content: resultText(result.value.content),
                  is_error: result.value.is_error ?? false
                }))
            }
            return Effect.void
          }
          case "ResultMessage": {
            const usage = {
              input_tokens: message.usage?.input_tokens ?? 0,
              output_tokens: message.usage?.output_tokens ?? 0,
              cache_read_input_tokens: message.usage?.cache_read_input_tokens ?? 0,
              cache_creation_input_tokens: message.usage?.cache_creation_input_tokens ?? 0
            }
            const process = live.process
            const total = message.total_cost_usd ?? 0
            const cost = Math.max(0, total - (process?.costSoFar ?? 0))
            if (process !== undefined) process.costSoFar = total
            const r = live.record
            update(live, {
              cliSessionId: message.session_id === "" ? r.cliSessionId : message.session_id,
              inputTokens: r.inputTokens + usage.input_tokens,
              outputTokens: r.outputTokens + usage.output_tokens,
              cacheReadTokens: r.cacheReadTokens + usage.cache_read_input_tokens,
              cacheCreationTokens: r.cacheCreationTokens + usage.cache_creation_input_tokens,
              costUsd: r.costUsd + cost,
              turns: turn.number
            })
            emit(live, (seq) =>
              new TurnResult({
                type: "result",
                seq,
                turn: turn.number,
                subtype: message.subtype,
                is_error: message.is_error,
                interrupted: turn.interrupted,
                text: message.result ?? null,
                usage,
                cost_usd: cost,
                total_cost_usd: live.record.costUsd,
                cli_session_id: message.session_id,
                duration_ms: message.duration_ms ?? null
              }))
            return save(live)
          }
          default:
            return Effect.void
        }
      })

    /**
     * `sessions.turn_timeout_seconds` after a turn starts: the clients are told, the turn is
     * interrupted as a client's interrupt would, and a CLI that still has not ended it after a
     * grace period is killed (the turn then ends with a cli_error; the next message resumes).
     */
    const watchdog = (live: Live) =>
      Effect.gen(function*() {
        const seconds = limits.turn_timeout_seconds
        yield* Effect.sleep(Duration.seconds(seconds))
        const turn = live.turn
        if (turn === undefined) return
        emit(live, (seq) =>
          new ErrorEvent({
            type: "error",
            seq,
            code: "turn_timeout",
            message: `Turn ${turn.number} ran longer than sessions.turn_timeout_seconds (${seconds} s): interrupted.`
          }))
        const process = live.process
        if (process === undefined) return
        turn.interrupted = true
        yield* live.control.withPermits(1)(
          denyAll(live, "timeout", "The turn timed out.").pipe(Effect.zipRight(process.handle.control("interrupt")))
        ).pipe(Effect.timeout(Duration.seconds(TURN_KILL_GRACE_SECONDS)), Effect.ignore)
        yield* Effect.sleep(Duration.seconds(TURN_KILL_GRACE_SECONDS))
        if (live.turn === turn && live.process === process) {
          live.process = undefined
          yield* Scope.close(process.scope, Exit.void)
        }
      })

    const runTurn = (live: Live, message: UserMessage) =>
      Effect.gen(function*() {
        const number = live.record.turns + 1
        live.turn = { number, interrupted: false, toolUses: new Set() }
        live.lastActivity = Date.now()
        const content: ReadonlyArray<InputBlock> = typeof message.content === "string"
          ? [{ type: "text", text: message.content }]
          : message.content
        yield* setState(live, "running")
        emit(live, (seq) => new TurnStarted({ type: "turn_started", seq, turn: number, client_id: message.client_id ?? null, content }))
        const outcome = yield* ensureProcess(live).pipe(
          // Watchers get to run between the CLI's messages: a burst of stdout lines read at once is
          // not a client falling behind (each message's events are in its queue, at most a few).
          Effect.flatMap((handle) => Stream.runForEach(handle.turn(content), (m) => Effect.zipRight(onCliMessage(live, m), Effect.yieldNow()))),
          Effect.either,
          limits.turn_timeout_seconds === 0
            ? identity
            : (run) => Effect.scoped(Effect.zipRight(Effect.forkScoped(watchdog(live)), run))
        )
        if (outcome._tag === "Left") {
          emit(live, (seq) => new ErrorEvent({ type: "error", seq, code: "cli_error", message: errorText(outcome.left) }))
          // The next message starts (resumes) a new CLI.
          const process = live.process
          if (process !== undefined && !(yield* process.handle.isRunning)) {
            live.process = undefined
            yield* Scope.close(process.scope, Exit.void)
          }
        }
        yield* denyAll(live, "ended", "The turn ended.")
        live.turn = undefined
        live.lastActivity = Date.now()
        yield* setState(live, "idle")
        yield* save(live)
      })

    // ---------------------------------------------------------------------------------------
    // client messages

    /** A switch waits for a CLI that is booting (it would start with the old setting), and for other switches. */
    const switching = <A, E>(live: Live, effect: Effect.Effect<A, E>) =>
      live.control.withPermits(1)(live.boot.withPermits(1)(effect))

    const dispatch = (live: Live, message: ClientMessage, reply: (message: ServerMessage) => Effect.Effect<void>): Effect.Effect<void> =>
      Effect.suspend(() => {
        live.lastActivity = Date.now()
        const refuse = (code: string, text: string) => reply(new ErrorEvent({ type: "error", code, message: text }))
        if (live.ended) return refuse("session_ended", "The session has ended.")
        switch (message.type) {
          case "ping":
            return reply(new Pong({ type: "pong" }))
          case "user_message":
            // A full inbox refuses rather than grows: the sender learns it and can send later.
            return Queue.unsafeOffer(live.inbox, message)
              ? Effect.void
              : refuse("inbox_full", `${limits.max_queued_messages} messages are already waiting for their turn (sessions.max_queued_messages): send this one after a turn ends.`)
          case "permission_decision":
            return Effect.flatMap(
              resolvePermission(live, message.request_id, {
                decision: message.decision,
                by: "client",
                message: message.message,
                updatedInput: message.decision === "allow" ? message.updated_input : undefined
              }),
              (taken) => taken ? Effect.void : refuse("unknown_request", `No pending permission request '${message.request_id}'.`)
            )
          case "interrupt": {
            const turn = live.turn
            const process = live.process
            if (turn === undefined || process === undefined) return refuse("not_running", "No turn is running.")
            turn.interrupted = true
            return live.control.withPermits(1)(
              denyAll(live, "interrupt", "Interrupted by the user.").pipe(
                Effect.zipRight(process.handle.control("interrupt")),
                Effect.catchAll((error) => refuse("cli_error", errorText(error)))
              )
            )
          }
          case "set_model":
            return switching(live, Effect.gen(function*() {
              const process = live.process
              if (process !== undefined) {
                const failed = yield* process.handle.control("set_model", { model: message.model }).pipe(Effect.flip, Effect.option)
                if (Option.isSome(failed)) return yield* refuse("cli_error", errorText(failed.value))
              }
              update(live, { settings: { ...live.record.settings, model: message.model } })
              emit(live, (seq) => new ModelChanged({ type: "model_changed", seq, model: message.model }))
              yield* save(live)
            }))
          case "set_permission_mode":
            if (!limits.permission_modes.includes(message.mode)) {
              return refuse("not_allowed", `Permission mode '${message.mode}' is not allowed here (sessions.permission_modes: ${limits.permission_modes.join(", ")}).`)
            }
            return switching(live, Effect.gen(function*() {
              const process = live.process
              if (process !== undefined) {
                const failed = yield* process.handle.control("set_permission_mode", { mode: message.mode }).pipe(Effect.flip, Effect.option)
                if (Option.isSome(failed)) return yield* refuse("cli_error", errorText(failed.value))
              }
              const mode: PermissionMode = message.mode
              update(live, { settings: { ...live.record.settings, permissionMode: mode } })
              emit(live, (seq) => new PermissionModeChanged({ type: "permission_mode_changed", seq, mode }))
              yield* save(live)
            }))
        }
      })

    // ---------------------------------------------------------------------------------------
    // life

    const open = (record: SessionRecord) =>
      Effect.gen(function*() {
        const live: Live = {
          record,
          scope: yield* Scope.make(),
          inbox: yield* Queue.bounded<UserMessage>(limits.max_queued_messages),
          subscribers: new Set(),
          buffer: [],
          seq: record.lastSeq,
          process: undefined,
          booting: false,
          boot: yield* Effect.makeSemaphore(1),
          control: yield* Effect.makeSemaphore(1),
          permissions: new Map(),
          lastActivity: Date.now(),
          turn: undefined,
          ended: false
        }
        // One turn at a time, in the order the messages came.
        yield* Effect.forkIn(Effect.forever(Effect.flatMap(Queue.take(live.inbox), (message) => runTurn(live, message))), live.scope)
        return live
      })

    const end = (live: Live, reason: string) =>
      Effect.gen(function*() {
        if (live.ended) return
        live.ended = true
        sessions.delete(live.record.id)
        yield* denyAll(live, "ended", "The session has ended.")
        yield* setState(live, "ended", reason)
        yield* Scope.close(live.scope, Exit.void)
      })

    // After a restart, sessions that had not ended are idle, without a process, until a client attaches.
    for (const record of yield* store.open) {
      const live = yield* open({ ...record, state: "idle" })
      sessions.set(record.id, live)
      yield* save(live)
    }

    // On shutdown every CLI goes, but the sessions stay open: a restarted gateway resumes them.
    yield* Effect.addFinalizer(() =>
      Effect.forEach([...sessions.values()], (live) =>
        Effect.gen(function*() {
          for (const subscriber of live.subscribers) Queue.unsafeOffer(subscriber.queue, null)
          if (live.record.state !== "idle") update(live, { state: "idle" })
          yield* save(live)
          yield* Scope.close(live.scope, Exit.void)
        }), { discard: true, concurrency: "unbounded" }))

    // Idle sessions end.
    const idleMs = limits.idle_timeout_minutes * 60_000
    yield* Effect.forkScoped(
      Effect.suspend(() => {
        const now = Date.now()
        const idle = [...sessions.values()].filter((live) =>
          live.turn === undefined && live.permissions.size === 0 && now - live.lastActivity >= idleMs
        )
        return Effect.forEach(idle, (live) => end(live, "idle_timeout"), { discard: true })
      }).pipe(Effect.repeat(Schedule.spaced(Duration.millis(Math.min(30_000, idleMs / 4)))))
    )

    /** A session of this owner's (another key's is as good as unknown). */
    const find = (id: string, owner: string) =>
      Effect.suspend(() => {
        const live = sessions.get(id)
        return live !== undefined && live.record.owner === owner ? Effect.succeed(live) : Effect.fail(new SessionNotFound({ id }))
      })

    const create = ({ owner, settings }: CreateSettings) =>
      Effect.gen(function*() {
        // Counted and claimed in one step: concurrent creations cannot pass the caps together.
        const all = [...sessions.values()]
        if (all.filter((live) => live.record.owner === owner).length >= limits.max_per_key) {
          return yield* new SessionLimitReached({ scope: "key", limit: limits.max_per_key })
        }
        if (all.length >= limits.max_total) return yield* new SessionLimitReached({ scope: "total", limit: limits.max_total })
        const at = nowSeconds()
        const record: SessionRecord = {
          id: `sess_${crypto.randomUUID().replaceAll("-", "")}`,
          owner,
          createdAt: at,
          updatedAt: at,
          state: "starting",
          endedReason: null,
          settings,
          cliSessionId: null,
          inputTokens: 0,
          outputTokens: 0,
          cacheReadTokens: 0,
          cacheCreationTokens: 0,
          costUsd: 0,
          turns: 0,
          lastSeq: 0
        }
        const live = yield* open(record)
        sessions.set(record.id, live)
        yield* store.insert(record)
        live.booting = true
        yield* ensureProcess(live).pipe(
          Effect.catchAll((error) =>
            Effect.zipRight(
              emitEffect(live, (seq) => new ErrorEvent({ type: "error", seq, code: "cli_error", message: errorText(error) })),
              setState(live, "idle")
            )
          ),
          Effect.ensuring(Effect.sync(() => (live.booting = false))),
          Effect.forkIn(live.scope)
        )
        return liveView(live)
      })

    const get = (id: string, owner: string) =>
      Effect.gen(function*() {
        const live = sessions.get(id)
        if (live !== undefined) return live.record.owner === owner ? liveView(live) : yield* new SessionNotFound({ id })
        const record = yield* store.get(id)
        if (Option.isNone(record) || record.value.owner !== owner) return yield* new SessionNotFound({ id })
        return view(record.value, record.value.lastSeq)
      })

    const list = (owner: string) =>
      Effect.map(store.list(owner), (records) =>
        records.map((record) => {
          const live = sessions.get(record.id)
          return live === undefined ? view(record, record.lastSeq) : liveView(live)
        }))

    /** End the session (its CLI is killed) and forget it. */
    const remove = (id: string, owner: string) =>
      Effect.gen(function*() {
        const live = sessions.get(id)
        if (live !== undefined && live.record.owner === owner) {
          yield* end(live, "deleted")
        } else {
          const record = yield* store.get(id)
          if (Option.isNone(record) || record.value.owner !== owner) return yield* new SessionNotFound({ id })
        }
        yield* store.remove(id)
      })

    const ticket = (id: string, owner: string) =>
      Effect.gen(function*() {
        yield* find(id, owner)
        const now = Date.now()
        for (const [key, entry] of tickets) if (entry.expires <= now) tickets.delete(key)
        const value = `tk_${crypto.randomBytes(24).toString("base64url")}`
        const expires = now + limits.ticket_ttl_seconds * 1000
        tickets.set(value, { id, owner, expires })
        return { ticket: value, expiresAt: Math.floor(expires / 1000) }
      })

    /** The owner a ticket stands for, once (undefined: unknown, used, expired or for another session). */
    const redeem = (id: string, value: string) =>
      Effect.sync(() => {
        const entry = tickets.get(value)
        if (entry === undefined) return undefined
        tickets.delete(value)
        return entry.id === id && entry.expires > Date.now() ? entry.owner : undefined
      })

    /** Attach a client: the session now, what it missed after `after`, then every new event. */
    const attach = (id: string, owner: string, after: number | undefined) =>
      Effect.gen(function*() {
        const live = sessions.get(id)
        if (live === undefined || live.record.owner !== owner) {
          const record = yield* store.get(id)
          if (Option.isNone(record) || record.value.owner !== owner) return yield* new SessionNotFound({ id })
          const ended = view(record.value, record.value.lastSeq)
          return {
            hello: new Hello({ type: "hello", session: ended, replay_from: ended.last_seq, truncated: after !== undefined && after < ended.last_seq }),
            replay: [],
            events: undefined,
            behind: Effect.never,
            send: (_message, reply) => reply(new ErrorEvent({ type: "error", code: "session_ended", message: "The session has ended." }))
          } satisfies Attachment
        }
        // One slot more than a subscriber may fall behind: the shutdown's null always fits.
        const subscriber: Subscriber = { queue: yield* Queue.bounded<Delivery>(limits.replay_buffer + 1), behind: yield* Deferred.make<void>() }
        yield* Effect.addFinalizer(() => Effect.sync(() => live.subscribers.delete(subscriber)))
        // Subscribed and snapshotted in one step: every event is either replayed or queued, once.
        const snapshot = yield* Effect.sync(() => {
          live.subscribers.add(subscriber)
          const from = after ?? live.seq
          const replay = live.buffer.filter((event) => (event.seq ?? 0) > from)
          const oldest = live.buffer[0]?.seq ?? live.seq + 1
          return {
            hello: new Hello({ type: "hello", session: liveView(live), replay_from: from, truncated: from < live.seq && oldest > from + 1 }),
            replay
          }
        })
        live.lastActivity = Date.now()
        yield* wake(live)
        return {
          ...snapshot,
          events: subscriber.queue,
          behind: Deferred.await(subscriber.behind),
          send: (message, reply) => dispatch(live, message, reply)
        } satisfies Attachment
      })

    /**
     * Apply a client message without attaching (the RPC calls): the refusal a socket client would
     * get as an `error` frame is returned instead (undefined: taken).
     */
    const send = (id: string, owner: string, message: ClientMessage) =>
      Effect.gen(function*() {
        const live = sessions.get(id)
        if (live === undefined || live.record.owner !== owner) {
          const record = yield* store.get(id)
          if (Option.isNone(record) || record.value.owner !== owner) return yield* new SessionNotFound({ id })
          return new ErrorEvent({ type: "error", code: "session_ended", message: "The session has ended." })
        }
        let refusal: ErrorEvent | undefined
        yield* dispatch(live, message, (reply) =>
          Effect.sync(() => {
            if (reply.type === "error") refusal = reply
          }))
        return refusal
      })

    return { create, get, list, remove, ticket, redeem, attach, send } as const
  }),
  dependencies: [SessionStore.Default, CliProcess.Default]
}) {}
