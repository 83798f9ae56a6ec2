import { Deferred, Effect, ExecutionStrategy, Exit, Runtime, Scope } from "effect"
import type { CliError } from "../cli/CliErrors.js"
import { type CliHandle, CliProcess, launchSignature } from "../cli/CliProcess.js"
import { Admission } from "./Admission.js"
import { GatewayConfig } from "../config/GatewayConfig.js"
import type { LaunchOptions } from "../domain/Turn.js"

/**
 * Standby CLI processes spawned before anyone asks, keyed by launch signature (everything that
 * changes argv or environment). Taking one starts its replacement in the background. A process serves one
 * conversation only: a lease never returns to the pool, it is killed when the lease's scope closes.
 * (Effect's KeyedPool does not run item finalizers on invalidation, and Pool reuses items, so the
 * bookkeeping is explicit here.)
 */

interface Standby {
  readonly handle: CliHandle
  readonly scope: Scope.CloseableScope
  leased: boolean
}

interface Entry {
  readonly launch: LaunchOptions
  readonly standby: Array<Standby>
  /** Requests waiting for a standby that is still booting (sooner than a spawn of their own). */
  readonly waiters: Array<Deferred.Deferred<Standby>>
  spawning: number
  lastUsed: number
}

export interface PoolStats {
  readonly enabled: boolean
  readonly processes: number
  readonly leased: number
  /** Requests served by a standby / by a spawn on the request path. */
  readonly hits: number
  readonly misses: number
  readonly spawned: number
  readonly signatures: ReadonlyArray<{ readonly model: string; readonly systemPrompt: boolean; readonly standby: number; readonly spawning: number }>
}

