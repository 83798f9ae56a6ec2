import { Deferred, Effect, Exit, FiberId, Option, Runtime, Schedule, Scope } from "effect"
import * as crypto from "node:crypto"
import { Admission, Overloaded } from "./Admission.js"
import type { CliHandle } from "../cli/CliProcess.js"
import { type Conversation, ConversationStore } from "../store/ConversationStore.js"
import { ConversationNotFound } from "../domain/errors.js"
import { GatewayConfig } from "../config/GatewayConfig.js"
import { Pool } from "./Pool.js"
import type { ConversationRef, HistoryMessage, ToolCall, TurnUsage } from "../domain/Turn.js"

/**
 * Which CLI session continues which conversation. A conversation is named by the client
 * (`conversation_id`) or found by the fingerprint of the history a stateless client re-sends.
 * Between turns its CLI stays alive (idle TTL, LRU cap), so the next turn is written to the same
 * process; after that the process goes back to the pool (reset for another conversation, its
 * session left resumable), and a later turn, or one after a restart, resumes the recorded session
 * (`--resume`).
 * Requests of one conversation are served one at a time.
 */

/** A CLI process owned outside any request: closing the scope kills it. */
export interface OwnedProcess {
  readonly scope: Scope.CloseableScope
  readonly handle: CliHandle
  /** Which launches it can serve a next turn for (`Pool.processKey`). */
  readonly signature: string
  /** The client functions it serves (JSON), part of the signature. */
  readonly tools: string
}

/** The conversation a request continues, or a new one. */
export interface Resolved {
  readonly conversation: Conversation
  /** Found by the client's history (not named): it only matches while that history is the whole story. */
  readonly byHistory: boolean
  /** Its CLI session holds the history: only the request's new part is sent. */
  readonly continues: boolean
  /** Earlier messages the conversation has not recorded yet (the history a new one starts with). */
  readonly unrecorded: ReadonlyArray<HistoryMessage>
  /** Created for this request: a request that fails before its turn starts removes it again. */
  readonly created?: boolean
}

export interface Answer {
  readonly text: string
  readonly toolCalls: ReadonlyArray<ToolCall>
  readonly usage: TurnUsage
  readonly costUsd: number | undefined
  readonly cliSessionId: string
}

const sha256 = (text: string) => crypto.createHash("sha256").update(text).digest("hex")

/**
 * A hash of a message list, chained message by message: a conversation extends its own hash with
 * each turn's messages, without reading its history back.
 */
export const chainHash = (hash: string, messages: ReadonlyArray<HistoryMessage>): string =>
  messages.reduce((h, message) => sha256(`${h}\n${JSON.stringify(message)}`), hash)

/** What a history is matched by: whose it is, its messages and the launch they ran with. */
export const fingerprint = (owner: string, signature: string, historyHash: string): string =>
  sha256(`${owner}\n${signature}\n${historyHash}`)

interface Live {
  readonly process: OwnedProcess
  /** Its idle timer. */
  timer?: ReturnType<typeof setTimeout>
}

/**
 * One request at a time for a conversation, first come first served. Not an Effect semaphore under
 * `Effect.timeoutFail`: the timeout forks a race with a sleep even when the lock is free (~105 µs
 * against ~5 µs for a free take; bench/README.md, "Per-request CPU"). Here a free lock is taken
 * synchronously and only a waiter pays for its timeout.
 */
class TurnLock {
  held = false
  users = 0
  readonly waiters: Array<Deferred.Deferred<void>> = []
  /** To the next waiter, else free. */
  release() {
    const next = this.waiters.shift()
    if (next === undefined) this.held = false
    else Deferred.unsafeDone(next, Exit.void)
  }
}

