import { Chunk, Duration, Effect, ExecutionStrategy, Exit, Option, Schedule, Scope, Stream } from "effect"
import { CliTimeout } from "../cli/CliErrors.js"
import type { CliError } from "../cli/CliErrors.js"
import type { CliHandle } from "../cli/CliProcess.js"
import { CliProcess, launchSignature } from "../cli/CliProcess.js"
import { toTurnEvents, type TurnError } from "../cli/TurnEvents.js"
import { Admission, type Overloaded } from "./Admission.js"
import type { Conversation } from "../store/ConversationStore.js"
import { Conversations, type OwnedProcess, type Resolved } from "./Conversations.js"
import type { ConversationNotFound } from "../domain/errors.js"
import { GatewayConfig } from "../config/GatewayConfig.js"
import { Pool } from "./Pool.js"
import { cliTurnProbe, conversationCreated } from "./Telemetry.js"
import { applyStop } from "../domain/StopSequences.js"
import { structuredOnly } from "../domain/StructuredOutput.js"
import { type LiveTurn, ToolBridge } from "./ToolBridge.js"
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

/** The next events of a live turn, up to and including the end of this request's part. */
const nextPart = (turn: LiveTurn, ended: { done: boolean }) =>
  Effect.suspend((): Effect.Effect<Chunk.Chunk<TurnEvent>, Option.Option<TurnError>> => {
    if (ended.done) return Effect.fail(Option.none())
    const buffered = turn.buffer
    turn.buffer = Chunk.empty()
    return (Chunk.isEmpty(buffered) ? turn.pull : Effect.succeed(buffered)).pipe(
      Effect.map((chunk) => {
        const end = Chunk.findFirstIndex(chunk, (event) => event._tag === "Finished")
        if (Option.isNone(end)) return chunk
        ended.done = true
        turn.buffer = Chunk.drop(chunk, end.value + 1)
        return Chunk.take(chunk, end.value + 1)
      })
    )
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
 * Who ends a request's CLI. From the moment a process is the request's (spawned, taken from the
 * conversation, claimed from a parked turn) until the request's scope closes, this decides: parked
 * turns and kept CLIs live on, a settled one goes back to the pool (reset for another
 * conversation), anything else is killed — also when the client goes away mid-way.
 */
interface Ownership {
  /** The scope that kills the process (known before the process is). */
  scope: Scope.CloseableScope | undefined
  process: OwnedProcess | undefined
  turn: LiveTurn | undefined
  parked: boolean
  /** The conversation whose next turn may use the CLI (kept, after its turn is settled). */
  keepFor: string | undefined
  /** The CLI session of a turn that did not finish (so not recorded): the conversation goes on in it. */
  unrecordedSession: string | undefined
  /** The turn ran out of time: its CLI may be stuck, so it is killed, never kept. */
  timedOut: boolean
}

/**
 * A CLI whose turn was cut short (stop sequence, max_tokens, client gone, timeout) is told to stop
 * (control `interrupt`) and given a moment to end the turn; then it can serve the next one.
 */
const settle = (handle: CliHandle): Effect.Effect<boolean> =>
  // This runs in finalizers, often of an interrupted request: nothing here may rely on interruption
  // to end (a timeout could not cut an uninterruptible wait), so the wait is a bounded poll.
  Effect.gen(function*() {
    if (!(yield* handle.isRunning)) return false
    if (yield* handle.isIdle) return true
    // The answer does not matter (the poll below tells); it comes, or the CLI's exit fails it.
    yield* Effect.forkDaemon(Effect.ignore(handle.control("interrupt")))
    yield* handle.isIdle.pipe(
      Effect.repeat({ until: (idle) => idle, schedule: Schedule.spaced("20 millis").pipe(Schedule.upTo("3 seconds")) })
    )
    return yield* handle.isIdle // idle includes running
  })

export class ChatService extends Effect.Service<ChatService>()("ChatService", {
  effect: Effect.gen(function*() {
    const pool = yield* Pool
    const admission = yield* Admission
    const bridge = yield* ToolBridge
    const conversations = yield* Conversations
    const cli = yield* CliProcess
    const { config } = yield* GatewayConfig
    const timeoutSeconds = config.claude.timeout_seconds
    const metricsEnabled = config.telemetry.metrics_enabled

    /** Write the input and read the turn's events from a scope of the turn's own. */
    const startTurn = (process: OwnedProcess, request: TurnRequest, input: TurnRequest["input"], conversationId: string | undefined) =>
      Effect.gen(function*() {
        const turnScope = yield* Scope.fork(process.scope, ExecutionStrategy.sequential)
        const names = new Map((request.launch.tools ?? []).map((tool) => [TOOL_PREFIX + tool.name, tool.clientName]))
        const pull = yield* Scope.extend(Stream.toPull(toTurnEvents(process.handle.turn(input), names)), turnScope)
        return { process, turnScope, pull, buffer: Chunk.empty(), conversationId } satisfies LiveTurn
      })

    /**
     * This request's part of a live turn. A stop for tool calls parks the turn; a finished turn
     * is recorded (as soon as it finishes: the client may send its next request at once) and
     * keeps its CLI for the conversation's next turn; anything else ends the CLI.
     */
    const readPart = (turn: LiveTurn, request: TurnRequest, recording: Recording | undefined, owner: Ownership) =>
      Effect.gen(function*() {
        owner.turn = turn
        owner.keepFor = recording?.resolved.conversation.id
        const probe = yield* cliTurnProbe(request.launch.model, metricsEnabled)
        const ended = { done: false }
        let text = ""
        const events = Stream.repeatEffectChunkOption(nextPart(turn, ended))
        const answer = request.launch.jsonSchema === undefined ? applyStop(events, request.stop) : structuredOnly(events)
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
              owner.parked = true
              yield* bridge.park(turn, toolCalls.map((call) => call.id))
            }
          })
        // A chunk at a time (a Finished event ends its chunk: see nextPart).
        return answer.pipe(
          Stream.mapChunksEffect((chunk) => {
            let finished: Extract<TurnEvent, { _tag: "Finished" }> | undefined
            for (const event of chunk) {
              probe.see(event)
              if (event._tag === "TextDelta") text += event.text
              if (event._tag === "Started") {
                owner.unrecordedSession = event.sessionId
                if (recording !== undefined) recording.progress.started = true
              }
              if (event._tag === "Finished") {
                owner.unrecordedSession = undefined
                finished = event
              }
            }
            return finished === undefined ? Effect.succeed(chunk) : Effect.as(probe.finished(finished, onFinished(finished)), chunk)
          }),
          Stream.tapError((error) =>
            Effect.sync(() => recording !== undefined && (recording.progress.failed = true)).pipe(Effect.zipRight(probe.failed(error)))
          )
        )
      })

    /** One turn; `admitted`: the caller already holds its session slot (the runs of `n`). */
    const turn = (
      request: TurnRequest,
      options: { readonly admitted?: boolean } = {}
    ): Effect.Effect<TurnResult, TurnError | Overloaded | ConversationNotFound, Scope.Scope> =>
      Effect.gen(function*() {
        const ref = request.conversation
        const resultIds = (request.toolResults ?? []).map((result) => result.id)
        // Which conversation (an unknown id fails here, before any CLI work), then one request at a time.
        // Only the conversation's owner continues a parked turn, and only within the conversation it names.
        const parkedFor = yield* bridge.conversationOf(resultIds)
        const parkedIn = ref !== undefined && parkedFor !== undefined && (ref.id === undefined || ref.id === parkedFor) &&
            (yield* conversations.owns(parkedFor, ref.owner))
          ? parkedFor
          : undefined
        const found = ref === undefined
          ? undefined
          : yield* conversations.resolve(ref.id === undefined && parkedIn !== undefined ? { ...ref, id: parkedIn } : ref, launchSignature(config, request.launch))
        if (found !== undefined) yield* conversations.lock(found.conversation.id)
        const resolved = found === undefined || ref === undefined ? undefined : yield* conversations.refresh(found, ref)
        const conversationId = resolved?.conversation.id
        const launch = resolved === undefined ? request.launch : withConversation(request.launch, resolved.conversation)
        const signature = launchSignature(config, launch)
        const processKey = pool.processKey(launch)
        const toolsKey = JSON.stringify(launch.tools ?? [])
        const recording = resolved === undefined
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

        if (options.admitted !== true) yield* admission.admit
        const owner: Ownership = {
          scope: undefined,
          process: undefined,
          turn: undefined,
          parked: false,
          keepFor: undefined,
          unrecordedSession: undefined,
          timedOut: false
        }
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            const { keepFor, process, scope } = owner
            if (scope === undefined || owner.parked) return Effect.void
            const endReading = owner.turn === undefined ? Effect.void : Scope.close(owner.turn.turnScope, Exit.void)
            const kill = Scope.close(scope, Exit.void)
            const session = owner.unrecordedSession
            const attach = keepFor === undefined || session === undefined
              ? Effect.void
              : conversations.store.attachSession(keepFor, session)
            const kept = keepFor !== undefined && conversations.keepsLive
            // Nothing will use it again (timed out, or neither kept nor reused): no settling, it ends now.
            if (process === undefined || owner.timedOut || (!kept && !pool.reuses)) {
              return endReading.pipe(Effect.zipRight(kill), Effect.zipRight(attach))
            }
            // A process its conversation keeps, else one the pool resets for another conversation.
            const next = keepFor !== undefined && kept ? conversations.keepLive(keepFor, process) : pool.release(process)
            return endReading.pipe(
              Effect.zipRight(settle(process.handle)),
              Effect.flatMap((settled) => settled ? next : kill),
              Effect.zipRight(attach)
            )
          })
        )
        /** Take a process and make it the request's in one step: an interruption cannot come between. */
        const hold = <A, E>(take: Effect.Effect<Option.Option<A>, E>, processOf: (taken: A) => OwnedProcess) =>
          Effect.uninterruptible(Effect.tap(take, (taken) =>
            Effect.sync(() => {
              if (Option.isSome(taken)) {
                owner.process = processOf(taken.value)
                owner.scope = owner.process.scope
              }
            })))
        // One deadline for the whole turn, from the moment it has a session slot: getting the
        // process and the answer share it.
        const timedOut = Effect.suspend(() => {
          owner.timedOut = true
          return Effect.fail(new CliTimeout({ seconds: timeoutSeconds }))
        })
        const deadline = Date.now() + timeoutSeconds * 1000
        const remaining = () => Duration.millis(Math.max(0, deadline - Date.now()))
        const result = (events: Stream.Stream<TurnEvent, TurnError>): TurnResult => ({
          events: events.pipe(
            Stream.interruptWhen(Effect.suspend(() => Effect.sleep(remaining())).pipe(Effect.zipRight(timedOut)))
          ),
          conversationId
        })
        /** A process owned by a scope of its own, registered with the request before anything can interrupt. */
        const own = (acquire: Effect.Effect<CliHandle, CliError, Scope.Scope>) =>
          Effect.gen(function*() {
            const scope = yield* Effect.uninterruptible(Effect.tap(Scope.make(), (scope) => Effect.sync(() => (owner.scope = scope))))
            const handle = yield* Scope.extend(acquire, scope).pipe(
              Effect.timeoutTo({ duration: remaining(), onTimeout: () => timedOut, onSuccess: Effect.succeed }),
              Effect.flatten
            )
            const process: OwnedProcess = { scope, handle, signature: processKey, tools: toolsKey }
            owner.process = process
            return process
          })

        // The results of tool calls a parked turn of this conversation waits for: that turn reads on.
        if (resultIds.length > 0 && parkedIn !== undefined) {
          const claimed = yield* hold(bridge.claim(resultIds, parkedIn, toolsKey), (turn) => turn.process)
          if (Option.isSome(claimed)) {
            yield* (claimed.value.process.handle.tools?.supply(request.toolResults ?? []) ?? Effect.void)
            return result(yield* readPart(claimed.value, request, recording, owner))
          }
        }

        // A turn of this conversation still parked for other results would share its session: it ends.
        if (conversationId !== undefined) yield* bridge.endParked(conversationId)
        // The conversation's live CLI, else one that resumes its session, else a fresh one.
        let input = request.input
        let process: OwnedProcess
        const sessionId = resolved?.continues === true ? resolved.conversation.cliSessionId : null
        if (resolved !== undefined && sessionId !== null) {
          const newInput = input.slice(request.newInputFrom ?? 0)
          const kept = yield* hold(conversations.takeLive(resolved.conversation.id, processKey), (process) => process)
          if (Option.isSome(kept)) {
            input = newInput
            process = kept.value
            // The request's system prompt may have changed since the last turn: it applies from this one.
            yield* pool.prepare(process.handle, launch)
          } else if (yield* cli.hasSession(sessionId)) {
            input = newInput
            process = yield* own(pool.spawn({ ...launch, resume: sessionId }))
          } else {
            // The CLI no longer has the session (its files were removed): a new one, told the recorded turns.
            yield* Effect.logWarning("the CLI session of a conversation is gone; continuing from its recorded messages", {
              conversation: resolved.conversation.id,
              cli_session: sessionId
            })
            const recorded = yield* conversations.store.messages(resolved.conversation.id)
            input = [...fromHistory(recorded, request.toolResults !== undefined), ...newInput]
            process = yield* own(pool.take(launch))
          }
        } else {
          process = yield* own(pool.take(launch))
        }
        const live = yield* startTurn(process, request, input, conversationId)
        return result(yield* readPart(live, request, recording, owner))
      })

    return { turn } as const
  }),
  dependencies: [Pool.Default, Admission.Default, ToolBridge.Default, Conversations.Default, CliProcess.Default]
}) {}
