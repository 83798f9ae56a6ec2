import { Chunk, Duration, Effect, ExecutionStrategy, Exit, Option, Scope, Stream } from "effect"
import { CliTimeout } from "../cli/CliErrors.js"
import type { CliError } from "../cli/CliErrors.js"
import type { CliHandle } from "../cli/CliProcess.js"
import { CliProcess, launchSignature } from "../cli/CliProcess.js"
import { type TurnError, turnEventPull } from "../cli/TurnEvents.js"
import * as TurnStream from "../domain/TurnStream.js"
import { Admission, type Overloaded } from "./Admission.js"
import { Cache } from "./Cache.js"
import type { Conversation } from "../store/ConversationStore.js"
import { Conversations, type OwnedProcess, type Resolved } from "./Conversations.js"
import type { ConversationNotFound } from "../domain/errors.js"
import { GatewayConfig } from "../config/GatewayConfig.js"
import { Pool } from "./Pool.js"
import { cliTurnProbe, conversationCreated } from "./Telemetry.js"
import { applyStop } from "../domain/StopSequences.js"
import { structuredOnly } from "../domain/StructuredOutput.js"
import { type LiveTurn, ToolBridge } from "./ToolBridge.js"
import { fate, type ProcessEvent, type ProcessState, step } from "./ProcessOwnership.js"
import { fromHistory } from "../domain/Transcript.js"
import { type LaunchOptions, type ToolCall, TOOL_PREFIX, type TurnEvent, type TurnRequest } from "../domain/Turn.js"

/**
 * Orchestrates one turn: the conversation it continues (Conversations), one request at a time
 * per conversation, a session slot (Admission), a CLI process (the conversation's live one, a
 * resumed session, or a pool standby), the input written to it, and the CLI's output as
 * TurnEvents. The process outlives the request when the turn is parked for the client's tool
 * calls (ToolBridge) or when it stays alive for the conversation's next turn; otherwise it goes
 * back to the pool once its turn is settled, or is killed (timeout, a turn that would not stop).
 */

export interface TurnResult {
  readonly events: Stream.Stream<TurnEvent, TurnError>
  /** The conversation the turn belongs to (absent for the runs of `n` > 1). */
  readonly conversationId: string | undefined
}

/** A chunk of a live turn's events up to and including the end of this request's part; the rest stays buffered. */
const partOf = (turn: LiveTurn, ended: { done: boolean }, chunk: Chunk.Chunk<TurnEvent>) => {
  const end = Chunk.findFirstIndex(chunk, (event) => event._tag === "Finished")
  if (Option.isNone(end)) return chunk
  ended.done = true
  turn.buffer = Chunk.drop(chunk, end.value + 1)
  return Chunk.take(chunk, end.value + 1)
}

/** The next events of a live turn, up to and including the end of this request's part. */
const nextPart = (turn: LiveTurn, ended: { done: boolean }) =>
  Effect.suspend((): Effect.Effect<Chunk.Chunk<TurnEvent>, Option.Option<TurnError>> => {
    if (ended.done) return Effect.fail(Option.none())
    const buffered = turn.buffer
    turn.buffer = Chunk.empty()
    return Chunk.isEmpty(buffered)
      ? Effect.map(turn.pull, (chunk) => partOf(turn, ended, chunk))
      : Effect.succeed(partOf(turn, ended, buffered))
  })

/** A conversation's own settings fill in what the request leaves open. */
const withConversation = (launch: LaunchOptions, conversation: Conversation): LaunchOptions => ({
  ...launch,
  systemPrompt: launch.systemPrompt ?? conversation.systemPrompt ?? undefined,
  ...(conversation.workingDirectory !== null ? { cwd: conversation.workingDirectory } : {})
})

interface Recording {
  readonly resolved: Resolved
  readonly signature: string
  readonly request: TurnRequest
  /** How far the turn got: a conversation created for a turn that failed before recording anything is removed. */
  readonly progress: { started: boolean; recorded: boolean; failed: boolean }
}

/**
 * A CLI whose turn was cut short (stop sequence, max_tokens, client gone, timeout) is told to stop
 * (control `interrupt`) and given a moment to end the turn; then it can serve the next one.
 */
const settle = (handle: CliHandle): Effect.Effect<boolean> =>
  // Idle (running, its turn ended) is the common case: one step.
  Effect.flatMap(handle.isIdle, (idle) => idle ? Effect.succeed(true) : cutShort(handle))

