import { Deferred, Effect, ExecutionStrategy, Exit, FiberSet, Scope } from "effect"
import * as fs from "node:fs"
import { type CliError, CliProtocolError } from "../cli/CliErrors.js"
import { type CliHandle, CliProcess, launchSignature } from "../cli/CliProcess.js"
import { Admission } from "./Admission.js"
import { GatewayConfig } from "../config/GatewayConfig.js"
import type { LaunchOptions } from "../domain/Turn.js"

/**
 * The CLI processes of the chat path, and the one place that decides their life:
 *
 *   booting → standby → leased (a turn; then kept for its conversation, or parked for tool results)
 *           → resetting → standby …, or ended (killed).
 *
 * A process whose conversation no longer needs it comes back through `release`: it is reset
 * (`CliHandle.reset`: a new, empty session that leaves the old one resumable) and serves the next
 * conversation, so a new conversation rarely waits for a CLI boot. Processes are grouped by what
 * needs a process of its own (client tool set, cwd, flags without a runtime switch); model and
 * system prompt are set per lease with `set_model`. A process is retired after `pool.max_uses`
 * conversations or past `pool.max_rss_mb`; a reset that fails or times out kills it.
 * (Effect's KeyedPool does not run item finalizers on invalidation, so the bookkeeping is explicit.)
 */

type State = "booting" | "standby" | "leased" | "resetting" | "ended"

interface Member {
  readonly handle: CliHandle
  /** Closing it kills the process. */
  readonly scope: Scope.CloseableScope
  readonly entry: Entry
  state: State
  /** Conversations it has served. */
  uses: number
  /** What it runs with now; a system prompt of `null` is unknown (a resumed session's own). */
  model: string
  systemPrompt: string | undefined | null
  /** Upstream max_tokens it runs with (undefined: the CLI's default for the model). */
  maxOutputTokens: number | undefined
}

interface Entry {
  readonly key: string
  /** What its standbys are spawned with (no system prompt, no session to resume). */
  readonly launch: LaunchOptions
  readonly standby: Array<Member>
  /** Requests waiting for a process that is booting or resetting (sooner than a spawn of their own). */
  readonly waiters: Array<Deferred.Deferred<Member>>
  spawning: number
  resetting: number
  /** Its processes that have not ended. */
  alive: number
  lastUsed: number
  /** Requests that found no ready process while one was resetting, since the group was last quiet. */
  shortfalls: number
}

/** A process lent to a caller: closing `scope` ends the lease (and kills the process unless it was released). */
export interface Lease {
  readonly scope: Scope.CloseableScope
  readonly handle: CliHandle
}

export interface PoolStats {
  readonly enabled: boolean
  readonly processes: number
  readonly leased: number
  /** Requests served by a ready process / by a spawn on the request path. */
  readonly hits: number
  readonly misses: number
  readonly spawned: number
  /** Processes reset for another conversation; resets that failed (process killed); processes retired. */
  readonly reused: number
  readonly resetFailed: number
  readonly retired: number
  readonly signatures: ReadonlyArray<{ readonly model: string; readonly systemPrompt: boolean; readonly standby: number; readonly spawning: number }>
}

/** Resident memory of a process in MB (Linux; 0 where /proc is not readable). */
const rssMb = (pid: number): number => {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? 0 : Number(match[1]) / 1024
  } catch {
    return 0
  }
}

/** A process whose system prompt was replaced cannot go back to the CLI's own: it serves only requests that set one. */
const fits = (member: Member, launch: LaunchOptions) =>
  launch.systemPrompt === "" ? member.systemPrompt === "" : launch.systemPrompt !== undefined || member.systemPrompt === undefined