export class Conversations extends Effect.Service<Conversations>()("Conversations", {
  scoped: Effect.gen(function*() {
    const store = yield* ConversationStore
    const admission = yield* Admission
    const pool = yield* Pool
    const { config } = yield* GatewayConfig
    const settings = config.conversation
    // A live CLI's idle timer runs its expiry with the service's own runtime (one forked from the
    // request would keep that request reachable for the whole timeout). A Node timer, not a fiber in
    // a FiberMap: forking it and interrupting it cost each later turn ~60 run-loop steps
    // (bench/README.md, "Per-request CPU").
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const idleMs = Math.min(settings.session_timeout_minutes * 60_000, 2 ** 31 - 1)
    // Insertion order is use order: the first entry is the least recently used.
    const live = new Map<string, Live>()
    const locks = new Map<string, TurnLock>()

    /** The conversation no longer needs its process: the pool resets it for another (or kills it). */
    const close = (id: string, entry: Live, end: (process: OwnedProcess) => Effect.Effect<void> = pool.release) =>
      Effect.suspend(() => {
        if (live.get(id) === entry) live.delete(id)
        return end(entry.process)
      })

    /** Give up a live process from outside its idle timer (which must not outlive it). */
    const drop = (id: string, entry: Live, end?: (process: OwnedProcess) => Effect.Effect<void>) =>
      Effect.suspend(() => {
        clearTimeout(entry.timer)
        return close(id, entry, end)
      })

    // Running turns finish (and are recorded) before the store closes; then the live CLIs end.
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(
        admission.drain,
        Effect.forEach([...live], ([id, entry]) => drop(id, entry, (process) => Scope.close(process.scope, Exit.void)), { discard: true })
      )
    )

    // Old conversations go, with their messages; a live one is never old.
    yield* Effect.suspend(() => store.purge(Math.floor(Date.now() / 1000) - settings.retention_days * 86400)).pipe(
      Effect.tap((count) => (count > 0 ? Effect.logInfo(`deleted ${count} conversations past conversation.retention_days`) : Effect.void)),
      Effect.repeat(Schedule.spaced("1 hour")),
      Effect.forkScoped
    )

    /**
     * Hold the conversation for the caller's scope: its requests run one at a time. The wait is
     * interruptible (client gone) and bounded like the admission queue's.
     */
    const lock = (id: string): Effect.Effect<void, Overloaded, Scope.Scope> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          let entry = locks.get(id)
          if (!entry) {
            entry = new TurnLock()
            locks.set(id, entry)
          }
          entry.users++
          const held = entry
          const leave = () => {
            if (--held.users === 0) locks.delete(id)
          }
          // One finalizer for the whole hold, a plain one on the scope (Effect.addFinalizer would also
          // restore the fiber's refs for it: each costs a request ~10 run-loop steps).
          const release = Effect.flatMap(Effect.scope, (scope) =>
            Scope.addFinalizer(scope, Effect.sync(() => {
              held.release()
              leave()
            })))
          if (!held.held) {
            held.held = true
            return release
          }
          const turn = Deferred.unsafeMake<void>(FiberId.none)
          held.waiters.push(turn)
          return restore(Deferred.await(turn)).pipe(
            Effect.timeoutFail({
              duration: `${config.queue.max_wait_seconds} seconds`,
              onTimeout: () => new Overloaded({ reason: "queue_timeout", retryAfterSeconds: 1 })
            }),
            Effect.onError(() =>
              Effect.sync(() => {
                // Still queued: leave the queue. Handed the lock as the wait ended: pass it on.
                const at = held.waiters.indexOf(turn)
                if (at >= 0) held.waiters.splice(at, 1)
                else held.release()
                leave()
              })
            ),
            Effect.zipRight(release)
          )
        })
      )

    /** Hold the conversation's lock if nobody does (true), else leave it (false). */
    const lockIfFree = (id: string): Effect.Effect<boolean, Overloaded, Scope.Scope> =>
      Effect.suspend(() => locks.get(id)?.held === true ? Effect.succeed(false) : Effect.as(lock(id), true))

    /** The conversation's live CLI, if it was started with this signature and is idle. */
    const takeLive = (id: string, signature: string): Effect.Effect<Option.Option<OwnedProcess>> =>
      Effect.gen(function*() {
        const entry = live.get(id)
        if (entry === undefined) return Option.none()
        live.delete(id)
        clearTimeout(entry.timer)
        if (entry.process.signature === signature && (yield* entry.process.handle.isIdle)) return Option.some(entry.process)
        yield* pool.release(entry.process)
        return Option.none()
      })

    /** Keep a conversation's CLI between turns (only an idle one: a turn cut short would talk on). */
    const keepLive = (id: string, process: OwnedProcess): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (settings.max_live === 0 || !(yield* process.handle.isIdle)) return yield* pool.release(process)
        const previous = live.get(id)
        if (previous !== undefined) yield* drop(id, previous)
        const entry: Live = { process }
        live.set(id, entry)
        entry.timer = setTimeout(() => {
          if (live.get(id) === entry) runFork(close(id, entry))
        }, idleMs)
        entry.timer.unref()
        for (const [oldest, entry] of live) {
          if (live.size <= settings.max_live) break
          yield* drop(oldest, entry)
        }
      })

    /** Forget a conversation and end its live CLI. */
    const remove = (id: string): Effect.Effect<boolean> =>
      Effect.gen(function*() {
        const entry = live.get(id)
        if (entry !== undefined) yield* drop(id, entry)
        return yield* store.remove(id)
      })

    /**
     * The conversation a request continues: the one it names (404 if unknown), the one whose
     * recorded history it re-sends, or a new one.
     */
    const resolve = (ref: ConversationRef, signature: string): Effect.Effect<Resolved, ConversationNotFound> =>
      Effect.gen(function*() {
        if (ref.id !== undefined) {
          const found = Option.filter(yield* store.get(ref.id), (conversation) => conversation.owner === ref.owner)
          if (Option.isNone(found)) return yield* Effect.fail(new ConversationNotFound({ id: ref.id }))
          const conversation = found.value
          const continues = conversation.cliSessionId !== null
          return { conversation, byHistory: false, continues, unrecorded: continues ? [] : ref.history }
        }
        if (ref.history.length > 0) {
          const notBefore = Math.floor(Date.now() / 1000) - settings.fingerprint_ttl_minutes * 60
          const found = yield* store.findByFingerprint(fingerprint(ref.owner, signature, chainHash("", ref.history)), notBefore)
          if (Option.isSome(found) && found.value.cliSessionId !== null) {
            return { conversation: found.value, byHistory: true, continues: true, unrecorded: [] }
          }
        }
        return { conversation: yield* store.create({ owner: ref.owner }), byHistory: false, continues: false, unrecorded: ref.history, created: true }
      })

    /**
     * The same conversation as it is now (another request may have had a turn while this one
     * waited for the lock). One found by its history that has moved on no longer matches the
     * client's history: the request starts a conversation of its own.
     */
    const refresh = (resolved: Resolved, ref: ConversationRef): Effect.Effect<Resolved> =>
      Effect.gen(function*() {
        const current = Option.getOrElse(yield* store.get(resolved.conversation.id), () => resolved.conversation)
        if (resolved.byHistory && current.historyHash !== resolved.conversation.historyHash) {
          return { conversation: yield* store.create({ owner: ref.owner }), byHistory: false, continues: false, unrecorded: ref.history, created: true }
        }
        if (current.cliSessionId === null) return { ...resolved, conversation: current }
        return { ...resolved, conversation: current, continues: true, unrecorded: [] }
      })

    /** Record a turn's new messages and answer, and the fingerprint the next request will match. */
    const record = (resolved: Resolved, signature: string, added: ReadonlyArray<HistoryMessage>, answer: Answer) =>
      Effect.suspend(() => {
        const reply: HistoryMessage = {
          role: "assistant",
          content: answer.text === "" ? null : answer.text,
          ...(answer.toolCalls.length > 0 ? { tool_calls: answer.toolCalls } : {})
        }
        const messages = [...resolved.unrecorded, ...added, reply]
        const historyHash = chainHash(resolved.conversation.historyHash, messages)
        const usage = answer.usage
        return store.recordTurn(resolved.conversation.id, {
          messages,
          cliSessionId: answer.cliSessionId,
          historyHash,
          fingerprint: fingerprint(resolved.conversation.owner, signature, historyHash),
          promptTokens: usage.inputTokens + usage.cacheReadTokens + usage.cacheCreationTokens,
          completionTokens: usage.outputTokens,
          costUsd: answer.costUsd ?? 0
        })
      })

    /** Whether the conversation exists and belongs to `owner`. */
    const owns = (id: string, owner: string) =>
      Effect.map(store.get(id), (found) => Option.isSome(found) && found.value.owner === owner)

    const liveIds = Effect.sync((): ReadonlySet<string> => new Set(live.keys()))

    /** Whether CLIs stay alive between turns at all (`conversation.max_live` > 0). */
    const keepsLive = settings.max_live > 0

    return { lock, lockIfFree, takeLive, keepLive, keepsLive, remove, resolve, refresh, record, owns, liveIds, store } as const
  }),
  dependencies: [ConversationStore.Default, Admission.Default, Pool.Default]
}) {}