const cutShort = (handle: CliHandle): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    if (!(yield* handle.isRunning)) return false
    // The answer does not matter (the turn's result tells); it comes, or the CLI's exit fails it.
    yield* Effect.forkDaemon(Effect.ignore(handle.control("interrupt")))
    // This runs in finalizers, which are uninterruptible: the wait is made interruptible so that
    // the timeout can cut it.
    return yield* Effect.interruptible(handle.whenIdle).pipe(
      Effect.timeoutTo({ duration: "3 seconds", onTimeout: () => false, onSuccess: (idle) => idle })
    )
  })

interface Deadline {
  readonly seconds: number
  readonly remaining: () => Duration.Duration
  /** Fails the turn with CliTimeout (and marks its process as timed out). */
  readonly timedOut: Effect.Effect<never, CliTimeout>
}

const makeDeadline = (seconds: number, owner: Owner): Deadline => {
  const at = Date.now() + seconds * 1000
  return {
    seconds,
    remaining: () => Duration.millis(Math.max(0, at - Date.now())),
    timedOut: Effect.suspend(() => {
      owner.on({ _tag: "TimedOut" })
      return Effect.fail(new CliTimeout({ seconds }))
    })
  }
}

/** The request's process state (see ProcessOwnership): events in, the fate read by the request's finalizer. */
class Owner {
  state: ProcessState = { _tag: "None" }
  /** The turn's deadline while its answer is read (cleared when the process's fate is carried out). */
  timer: ReturnType<typeof setTimeout> | undefined
  on(event: ProcessEvent) {
    this.state = step(this.state, event)
  }
}

/** Node's timers take at most 2^31 - 1 ms (~24.8 days); a longer delay would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * When the deadline passes while the request's part of the turn is still read, the read fails with
 * CliTimeout after what the CLI printed before it (the reader marks the process timed out when the
 * failure reaches it: a turn whose end was already printed finishes normally). A plain timer, not
 * `Stream.interruptWhen`: that forks a fiber and adds a channel layer to every turn (~1 100 of a
 * later turn's ~4 400 run-loop steps, measured with bench/turncpu.mjs; bench/README.md "Per-request CPU").
 */
const armDeadline = (owner: Owner, turn: LiveTurn, deadline: Deadline, ended: { readonly done: boolean }) => {
  const ms = Duration.toMillis(deadline.remaining())
  if (ms > MAX_TIMER_MS) return
  owner.timer = setTimeout(() => {
    owner.timer = undefined
    if (!ended.done) turn.process.handle.cutTurn(new CliTimeout({ seconds: deadline.seconds }))
  }, ms)
}

