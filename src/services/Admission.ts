import { Deferred, Effect, type Scope } from "effect"
import { GatewayConfig } from "../config/GatewayConfig.js"
import { Overloaded } from "../domain/errors.js"

/**
 * At most `claude.max_concurrent_sessions` turns run at once; up to `queue.max_waiting` more wait
 * (first come, first served) for at most `queue.max_wait_seconds`. Past that: 429 with Retry-After.
 */

export { Overloaded }

export interface AdmissionStats {
  readonly running: number
  readonly queued: number
  readonly limit: number
}

export class Admission extends Effect.Service<Admission>()("Admission", {
  effect: Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const limit = config.claude.max_concurrent_sessions
    const { max_waiting, max_wait_seconds } = config.queue
    // Effect's semaphore resumes waiters in arrival order: that is the fairness.
    const semaphore = yield* Effect.makeSemaphore(limit)
    let running = 0
    let queued = 0
    let draining = false
    const drained = yield* Deferred.make<void>()

    /**
     * Hold `count` session slots for the rest of the caller's scope, taken together (the runs of
     * one request never wait for each other's slots while holding some).
     */
    const admitMany = (count: number): Effect.Effect<void, Overloaded, Scope.Scope> => Effect.suspend(() => {
      if (draining) return Effect.fail(new Overloaded({ reason: "shutting_down", retryAfterSeconds: 5 }))
      if (running >= limit && queued >= max_waiting) {
        return Effect.fail(new Overloaded({ reason: "queue_full", retryAfterSeconds: 1 }))
      }
      const hold = Effect.zipRight(
        Effect.sync(() => (running += count)),
        Effect.addFinalizer(() => Effect.sync(() => (running -= count)).pipe(Effect.zipRight(semaphore.release(count))))
      )
      // A free slot and nobody waiting: the permit is there, so no timeout (it would fork a race with a
      // sleep on every turn).
      if (queued === 0 && running + count <= limit) return Effect.uninterruptible(Effect.zipRight(semaphore.take(count), hold))
      queued++
      // The wait is interruptible (timeout, client gone); from the permit to its finalizer is not.
      return Effect.uninterruptibleMask((restore) =>
        restore(semaphore.take(count)).pipe(
          Effect.timeoutFail({
            duration: `${max_wait_seconds} seconds`,
            onTimeout: () => new Overloaded({ reason: "queue_timeout", retryAfterSeconds: 1 })
          }),
          Effect.ensuring(Effect.sync(() => queued--)),
          Effect.zipRight(hold)
        )
      )
    }).pipe(Effect.withSpan("gateway.admission", { attributes: { "gateway.sessions.requested": count }, captureStackTrace: false }))

    /** Hold a session slot for the rest of the caller's scope. */
    const admit = admitMany(1)

    /**
     * Refuse new turns and wait (up to `server.shutdown_grace_seconds`) for the running ones to
     * finish. Every caller (HTTP server, pool) waits for the same drain.
     */
    const drain = Effect.suspend(() => {
      if (draining) return Deferred.await(drained)
      draining = true
      // Runs in finalizers: without `interruptible` the timeout could never cut the wait.
      return Effect.interruptible(semaphore.take(limit)).pipe(
        Effect.timeout(`${config.server.shutdown_grace_seconds} seconds`),
        Effect.ignore,
        Effect.ensuring(Deferred.succeed(drained, undefined))
      )
    })

    const stats = Effect.sync((): AdmissionStats => ({ running, queued, limit }))
    return { admit, admitMany, drain, stats } as const
  })
}) {}