export class Pool extends Effect.Service<Pool>()("Pool", {
  scoped: Effect.gen(function*() {
    const cli = yield* CliProcess
    const admission = yield* Admission
    const { config } = yield* GatewayConfig
    const settings = config.pool
    // Every process lives in a child of this scope. On shutdown the running turns drain first
    // (within the grace period), then every CLI is killed.
    const poolScope = yield* Scope.make()
    yield* Effect.addFinalizer((exit) => Effect.zipRight(admission.drain, Scope.close(poolScope, exit)))
    // Background work starts from the pool's own context, never from the request that triggered
    // it: a fiber forked from a request inherits its span, and a long-lived standby watcher would
    // keep that request (and, through it, every earlier one) reachable.
    const daemon = yield* Effect.runtime<never>()
    const background = (effect: Effect.Effect<unknown>) =>
      Effect.sync(() => {
        Runtime.runFork(daemon)(Effect.forkIn(effect, poolScope))
      })
    const entries = new Map<string, Entry>()
    const defaultLaunch: LaunchOptions = { model: config.claude.default_model, systemPrompt: undefined }
    const signature = (launch: LaunchOptions) => launchSignature(config, launch)
    const defaultKey = signature(defaultLaunch)
    let processes = 0
    let leased = 0
    let hits = 0
    let misses = 0
    let spawned = 0

    const entryFor = (launch: LaunchOptions): Entry => {
      const key = signature(launch)
      let entry = entries.get(key)
      if (!entry) {
        entry = { launch, standby: [], waiters: [], spawning: 0, lastUsed: Date.now() }
        entries.set(key, entry)
      }
      return entry
    }

    /** Spawn a process in its own scope (a child of the pool's), counted until that scope closes. */
    const spawnOwned = (launch: LaunchOptions): Effect.Effect<Standby, CliError> =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(poolScope, ExecutionStrategy.sequential)
        processes++
        spawned++
        yield* Scope.addFinalizer(scope, Effect.sync(() => processes--))
        const handle = yield* cli.spawn(launch).pipe(
          Scope.extend(scope),
          Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
        )
        return { handle, scope, leased: false }
      })

    const standbyTotal = () => {
      let n = 0
      for (const entry of entries.values()) n += entry.standby.length + entry.spawning
      return n
    }

    const wanted = (key: string) => (key === defaultKey ? Math.max(settings.prewarm, settings.standby_per_signature) : settings.standby_per_signature)

    /** Top up the standbys of one signature, within the caps, in the background. */
    const replenish = (entry: Entry): Effect.Effect<void> =>
      Effect.suspend(() => {
        const key = signature(entry.launch)
        const missing = wanted(key) - entry.standby.length - entry.spawning
        const room = Math.min(settings.max_standby - standbyTotal(), settings.max_processes - processes)
        const count = Math.max(0, Math.min(missing, room))
        if (!settings.enabled || count === 0) return Effect.void
        entry.spawning += count
        const one = spawnOwned(entry.launch).pipe(
          Effect.tap((standby) =>
            warm(standby.handle).pipe(
              Effect.timeout("30 seconds"),
              Effect.onError(() => Scope.close(standby.scope, Exit.void))
            )
          ),
          Effect.ensuring(Effect.sync(() => entry.spawning--)),
          Effect.tap((standby) => watch(entry, standby)),
          Effect.tapError((error) => Effect.logWarning("standby spawn failed", error.message)),
          Effect.ignore
        )
        return background(Effect.all(Array.from({ length: count }, () => one), { discard: true }))
      })

    /**
     * The replacement of a taken standby starts a moment later: a CLI boots on a second of CPU,
     * and on a small machine that would slow the first turn of the CLI just taken (measured: by
     * 100–300 ms on 2 cores), which spends its first ~200 ms on CPU before it calls upstream.
     */
    const replenishSoon = (entry: Entry): Effect.Effect<void> =>
      settings.replace_delay_ms === 0
        ? replenish(entry)
        : background(Effect.zipRight(Effect.sleep(settings.replace_delay_ms), replenish(entry)))

    /** Ready means booted (the CLI answers a control request) and, per pool.warmup, warmed up. */
    const warm = (handle: CliHandle) =>
      Effect.zipRight(
        handle.control("get_binary_version"),
        settings.warmup === "context" ? handle.control("get_context_usage") : Effect.void
      )

    /** Keep a ready standby (or hand it to a waiter); if it dies unused, drop it and spawn another. */
    const watch = (entry: Entry, standby: Standby) =>
      Effect.gen(function*() {
        const waiter = entry.waiters.shift()
        if (waiter) {
          yield* Deferred.succeed(waiter, standby)
          return
        }
        entry.standby.push(standby)
        yield* standby.handle.exited.pipe(
          Effect.zipRight(Effect.suspend(() => {
            if (standby.leased) return Effect.void
            const index = entry.standby.indexOf(standby)
            if (index >= 0) entry.standby.splice(index, 1)
            return Effect.logWarning("standby CLI exited; replacing it").pipe(
              Effect.zipRight(Scope.close(standby.scope, Exit.void)),
              Effect.zipRight(replenish(entry))
            )
          })),
          Effect.forkIn(standby.scope)
        )
      })

    const lease = (standby: Standby) =>
      Effect.gen(function*() {
        standby.leased = true
        leased++
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => leased--).pipe(Effect.zipRight(Scope.close(standby.scope, Exit.void)))
        )
        return standby.handle
      })

    /** A process for one conversation, bound to the caller's scope. */
    const take = (launch: LaunchOptions): Effect.Effect<CliHandle, CliError, Scope.Scope> =>
      Effect.gen(function*() {
        if (!settings.enabled) {
          misses++
          return yield* Effect.flatMap(spawnOwned(launch), lease)
        }
        const entry = entryFor(launch)
        entry.lastUsed = Date.now()
        for (;;) {
          const standby = entry.standby.shift()
          if (!standby) break
          if (yield* standby.handle.isRunning) {
            hits++
            const handle = yield* Effect.uninterruptible(lease(standby))
            yield* replenishSoon(entry)
            return handle
          }
          yield* Scope.close(standby.scope, Exit.void)
        }
        if (entry.spawning > entry.waiters.length) {
          const waiter = yield* Deferred.make<Standby>()
          entry.waiters.push(waiter)
          const standby = yield* Deferred.await(waiter).pipe(
            Effect.timeout("10 seconds"),
            Effect.onInterrupt(() => abandon(entry, waiter)),
            Effect.catchAll(() => Effect.as(abandon(entry, waiter), undefined))
          )
          if (standby) {
            hits++
            const handle = yield* Effect.uninterruptible(lease(standby))
            yield* replenishSoon(entry)
            return handle
          }
        }
        misses++
        const handle = yield* Effect.flatMap(spawnOwned(launch), lease)
        yield* replenishSoon(entry)
        return handle
      })

    /** A process of its own, never a standby (e.g. one that resumes a CLI session), bound to the caller's scope. */
    const spawn = (launch: LaunchOptions): Effect.Effect<CliHandle, CliError, Scope.Scope> =>
      Effect.suspend(() => {
        misses++
        return Effect.flatMap(spawnOwned(launch), lease)
      })

    /** A waiter that gives up: unregister it, and keep a standby that reached it meanwhile. */
    const abandon = (entry: Entry, waiter: Deferred.Deferred<Standby>) =>
      Effect.gen(function*() {
        const index = entry.waiters.indexOf(waiter)
        if (index >= 0) entry.waiters.splice(index, 1)
        const done = yield* Deferred.poll(waiter)
        if (done._tag === "Some") entry.standby.push(yield* done.value)
      })

    // Signatures unused for idle_ttl lose their standbys; the default one keeps its prewarm.
    const sweep = Effect.gen(function*() {
      const now = Date.now()
      for (const [key, entry] of entries) {
        if (key === defaultKey || now - entry.lastUsed < settings.idle_ttl_seconds * 1000) continue
        entries.delete(key)
        for (const standby of entry.standby.splice(0)) yield* Scope.close(standby.scope, Exit.void)
      }
    })
    yield* sweep.pipe(
      Effect.delay(`${Math.max(1, Math.floor(settings.idle_ttl_seconds / 2))} seconds`),
      Effect.forever,
      Effect.forkIn(poolScope)
    )

    if (settings.enabled && settings.prewarm > 0) yield* replenish(entryFor(defaultLaunch))

    const stats = Effect.sync((): PoolStats => ({
      enabled: settings.enabled,
      processes,
      leased,
      hits,
      misses,
      spawned,
      signatures: [...entries.values()].map((entry) => ({
        model: entry.launch.model,
        systemPrompt: entry.launch.systemPrompt !== undefined,
        standby: entry.standby.length,
        spawning: entry.spawning
      }))
    }))

    return { take, spawn, stats } as const
  }),
  dependencies: [CliProcess.Default, Admission.Default]
}) {}