export class ChatService extends Effect.Service<ChatService>()("ChatService", {
  effect: Effect.gen(function*() {
    const pool = yield* Pool
    const admission = yield* Admission
    const bridge = yield* ToolBridge
    const conversations = yield* Conversations
    const cli = yield* CliProcess
    const { config } = yield* GatewayConfig
    const cache = yield* Cache
    const timeoutSeconds = config.claude.timeout_seconds
    const metricsEnabled = config.telemetry.metrics_enabled
    const cacheEnabled = config.cache.enabled

    /** Write the input and read the turn's events from a scope of the turn's own. */
    const startTurn = (process: OwnedProcess, request: TurnRequest, input: TurnRequest["input"], conversationId: string | undefined) =>
      Effect.gen(function*() {
        const turnScope = yield* Scope.fork(process.scope, ExecutionStrategy.sequential)
        const names = new Map((request.launch.tools ?? []).map((tool) => [TOOL_PREFIX + tool.name, tool.clientName]))
        const pull = turnEventPull(yield* process.handle.read(input, turnScope), names)
        return { process, turnScope, pull, buffer: Chunk.empty(), conversationId } satisfies LiveTurn
      })

    /**
     * This request's part of a live turn. A stop for tool calls parks the turn; a finished turn
     * is recorded (as soon as it finishes: the client may send its next request at once) and
     * keeps its CLI for the conversation's next turn; anything else ends the CLI.
     */
    const readPart = (turn: LiveTurn, request: TurnRequest, recording: Recording | undefined, owner: Owner, deadline: Deadline) =>
      Effect.gen(function*() {
        owner.on({ _tag: "Reading", turn, keepFor: recording?.resolved.conversation.id })
        const probe = yield* cliTurnProbe(request.launch.model, metricsEnabled)
        const ended = { done: false }
        armDeadline(owner, turn, deadline, ended)
        let text = ""
        const onFinished = (event: Extract<TurnEvent, { _tag: "Finished" }>) =>
          Effect.gen(function*() {
            const toolCalls: ReadonlyArray<ToolCall> = event.toolCalls ?? []
            if (recording !== undefined) {
              yield* conversations.record(recording.resolved, recording.signature, recording.request.conversation?.added ?? [], {
                text,
                toolCalls,
                usage: event.usage,
                costUsd: event.costUsd,
                cliSessionId: event.sessionId
              })
              recording.progress.recorded = true
            }
            if (event.reason === "tool_calls") {
              owner.on({ _tag: "Parked" })
              yield* bridge.park(turn, toolCalls.map((call) => call.id))
            }
          })
        // A chunk at a time (a Finished event ends its chunk: see nextPart).
        const see = (chunk: Chunk.Chunk<TurnEvent>) => {
            let finished: Extract<TurnEvent, { _tag: "Finished" }> | undefined
            for (const event of chunk) {
              probe.see(event)
              if (event._tag === "TextDelta") text += event.text
              if (event._tag === "Started") {
                owner.on({ _tag: "Started", session: event.sessionId })
                if (recording !== undefined) recording.progress.started = true
              }
              if (event._tag === "Finished") {
                owner.on({ _tag: "Finished" })
                finished = event
              }
            }
            if (finished === undefined) return Effect.succeed(chunk)
            // A finished turn that is not parked needs its process no more. One the CLI has not ended
            // (cut by a stop sequence) is settled when the request ends, not before the response does.
            const handOver = Effect.suspend(() =>
              owner.state._tag === "Finished"
                ? Effect.flatMap(turn.process.handle.isIdle, (idle) => (idle ? carryOut(owner) : Effect.void))
                : Effect.void
            )
            return Effect.as(Effect.zipRight(probe.finished(finished, onFinished(finished)), handOver), chunk)
        }
        // A turn cut by its deadline keeps a new conversation (its id was sent, its session holds the
        // turn so far), as one whose client went away does; it still counts as a failed turn.
        const failed = (error: TurnError) =>
          Effect.sync(() => {
            if (error._tag === "CliTimeout") owner.on({ _tag: "TimedOut" })
            else if (recording !== undefined) recording.progress.failed = true
          }).pipe(Effect.zipRight(probe.failed(error)))
        const { stop, launch: { jsonSchema } } = request
        if (jsonSchema === undefined && (stop ?? []).every((s) => s === "")) {
          // The common case as one pull: each Stream layer would cost every turn its channel machinery,
          // and the part, `see` and the tap of failures are one step per chunk (`see` does not fail).
          const onFailure = (error: Option.Option<TurnError>): Effect.Effect<never, Option.Option<TurnError>> =>
            Option.isSome(error) ? Effect.zipRight(failed(error.value), Effect.fail(error)) : Effect.fail(error)
          const onSuccess = (chunk: Chunk.Chunk<TurnEvent>) => see(partOf(turn, ended, chunk))
          return TurnStream.fromPull(Effect.suspend((): Effect.Effect<Chunk.Chunk<TurnEvent>, Option.Option<TurnError>> => {
            if (ended.done) return Effect.fail(Option.none())
            const buffered = turn.buffer
            if (Chunk.isEmpty(buffered)) return Effect.matchEffect(turn.pull, { onFailure, onSuccess })
            turn.buffer = Chunk.empty()
            return onSuccess(buffered)
          }))
        }
        const events = Stream.repeatEffectChunkOption(nextPart(turn, ended))
        const answer = jsonSchema === undefined ? applyStop(events, stop) : structuredOnly(events)
        return answer.pipe(Stream.mapChunksEffect(see), Stream.tapError(failed))
      })

    /**
     * Resolve: which conversation the turn belongs to (an unknown id fails here, before any CLI
     * work), then one request at a time per conversation. Only the conversation's owner continues a
     * parked turn, and only within the conversation it names.
     */
    const resolve = (request: TurnRequest) =>
      Effect.gen(function*() {
        const ref = request.conversation
        const resultIds = (request.toolResults ?? []).map((result) => result.id)
        const parkedFor = yield* bridge.conversationOf(resultIds)
        const parkedIn = ref !== undefined && parkedFor !== undefined && (ref.id === undefined || ref.id === parkedFor) &&
            (yield* conversations.owns(parkedFor, ref.owner))
          ? parkedFor
          : undefined
        const named = ref !== undefined && ref.id === undefined && parkedIn !== undefined ? { ...ref, id: parkedIn } : ref
        // A conversation named by id whose lock is free is locked before it is read: one read, never a
        // stale one. Otherwise the conversation is read first (an unknown or another owner's id is a 404
        // at once, not after a wait), locked, and read again: another request may have moved it on
        // meanwhile. A new conversation is nobody else's yet.
        const lockedFirst = named?.id !== undefined && (yield* conversations.lockIfFree(named.id))
        const found = named === undefined ? undefined : yield* conversations.resolve(named, launchSignature(config, request.launch))
        if (found !== undefined && !lockedFirst) yield* conversations.lock(found.conversation.id)
        const resolved = found === undefined || named === undefined
          ? undefined
          : found.byHistory || (named.id !== undefined && !lockedFirst)
          ? yield* conversations.refresh(found, named)
          : found
        const launch = resolved === undefined ? request.launch : withConversation(request.launch, resolved.conversation)
        const signature = launchSignature(config, launch)
        const recording: Recording | undefined = resolved === undefined
          ? undefined
          : { resolved, signature, request, progress: { started: false, recorded: false, failed: false } }
        // A request that fails before anything is recorded (429, spawn, timeout, an upstream error) leaves
        // no empty conversation; one whose client went away mid-turn keeps it (the id was sent).
        if (recording?.resolved.created === true) {
          if (metricsEnabled) yield* conversationCreated
          yield* Effect.addFinalizer(() =>
            Effect.suspend(() =>
              recording.progress.recorded || (recording.progress.started && !recording.progress.failed)
                ? Effect.void
                : Effect.asVoid(conversations.remove(recording.resolved.conversation.id))
            )
          )
        }
        return {
          resolved,
          recording,
          launch,
          resultIds,
          parkedIn,
          conversationId: resolved?.conversation.id,
          processKey: pool.processKey(launch),
          toolsKey: JSON.stringify(launch.tools ?? [])
        }
      })
    type Resolution = Effect.Effect.Success<ReturnType<typeof resolve>>

    /**
     * Carry out the process's fate (once: the state becomes Handed). At the latest when the
     * request's scope closes; as soon as its turn finished when nothing else needs it, so that a
     * released process is on its way back to the pool before the client has the end of the
     * response (back-to-back clients found none ready and booted one, measured).
     */
    const carryOut = (owner: Owner) =>
      Effect.uninterruptible(Effect.suspend(() => {
        clearTimeout(owner.timer)
        const decided = fate(owner.state, { keepsLive: conversations.keepsLive, reuses: pool.reuses })
        owner.on({ _tag: "Handed" })
        if (decided._tag === "Leave") return Effect.void
        const endReading = decided.turn === undefined ? Effect.void : Scope.close(decided.turn.turnScope, Exit.void)
        const attach = decided.attach === undefined
          ? Effect.void
          : conversations.store.attachSession(decided.attach.conversation, decided.attach.session)
        if (decided._tag === "Kill") return endReading.pipe(Effect.zipRight(Scope.close(decided.scope, Exit.void)), Effect.zipRight(attach))
        const { keepFor, process } = decided
        return endReading.pipe(
          Effect.zipRight(settle(process.handle)),
          Effect.flatMap((settled) =>
            !settled
              ? Scope.close(process.scope, Exit.void)
              : keepFor !== undefined
              ? conversations.keepLive(keepFor, process)
              : pool.release(process)
          ),
          Effect.zipRight(attach)
        )
      }))

    /** The request's process state, whose fate is carried out when the request's scope closes (if not before). */
    const ownership = Effect.gen(function*() {
      const owner = new Owner()
      yield* Effect.addFinalizer(() => carryOut(owner))
      return owner
    })

    /**
     * Acquire: the parked turn the request's tool results continue, else a process and the input
     * to write to it — the conversation's live CLI, else one that resumes its session, else a
     * fresh one (a pool standby). Each is the request's (`owner`) from the moment it is taken.
     */
    const acquire = (request: TurnRequest, resolution: Resolution, owner: Owner, deadline: Deadline) =>
      Effect.gen(function*() {
        const { launch, processKey, resolved, toolsKey } = resolution
        /** Take a process and make it the request's in one step: an interruption cannot come between. */
        const hold = <A, E>(take: Effect.Effect<Option.Option<A>, E>, processOf: (taken: A) => OwnedProcess) =>
          Effect.uninterruptible(Effect.tap(take, (taken) =>
            Effect.sync(() => {
              if (Option.isSome(taken)) owner.on({ _tag: "Held", process: processOf(taken.value) })
            })))
        /** A process owned by a scope of its own, registered with the request before anything can interrupt. */
        const own = (spawn: Effect.Effect<CliHandle, CliError, Scope.Scope>) =>
          Effect.gen(function*() {
            const scope = yield* Effect.uninterruptible(Effect.tap(Scope.make(), (scope) => Effect.sync(() => owner.on({ _tag: "Acquiring", scope }))))
            const handle = yield* Scope.extend(spawn, scope).pipe(
              Effect.timeoutTo({ duration: deadline.remaining(), onTimeout: () => deadline.timedOut, onSuccess: Effect.succeed }),
              Effect.flatten
            )
            const process: OwnedProcess = { scope, handle, signature: processKey, tools: toolsKey }
            owner.on({ _tag: "Held", process })
            return process
          })

        if (resolution.resultIds.length > 0 && resolution.parkedIn !== undefined) {
          const claimed = yield* hold(bridge.claim(resolution.resultIds, resolution.parkedIn, toolsKey), (turn) => turn.process)
          if (Option.isSome(claimed)) {
            yield* (claimed.value.process.handle.tools?.supply(request.toolResults ?? []) ?? Effect.void)
            return claimed.value
          }
        }
        // A turn of this conversation still parked for other results would share its session: it ends.
        if (resolution.conversationId !== undefined) yield* bridge.endParked(resolution.conversationId)
        const sessionId = resolved?.continues === true ? resolved.conversation.cliSessionId : null
        if (resolved === undefined || sessionId === null) {
          return yield* startTurn(yield* own(pool.take(launch)), request, request.input, resolution.conversationId)
        }
        const newInput = request.input.slice(request.newInputFrom ?? 0)
        const kept = yield* hold(conversations.takeLive(resolved.conversation.id, processKey), (process) => process)
        if (Option.isSome(kept)) {
          // The request's system prompt may have changed since the last turn: it applies from this one.
          yield* pool.prepare(kept.value.handle, launch)
          return yield* startTurn(kept.value, request, newInput, resolution.conversationId)
        }
        if (yield* cli.hasSession(sessionId)) {
          return yield* startTurn(yield* own(pool.spawn({ ...launch, resume: sessionId })), request, newInput, resolution.conversationId)
        }
        // The CLI no longer has the session (its files were removed): a new one, told the recorded turns.
        yield* Effect.logWarning("the CLI session of a conversation is gone; continuing from its recorded messages", {
          conversation: resolved.conversation.id,
          cli_session: sessionId
        })
        const recorded = yield* conversations.store.messages(resolved.conversation.id)
        const input = [...fromHistory(recorded, request.toolResults !== undefined), ...newInput]
        return yield* startTurn(yield* own(pool.take(launch)), request, input, resolution.conversationId)
      })

    /**
     * One turn: resolve → acquire → read. `admitted`: the caller already holds its session slot
     * (the runs of `n`).
     */
    const uncachedTurn = (
      request: TurnRequest,
      options: { readonly admitted?: boolean } = {}
    ): Effect.Effect<TurnResult, TurnError | Overloaded | ConversationNotFound, Scope.Scope> =>
      Effect.gen(function*() {
        const resolution = yield* resolve(request)
        if (options.admitted !== true) yield* admission.admit
        const owner = yield* ownership
        // One deadline for the whole turn, from the moment it has a session slot: getting the
        // process and the answer share it.
        const deadline = makeDeadline(timeoutSeconds, owner)
        const live = yield* acquire(request, resolution, owner, deadline)
        return { events: yield* readPart(live, request, resolution.recording, owner, deadline), conversationId: resolution.conversationId }
      })

    /**
     * One turn, through the answer cache (a hit replays a stored answer; identical requests share
     * one turn). `admitted` marks the runs of `n` (never cached); `cacheable: false` rules a
     * request out (e.g. a Responses request whose response is stored for previous_response_id).
     */
    const turn = (
      request: TurnRequest,
      options: { readonly admitted?: boolean; readonly cacheable?: boolean } = {}
    ): Effect.Effect<TurnResult, TurnError | Overloaded | ConversationNotFound, Scope.Scope> =>
      cacheEnabled
        ? cache.through(request, { cacheable: options.admitted !== true && options.cacheable !== false }, uncachedTurn(request, options))
        : uncachedTurn(request, options)

    return { turn } as const
  }),
  dependencies: [Pool.Default, Admission.Default, ToolBridge.Default, Conversations.Default, CliProcess.Default, Cache.Default]
}) {}