export class Pool extends Effect.Service<Pool>()("Pool", {
  scoped: Effect.gen(function*() {
    const cli = yield* CliProcess
    const admission = yield* Admission
    const { config } = yield* GatewayConfig
    const settings = config.pool
    const reuse = settings.enabled && settings.reuse
    const demandWindowMs = settings.demand_window_seconds * 1000
    // Every process lives in a child of this scope. On shutdown the running turns drain first
    // (within the grace period), then every CLI is killed.
    const poolScope = yield* Scope.make()
    let closing = false
    yield* Effect.addFinalizer((exit) =>
      Effect.zipRight(admission.drain, Effect.suspend(() => {
        closing = true
        return Scope.close(poolScope, exit)
      }))
    )
    // Background work starts from the pool's own context, never from the request that triggered
    // it: a fiber forked from a request inherits its span, and a long-lived standby watcher would
    // keep that request (and, through it, every earlier one) reachable.
    // The fibers live in the pool's scope (interrupted when it closes) and run on the runtime captured here.
    const runBackground = yield* Scope.extend(FiberSet.makeRuntime<never>(), poolScope)
    const background = (effect: Effect.Effect<unknown>) =>
      Effect.sync(() => {
        runBackground(effect)
      })
    const entries = new Map<string, Entry>()
    const members = new Map<CliHandle, Member>()
    /** What needs a process of its own: everything but the model and the system prompt (set per lease). */
    // Model, system prompt and max output tokens switch at runtime: they do not need a process of their own.
    const reuseKey = (launch: LaunchOptions) =>
      launchSignature(config, { ...launch, model: config.claude.default_model, systemPrompt: undefined, maxOutputTokens: undefined, resume: undefined })
    const defaultLaunch: LaunchOptions = { model: config.claude.default_model, systemPrompt: undefined }
    const defaultKey = reuseKey(defaultLaunch)
    let processes = 0
    let leased = 0
    let hits = 0
    let misses = 0
    let spawned = 0
    let reused = 0
    let resetFailed = 0
    let retired = 0

    const entryFor = (launch: LaunchOptions): Entry => {
      const key = reuseKey(launch)
      let entry = entries.get(key)
      if (!entry) {
        entry = {
          key,
          launch: { ...launch, systemPrompt: undefined, maxOutputTokens: undefined, resume: undefined },
          standby: [],
          waiters: [],
          spawning: 0,
          resetting: 0,
          alive: 0,
          lastUsed: Date.now(),
          shortfalls: 0
        }
        entries.set(key, entry)
      }
      return entry
    }

    const removeStandby = (member: Member) => {
      const index = member.entry.standby.indexOf(member)
      if (index >= 0) member.entry.standby.splice(index, 1)
    }

    const kill = (member: Member) => Scope.close(member.scope, Exit.void)

    /** Spawn a process in its own scope (a child of the pool's); it is the pool's until that scope closes. */
    const spawnMember = (entry: Entry, launch: LaunchOptions): Effect.Effect<Member, CliError> =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(poolScope, ExecutionStrategy.sequential)
        processes++
        spawned++
        entry.alive++
        yield* Scope.addFinalizer(scope, Effect.sync(() => {
          processes--
          entry.alive--
        }))
        const handle = yield* cli.spawn(launch).pipe(
          Scope.extend(scope),
          Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
        )
        const member: Member = {
          handle,
          scope,
          entry,
          state: "booting",
          uses: 0,
          model: launch.model,
          systemPrompt: launch.resume === undefined ? launch.systemPrompt : null,
          maxOutputTokens: launch.maxOutputTokens
        }
        members.set(handle, member)
        yield* Scope.addFinalizer(scope, Effect.sync(() => {
          member.state = "ended"
          members.delete(handle)
          removeStandby(member)
        }))
        // One watcher for the process's life: a standby that dies is dropped and replaced.
        yield* handle.exited.pipe(
          Effect.zipRight(Effect.suspend(() => {
            if (member.state !== "standby") return Effect.void
            removeStandby(member)
            if (closing) return Effect.void
            return Effect.logWarning("standby CLI exited; replacing it").pipe(
              Effect.zipRight(background(Effect.zipRight(kill(member), replenish(entry))))
            )
          })),
          Effect.forkIn(scope)
        )
        return member
      })

    const standbyTotal = () => {
      let n = 0
      for (const entry of entries.values()) n += entry.standby.length + entry.spawning + entry.resetting
      return n
    }

    /**
     * Ready processes a group should have: its floor, plus one for each request that found none ready
     * and none on its way (booting or resetting). After pool.demand_window_seconds of quiet it is back to the floor.
     * Demand past the floor never counts more processes than the session slots not in use: when every
     * slot holds a leased process, those are the ones the next requests get back (reset), and booting
     * more only took CPU from the turns (8 concurrent clients: 17–26 boots per ~100 conversations, measured).
     */
    const wanted = (entry: Entry) => {
      const floor = entry.key === defaultKey ? Math.max(settings.prewarm, settings.standby_per_signature) : settings.standby_per_signature
      const freeSlots = Math.max(0, config.claude.max_concurrent_sessions - leased)
      return floor + Math.min(entry.shortfalls, freeSlots)
    }

    /** A ready process goes to a waiting request, else stands by (within the caps). */
    const offer = (member: Member, reset = false): Effect.Effect<void> =>
      Effect.suspend(() => {
        const entry = member.entry
        if (member.state === "ended") return Effect.void
        member.state = "standby"
        const waiter = entry.waiters.shift()
        if (waiter) return Deferred.succeed(waiter, member)
        if (closing || entries.get(entry.key) !== entry || standbyTotal() >= settings.max_standby) return kill(member)
        // A process just reset stands by even past the group's demand (within max_standby): killing it
        // while a replacement boots was churn (a boot per sequential conversation, measured); the sweep
        // brings the group back to its floor after a quiet demand window. A boot that arrives past the
        // demand (a burst is over) ends.
        if (!reset && entry.standby.length >= Math.max(1, wanted(entry))) return kill(member)
        entry.standby.push(member)
        return Effect.void
      })

    /** Top up the standbys of one key, within the caps, in the background. */
    const replenish = (entry: Entry): Effect.Effect<void> =>
      Effect.suspend(() => {
        const missing = wanted(entry) - entry.standby.length - entry.spawning - entry.resetting
        const room = Math.min(settings.max_standby - standbyTotal(), settings.max_processes - processes)
        const count = Math.max(0, Math.min(missing, room))
        if (!settings.enabled || closing || count === 0) return Effect.void
        entry.spawning += count
        const one = spawnMember(entry, entry.launch).pipe(
          Effect.tap((member) =>
            warm(member.handle).pipe(
              Effect.timeout("30 seconds"),
              Effect.onError(() => kill(member))
            )
          ),
          Effect.ensuring(Effect.sync(() => entry.spawning--)),
          Effect.flatMap((member) => offer(member)),
          // A boot cut short by the pool closing is not a failure worth a warning (an embedding app's output).
          Effect.tapError((error) => (closing ? Effect.void : Effect.logWarning("standby spawn failed", error.message))),
          Effect.ignore
        )
        return background(Effect.all(Array.from({ length: count }, () => one), { discard: true }))
      })

    /**
     * A taken standby is topped up a moment later: a CLI boots on a second of CPU, and on a small
     * machine that would slow the first turn of the CLI just taken (measured: by 100–300 ms on 2
     * cores). Most often the process released meanwhile (reset for reuse) makes the boot needless:
     * the count is taken when the delay is over.
     */
    const replenishSoon = (entry: Entry): Effect.Effect<void> =>
      settings.replace_delay_ms === 0
        ? replenish(entry)
        : background(Effect.zipRight(Effect.sleep(settings.replace_delay_ms), replenish(entry)))

    /** Ready means booted (the CLI answers its initialize) and, per pool.warmup, warmed up. */
    const warm = (handle: CliHandle) =>
      Effect.zipRight(handle.ready, settings.warmup === "context" ? handle.control("get_context_usage") : Effect.void)

    /**
     * Model, system prompt and max output tokens of the lease, switched at runtime when the process
     * ran with others. Max output tokens is the CLI's environment variable, which
     * `apply_flag_settings` sets in the running process ("" restores the model's default; verified
     * upstream with CLI 2.1.331).
     */
    const configure = (member: Member, launch: LaunchOptions): Effect.Effect<void, CliError> =>
      Effect.gen(function*() {
        const prompt = launch.systemPrompt !== undefined && launch.systemPrompt !== member.systemPrompt ? launch.systemPrompt : undefined
        if (member.model !== launch.model || prompt !== undefined) {
          yield* member.handle.control("set_model", { model: launch.model, ...(prompt === undefined ? {} : { system_prompt: prompt }) })
          member.model = launch.model
          if (prompt !== undefined) member.systemPrompt = prompt
        }
        if (member.maxOutputTokens !== launch.maxOutputTokens) {
          const value = launch.maxOutputTokens === undefined ? "" : String(launch.maxOutputTokens)
          yield* member.handle.control("apply_flag_settings", { settings: { env: { CLAUDE_CODE_MAX_OUTPUT_TOKENS: value } } })
          member.maxOutputTokens = launch.maxOutputTokens
        }
      }).pipe(Effect.catchTag("ControlRequestFailed", (error) => Effect.fail(new CliProtocolError({ reason: error.message }))))

    /**
     * Lend a process to the caller's scope. Registering the lease cannot be interrupted (the process
     * would belong to no one); closing the scope kills the process unless it was released first.
     */
    const lease = (member: Member) =>
      Effect.uninterruptible(Effect.gen(function*() {
        member.state = "leased"
        leased++
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            leased--
            return member.state === "leased" ? kill(member) : Effect.void
          })
        )
      }))

    /** A new process, lent as soon as it is spawned (interruptible while it spawns, never in between). */
    const spawnLeased = (entry: Entry, spawnWith: LaunchOptions, launch: LaunchOptions) =>
      Effect.uninterruptibleMask((restore) => Effect.tap(restore(spawnMember(entry, spawnWith)), lease)).pipe(
        Effect.flatMap((member) => Effect.as(configure(member, launch), member.handle))
      )

    /**
     * The best ready process of the entry for this launch, taken out: one set up like it, else (for a
     * request that sets a system prompt) one whose prompt was replaced already, keeping the CLI's own.
     */
    const pick = (entry: Entry, launch: LaunchOptions): Member | undefined => {
      let best: Member | undefined
      let bestScore = -1
      for (const member of entry.standby) {
        if (!fits(member, launch)) continue
        const score = (member.systemPrompt === launch.systemPrompt ? 4 : member.systemPrompt !== undefined ? 2 : 0) +
          (member.model === launch.model ? 1 : 0)
        if (score > bestScore) {
          best = member
          bestScore = score
        }
      }
      if (best !== undefined) removeStandby(best)
      return best
    }

    /** A process for a new conversation, bound to the caller's scope. */
    const take = (launch: LaunchOptions): Effect.Effect<CliHandle, CliError, Scope.Scope> =>
      Effect.withSpan(takeProcess(launch), "gateway.pool.acquire", { attributes: { "gateway.model": launch.model } })

    const takeProcess = (launch: LaunchOptions): Effect.Effect<CliHandle, CliError, Scope.Scope> =>
      Effect.gen(function*() {
        const entry = entryFor(launch)
        const fresh = { ...launch, resume: undefined }
        if (!settings.enabled) {
          misses++
          return yield* spawnLeased(entry, fresh, launch)
        }
        const now = Date.now()
        if (now - entry.lastUsed > demandWindowMs) entry.shortfalls = 0
        entry.lastUsed = now
        // Taking a ready process and lending it is one step: an interruption cannot come between.
        const ready = yield* Effect.uninterruptible(Effect.gen(function*() {
          for (;;) {
            const member = pick(entry, launch)
            if (member === undefined) return undefined
            if (yield* member.handle.isRunning) {
              yield* lease(member)
              return member
            }
            yield* kill(member)
          }
        }))
        // A process being reset or booted for nobody else serves this request (a reset is tens of
        // ms): back-to-back conversations wait for the one just released rather than boot another
        // (counting them as demand booted a standby per conversation and then killed the reset
        // process as surplus: 65 boots per 100, measured). Demand is a request that finds nothing
        // ready and nothing on its way: only then do standbys grow past the floor.
        const onItsWay = entry.spawning + entry.resetting > entry.waiters.length
        if (ready === undefined && !onItsWay) entry.shortfalls = Math.min(entry.shortfalls + 1, settings.max_standby)
        const awaited = ready !== undefined || !onItsWay ? ready : yield* awaitReady(entry, launch)
        if (awaited !== undefined) {
          yield* Effect.annotateCurrentSpan("gateway.pool.hit", true)
          hits++
          yield* replenishSoon(entry)
          return yield* Effect.as(configure(awaited, launch), awaited.handle)
        }
        misses++
        yield* Effect.annotateCurrentSpan("gateway.pool.hit", false)
        const handle = yield* spawnLeased(entry, fresh, launch)
        yield* replenishSoon(entry)
        return handle
      })

    /**
     * Wait (bounded) for a process that is booting or resetting, lent to the caller when it comes:
     * sooner than a spawn of its own. A process that does not fit goes back to the pool.
     */
    const awaitReady = (entry: Entry, launch: LaunchOptions) =>
      Effect.gen(function*() {
        const waiter = yield* Deferred.make<Member>()
        entry.waiters.push(waiter)
        return yield* Effect.uninterruptibleMask((restore) =>
          restore(Effect.timeout(Deferred.await(waiter), "10 seconds")).pipe(
            Effect.onInterrupt(() => abandon(entry, waiter)),
            Effect.catchAll(() => Effect.as(abandon(entry, waiter), undefined)),
            Effect.flatMap((member) =>
              Effect.gen(function*() {
                if (member === undefined) return undefined
                if (fits(member, launch) && (yield* member.handle.isRunning)) {
                  yield* lease(member)
                  return member
                }
                yield* offer(member)
                return undefined
              })
            )
          )
        )
      })

    /** A process of its own, never a standby (e.g. one that resumes a CLI session), bound to the caller's scope. */
    const spawn = (launch: LaunchOptions): Effect.Effect<CliHandle, CliError, Scope.Scope> =>
      Effect.suspend(() => {
        misses++
        return spawnLeased(entryFor(launch), launch, launch)
      }).pipe(Effect.withSpan("gateway.pool.acquire", { attributes: { "gateway.model": launch.model, "gateway.pool.hit": false, "gateway.pool.resume": true } }))

    /** A waiter that gives up: unregister it, and keep a process that reached it meanwhile. */
    const abandon = (entry: Entry, waiter: Deferred.Deferred<Member>) =>
      Effect.gen(function*() {
        const index = entry.waiters.indexOf(waiter)
        if (index >= 0) entry.waiters.splice(index, 1)
        const done = yield* Deferred.poll(waiter)
        if (done._tag === "Some") yield* offer(yield* done.value)
      })

    /**
     * The lease's conversation no longer needs its process: reset it for the next one, or kill it
     * (pool or reuse off, busy, worn out, no room). Either way the lease's scope is closed here.
     */
    const release = (lease: Lease): Effect.Effect<void> =>
      Effect.gen(function*() {
        const end = Scope.close(lease.scope, Exit.void)
        const member = members.get(lease.handle)
        if (member === undefined || member.state !== "leased" || !reuse || closing) return yield* end
        const entry = member.entry
        if (!(yield* member.handle.isIdle) || (standbyTotal() >= settings.max_standby && entry.waiters.length === 0)) {
          return yield* end
        }
        member.uses++
        const rss = rssMb(member.handle.pid)
        if (member.uses >= settings.max_uses || rss > settings.max_rss_mb) {
          retired++
          yield* Effect.logInfo("retiring a CLI process", { pid: member.handle.pid, uses: member.uses, rss_mb: Math.round(rss) })
          return yield* end
        }
        member.state = "resetting"
        entry.resetting++
        yield* end // the lease's finalizer leaves a resetting process alone
        yield* background(member.handle.reset.pipe(
          Effect.timeoutFail({
            duration: settings.reset_timeout_ms,
            onTimeout: () => new CliProtocolError({ reason: `reset took over ${settings.reset_timeout_ms} ms` })
          }),
          Effect.ensuring(Effect.sync(() => entry.resetting--)),
          Effect.matchEffect({
            onSuccess: () => {
              reused++
              return offer(member, true)
            },
            onFailure: (error) => {
              resetFailed++
              if (closing) return kill(member)
              return Effect.logWarning("CLI reset failed; killing the process", { pid: member.handle.pid, error: error.message }).pipe(
                Effect.zipRight(kill(member))
              )
            }
          })
        ))
      })

    /**
     * Ready a process for another turn of its conversation with this launch's model and system
     * prompt (a changed system prompt applies from the next turn).
     */
    const prepare = (handle: CliHandle, launch: LaunchOptions): Effect.Effect<void, CliError> =>
      Effect.suspend(() => {
        const member = members.get(handle)
        return member === undefined ? Effect.void : configure(member, launch)
      })

    // Keys unused for idle_ttl lose their standbys; the default one keeps its prewarm.
    const sweep = Effect.gen(function*() {
      const now = Date.now()
      for (const [key, entry] of entries) {
        if (now - entry.lastUsed > demandWindowMs) {
          entry.shortfalls = 0
          // Back to the floor: standbys past it end.
          for (const member of entry.standby.splice(wanted(entry))) yield* kill(member)
        }
        if (key === defaultKey || now - entry.lastUsed < settings.idle_ttl_seconds * 1000) continue
        for (const member of entry.standby.splice(0)) yield* kill(member)
        if (entry.alive === 0 && entry.spawning === 0 && entry.waiters.length === 0) entries.delete(key)
      }
    })
    yield* sweep.pipe(
      Effect.delay(`${Math.max(1, Math.floor(Math.min(settings.idle_ttl_seconds, settings.demand_window_seconds) / 2))} seconds`),
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
      reused,
      resetFailed,
      retired,
      signatures: [...entries.values()].map((entry) => ({
        model: entry.launch.model,
        systemPrompt: entry.standby.some((member) => member.systemPrompt !== undefined),
        standby: entry.standby.length,
        spawning: entry.spawning
      }))
    }))

    /** Which live process may continue a conversation: the same reuse key and model. */
    const processKey = (launch: LaunchOptions) => `${reuseKey(launch)}\n${launch.model}`

    /** Whether released processes are reset for other conversations (`pool.enabled` and `pool.reuse`). */
    const reuses = reuse

    return { take, spawn, release, prepare, processKey, reuses, stats } as const
  }),
  dependencies: [CliProcess.Default, Admission.Default]
}) {}
