import { Chunk, Effect, Exit, FiberMap, Option, Scope } from "effect"
import type { TurnError } from "../cli/TurnEvents.js"
import type { OwnedProcess } from "./Conversations.js"
import { GatewayConfig } from "../config/GatewayConfig.js"
import type { TurnEvent } from "../domain/Turn.js"

/**
 * Turns that wait for the client's tool results. When the model calls the client's functions the
 * HTTP response ends with the calls, and the turn, with its CLI process and the unanswered MCP
 * calls, is parked here under the calls' ids. The follow-up request carrying the results claims it
 * and reads on. Parked turns end after `tools.park_ttl_seconds`, when more than `tools.max_parked`
 * wait (oldest first), and on shutdown.
 */

/** A turn whose events may be read by several requests in a row. */
export interface LiveTurn {
  readonly process: OwnedProcess
  /** The reading of this turn's output (a child of the process's scope). */
  readonly turnScope: Scope.CloseableScope
  /** The next events; fails with None once the turn has ended. */
  readonly pull: Effect.Effect<Chunk.Chunk<TurnEvent>, Option.Option<TurnError>>
  /** Events read past the end of the previous request's part. */
  buffer: Chunk.Chunk<TurnEvent>
  readonly conversationId: string | undefined
}

interface Parked {
  readonly turn: LiveTurn
  readonly ids: ReadonlyArray<string>
}

/** A parked turn's key in the expiry timers: its first call id (ids are unique per turn). */
const keyOf = (entry: Parked) => entry.ids[0]!

export class ToolBridge extends Effect.Service<ToolBridge>()("ToolBridge", {
  scoped: Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const ttl = `${config.tools.park_ttl_seconds} seconds` as const
    const byId = new Map<string, Parked>()
    // Oldest first: the cap ends these.
    const parked: Array<Parked> = []
    // Expiry timers run in the bridge's own scope and context (not the request's, which they would
    // keep reachable): a parked turn outlives the request that parked it.
    const expiries = yield* FiberMap.make<string>()
    const expire = yield* FiberMap.runtime(expiries)<never>()

    const forget = (entry: Parked) => {
      const index = parked.indexOf(entry)
      if (index >= 0) parked.splice(index, 1)
      for (const id of entry.ids) byId.delete(id)
    }

    const end = (entry: Parked, why: string) =>
      Effect.suspend(() => {
        forget(entry)
        return Effect.logInfo(`ending a parked tool-call turn: ${why}`, { tool_call_ids: entry.ids }).pipe(
          Effect.zipRight(Scope.close(entry.turn.process.scope, Exit.void))
        )
      })

    /** End a parked turn from outside its expiry timer (which must not outlive it). */
    const drop = (entry: Parked, why: string) =>
      Effect.zipRight(FiberMap.remove(expiries, keyOf(entry)), end(entry, why))

    yield* Effect.addFinalizer(() => Effect.forEach([...parked], (entry) => drop(entry, "shutdown"), { discard: true }))

    /** Park a turn until the results for `ids` come (or it expires). */
    const park = (turn: LiveTurn, ids: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const entry: Parked = { turn, ids }
        parked.push(entry)
        for (const id of ids) byId.set(id, entry)
        expire(keyOf(entry), Effect.sleep(ttl).pipe(Effect.zipRight(end(entry, "no results in time"))))
        while (parked.length > config.tools.max_parked) yield* drop(parked[0]!, "too many parked turns")
      })

    /**
     * The conversation's parked turn waiting for exactly these results, taken out of the registry.
     * It serves only a follow-up that offers the same functions (`tools`, as JSON); otherwise it ends.
     */
    const claim = (ids: ReadonlyArray<string>, conversationId: string, tools: string): Effect.Effect<Option.Option<LiveTurn>> =>
      Effect.gen(function*() {
        const entry = ids.length > 0 ? byId.get(ids[0]!) : undefined
        if (entry === undefined || entry.turn.conversationId !== conversationId) return Option.none()
        forget(entry)
        yield* FiberMap.remove(expiries, keyOf(entry))
        const matches = entry.ids.length === ids.length && entry.ids.every((id) => ids.includes(id))
        if (matches && entry.turn.process.tools === tools) return Option.some(entry.turn)
        // The model waits for other calls than these results answer, or the follow-up offers other
        // functions (tool_choice "none" included): that CLI cannot go on; the results go to a resumed session.
        yield* Scope.close(entry.turn.process.scope, Exit.void)
        return Option.none()
      })

    /** End the conversation's parked turns: its next turn starts without them (one CLI per session). */
    const endParked = (conversationId: string) => {
      const ending = parked.filter((entry) => entry.turn.conversationId === conversationId)
      // Most turns have none: no forEach (its loop costs a turn a few run-loop steps even when empty).
      return ending.length === 0
        ? Effect.void
        : Effect.forEach(ending, (entry) => drop(entry, "the conversation went on without the results"), { discard: true })
    }

    /** The conversation of the parked turn waiting for these results, if any. */
    const conversationOf = (ids: ReadonlyArray<string>) =>
      Effect.sync(() => (ids.length > 0 ? byId.get(ids[0]!)?.turn.conversationId : undefined))

    const count = Effect.sync(() => parked.length)

    return { park, claim, conversationOf, endParked, count } as const
  })
}) {}
