import type { Scope } from "effect"
import type { OwnedProcess } from "./Conversations.js"
import type { LiveTurn } from "./ToolBridge.js"

/**
 * The life of a request's CLI process, as the request sees it: one state, changed only by the
 * events below, and one decision (`fate`) read when the request's scope closes. Parked turns and
 * kept CLIs live on, a settled one goes back to the pool (reset for another conversation),
 * anything else is killed — also when the client goes away mid-way.
 *
 *   None ─acquiring→ Acquiring ─held→ Held ─reading→ Reading ─finished→ Finished ─parked→ Parked
 *     └───────────────held────────────┘                 └─started→ Reading (its CLI session known)
 *   any state but Parked ─timedOut→ TimedOut
 *   any state ─handed→ Handed (its fate was carried out: after its turn finished, before the response ends)
 */
export type ProcessState =
  /** No process is the request's. */
  | { readonly _tag: "None" }
  /** A process is on its way into `scope` (the scope that kills it exists before the process does). */
  | { readonly _tag: "Acquiring"; readonly scope: Scope.CloseableScope }
  /** The process is the request's; no turn has been read from it yet. */
  | { readonly _tag: "Held"; readonly process: OwnedProcess }
  /**
   * A turn is being read. `keepFor`: the conversation whose next turn may use the CLI; `session`:
   * the CLI session of the turn once it started (kept for the conversation if the turn never finishes).
   */
  | {
    readonly _tag: "Reading"
    readonly process: OwnedProcess
    readonly turn: LiveTurn
    readonly keepFor: string | undefined
    readonly session: string | undefined
  }
  /** The turn finished (and was recorded). */
  | { readonly _tag: "Finished"; readonly process: OwnedProcess; readonly turn: LiveTurn; readonly keepFor: string | undefined }
  /** The turn waits for the client's tool results: the ToolBridge owns the process now. */
  | { readonly _tag: "Parked" }
  /** The turn ran out of time: its CLI may be stuck, so it is killed, never kept. */
  | { readonly _tag: "TimedOut"; readonly scope: Scope.CloseableScope | undefined; readonly turn: LiveTurn | undefined }
  /** Its fate was carried out: the process is no longer the request's. */
  | { readonly _tag: "Handed" }

export type ProcessEvent =
  | { readonly _tag: "Acquiring"; readonly scope: Scope.CloseableScope }
  | { readonly _tag: "Held"; readonly process: OwnedProcess }
  | { readonly _tag: "Reading"; readonly turn: LiveTurn; readonly keepFor: string | undefined }
  | { readonly _tag: "Started"; readonly session: string }
  | { readonly _tag: "Finished" }
  | { readonly _tag: "Parked" }
  | { readonly _tag: "TimedOut" }
  | { readonly _tag: "Handed" }

const scopeOf = (state: ProcessState): Scope.CloseableScope | undefined => {
  switch (state._tag) {
    case "Acquiring":
    case "TimedOut":
      return state.scope
    case "Held":
    case "Reading":
    case "Finished":
      return state.process.scope
    case "None":
    case "Parked":
    case "Handed":
      return undefined
  }
}

/** The next state; an event that does not apply to the state leaves it as it is. */
export const step = (state: ProcessState, event: ProcessEvent): ProcessState => {
  switch (event._tag) {
    case "Acquiring":
      return state._tag === "None" ? { _tag: "Acquiring", scope: event.scope } : state
    case "Held":
      return state._tag === "None" || state._tag === "Acquiring" ? { _tag: "Held", process: event.process } : state
    case "Reading":
      return state._tag === "Held"
        ? { _tag: "Reading", process: state.process, turn: event.turn, keepFor: event.keepFor, session: undefined }
        : state
    case "Started":
      return state._tag === "Reading" ? { ...state, session: event.session } : state
    case "Finished":
      return state._tag === "Reading"
        ? { _tag: "Finished", process: state.process, turn: state.turn, keepFor: state.keepFor }
        : state
    case "Parked":
      return state._tag === "Finished" ? { _tag: "Parked" } : state
    case "Handed":
      return { _tag: "Handed" }
    case "TimedOut":
      return state._tag === "Parked" || state._tag === "Handed"
        ? state
        : { _tag: "TimedOut", scope: scopeOf(state), turn: state._tag === "Reading" || state._tag === "Finished" ? state.turn : undefined }
  }
}

/** What becomes of the process when the request's scope closes. */
export type Fate =
  | { readonly _tag: "Leave" }
  | {
    readonly _tag: "Kill"
    readonly scope: Scope.CloseableScope
    readonly turn: LiveTurn | undefined
    /** A started turn that did not finish: its conversation goes on in this CLI session. */
    readonly attach: { readonly conversation: string; readonly session: string } | undefined
  }
  | {
    /** Stop its turn if one runs; once idle it is kept for `keepFor`, else released to the pool — or killed if it will not stop. */
    readonly _tag: "Settle"
    readonly process: OwnedProcess
    readonly turn: LiveTurn | undefined
    readonly keepFor: string | undefined
    readonly attach: { readonly conversation: string; readonly session: string } | undefined
  }

export const fate = (state: ProcessState, options: { readonly keepsLive: boolean; readonly reuses: boolean }): Fate => {
  switch (state._tag) {
    case "None":
    case "Parked":
    case "Handed":
      return { _tag: "Leave" }
    case "Acquiring":
      return { _tag: "Kill", scope: state.scope, turn: undefined, attach: undefined }
    case "TimedOut":
      return state.scope === undefined ? { _tag: "Leave" } : { _tag: "Kill", scope: state.scope, turn: state.turn, attach: undefined }
    case "Held":
    case "Reading":
    case "Finished": {
      const turn = state._tag === "Held" ? undefined : state.turn
      const keepFor = state._tag === "Held" ? undefined : state.keepFor
      const session = state._tag === "Reading" ? state.session : undefined
      const attach = keepFor !== undefined && session !== undefined ? { conversation: keepFor, session } : undefined
      const kept = keepFor !== undefined && options.keepsLive
      // Nothing will use it again: no settling, it ends now.
      if (!kept && !options.reuses) return { _tag: "Kill", scope: state.process.scope, turn, attach }
      return { _tag: "Settle", process: state.process, turn, keepFor: kept ? keepFor : undefined, attach }
    }
  }
}
