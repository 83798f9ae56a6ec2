import { Deferred, Effect, Exit, FiberId, Scope } from "effect"
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
    let running = 0
    let queued = 0
    let draining = false
    const drained = yield* Deferred.make<void>()
    // Free slots, and the requests waiting for them in arrival order (that is the fairness). Not
    // Effect's semaphore: taking and giving back one of its permits cost each turn ~40 run-loop steps
    // more than this counter (bench/README.md, "Per-request CPU").
    let free = limit
    interface Waiter {
      readonly count: number
      readonly granted: Deferred.Deferred<void>
    }
    const waiters: Array<Waiter> = []
    /** Free slots go to the waiters at the head of the queue, while they fit. */
    const grant = () => {
      for (let next = waiters[0]; next !== undefined && next.count <= free; next = waiters[0]) {
        waiters.shift()
        free -= next.count
        Deferred.unsafeDone(next.granted, Exit.void)
      }
    }
    const release = (count: number) => {
      free += count
      grant()
    }
    /** Wait in the queue for `count` slots. */
    const enqueue = (count: number): Waiter => {
      const waiter = { count, granted: Deferred.unsafeMake<void>(FiberId.none) }
      waiters.push(waiter)
      grant()
      return waiter
    }

    /**
     * Hold `count` session slots for the rest of the caller's scope, taken together (the runs of
     * one request never wait for each other's slots while holding some).
     */
    const admitMany = (count: number): Effect.Effect<void, Overloaded, Scope.Scope> =>
      // `useSpan`, not `withSpan`: nothing inside needs the span as its parent, and providing it costs a `locally`.
      Effect.useSpan("gateway.admission", { attributes: { "gateway.sessions.requested": count }, captureStackTrace: false }, () =>
      // The wait is interruptible (timeout, client gone); from the slots to their finalizer is not.
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          if (draining) return Effect.fail(new Overloaded({ reason: "shutting_down", retryAfterSeconds: 5 }))
          if (running >= limit && queued >= max_waiting) {
            return Effect.fail(new Overloaded({ reason: "queue_full", retryAfterSeconds: 1 }))
          }
          const hold = Effect.zipRight(
            Effect.sync(() => (running += count)),
            // A plain finalizer on the scope: Effect.addFinalizer would also restore the fiber's refs for it.
            Effect.flatMap(Effect.scope, (scope) =>
              Scope.addFinalizer(scope, Effect.sync(() => {
                running -= count
                release(count)
              })))
          )
          // Free slots and nobody waiting: taken at once, without a timeout (it would fork a race with
          // a sleep on every turn).
          if (waiters.length === 0 && free >= count) {
            free -= count
            return hold
          }
          queued++
          const waiter = enqueue(count)
          return restore(Deferred.await(waiter.granted)).pipe(
            Effect.timeoutFail({
              duration: `${max_wait_seconds} seconds`,
              onTimeout: () => new Overloaded({ reason: "queue_timeout", retryAfterSeconds: 1 })
            }),
            Effect.onError(() =>
              Effect.sync(() => {
                // Still queued: leave the queue (those behind may fit now). Granted as the wait ended: give the slots back.
                const at = waiters.indexOf(waiter)
                if (at < 0) return release(count)
                waiters.splice(at, 1)
                grant()
              })
            ),
            Effect.ensuring(Effect.sync(() => queued--)),
            Effect.zipRight(hold)
          )
        })
      ))

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
      // Every slot free: the running turns have finished (the queue's earlier waiters first).
      return Effect.interruptible(Deferred.await(enqueue(limit).granted)).pipe(
        Effect.timeout(`${config.server.shutdown_grace_seconds} seconds`),
        Effect.ignore,
        Effect.ensuring(Deferred.succeed(drained, undefined))
      )
    })

    const stats = Effect.sync((): AdmissionStats => ({ running, queued, limit }))
    return { admit, admitMany, drain, stats } as const
  })
}) {}
