import { Effect, Scope } from "effect"
import { describe, expect, it } from "vitest"
import type { OwnedProcess } from "../../src/services/Conversations.js"
import { fate, type ProcessEvent, type ProcessState, step } from "../../src/services/ProcessOwnership.js"
import type { LiveTurn } from "../../src/services/ToolBridge.js"

// The fate of a request's CLI process: the transitions and the one decision the request's finalizer makes.

const scope = Effect.runSync(Scope.make())
const process = { scope } as unknown as OwnedProcess
const turn = { conversationId: "conv_1" } as unknown as LiveTurn
const run = (...events: ReadonlyArray<ProcessEvent>): ProcessState =>
  events.reduce<ProcessState>(step, { _tag: "None" })

const both = { keepsLive: true, reuses: true }
const neither = { keepsLive: false, reuses: false }

describe("a request's CLI process", () => {
  it("is left alone when the request never got one, or parked its turn", () => {
    expect(fate(run(), both)).toEqual({ _tag: "Leave" })
    const parked = run({ _tag: "Held", process }, { _tag: "Reading", turn, keepFor: "conv_1" }, { _tag: "Finished" }, { _tag: "Parked" })
    expect(parked).toEqual({ _tag: "Parked" })
    expect(fate(parked, both)).toEqual({ _tag: "Leave" })
    // A deadline that passes after the turn was parked does not take it from the ToolBridge.
    expect(step(parked, { _tag: "TimedOut" })).toEqual({ _tag: "Parked" })
  })

  it("is killed while it is still on its way, and after a timeout", () => {
    expect(fate(run({ _tag: "Acquiring", scope }), both)).toMatchObject({ _tag: "Kill", scope })
    const timedOut = run({ _tag: "Acquiring", scope }, { _tag: "Held", process }, { _tag: "Reading", turn, keepFor: "conv_1" }, { _tag: "TimedOut" })
    expect(fate(timedOut, both)).toEqual({ _tag: "Kill", scope, turn, attach: undefined })
    // Nothing brings a timed-out process back.
    expect(step(timedOut, { _tag: "Finished" })).toBe(timedOut)
    expect(fate(run({ _tag: "TimedOut" }), both)).toEqual({ _tag: "Leave" })
  })

  it("is kept for its conversation once settled, else goes back to the pool, else is killed", () => {
    const finished = run({ _tag: "Held", process }, { _tag: "Reading", turn, keepFor: "conv_1" }, { _tag: "Finished" })
    expect(fate(finished, both)).toEqual({ _tag: "Settle", process, turn, keepFor: "conv_1", attach: undefined })
    expect(fate(finished, { keepsLive: false, reuses: true })).toEqual({ _tag: "Settle", process, turn, keepFor: undefined, attach: undefined })
    expect(fate(finished, neither)).toEqual({ _tag: "Kill", scope, turn, attach: undefined })
    // A one-shot request's process (no conversation) is never kept.
    const oneShot = run({ _tag: "Held", process }, { _tag: "Reading", turn, keepFor: undefined }, { _tag: "Finished" })
    expect(fate(oneShot, both)).toMatchObject({ _tag: "Settle", keepFor: undefined })
  })

  it("gives its conversation the CLI session of a turn that started and never finished", () => {
    const cut = run({ _tag: "Held", process }, { _tag: "Reading", turn, keepFor: "conv_1" }, { _tag: "Started", session: "s-1" })
    expect(fate(cut, both)).toEqual({ _tag: "Settle", process, turn, keepFor: "conv_1", attach: { conversation: "conv_1", session: "s-1" } })
    expect(fate(cut, neither)).toEqual({ _tag: "Kill", scope, turn, attach: { conversation: "conv_1", session: "s-1" } })
    // Finished: the turn was recorded with its session.
    expect(fate(step(cut, { _tag: "Finished" }), both)).toMatchObject({ attach: undefined })
  })

  it("is handed over once: its fate carried out, nothing is left to do when the request ends", () => {
    const finished = run({ _tag: "Held", process }, { _tag: "Reading", turn, keepFor: "conv_1" }, { _tag: "Finished" })
    const handed = step(finished, { _tag: "Handed" })
    expect(handed).toEqual({ _tag: "Handed" })
    expect(fate(handed, both)).toEqual({ _tag: "Leave" })
    expect(step(handed, { _tag: "TimedOut" })).toEqual({ _tag: "Handed" })
    expect(step(handed, { _tag: "Parked" })).toEqual({ _tag: "Handed" })
  })

  it("ignores events that do not apply to its state", () => {
    expect(run({ _tag: "Reading", turn, keepFor: "conv_1" })).toEqual({ _tag: "None" })
    expect(run({ _tag: "Parked" })).toEqual({ _tag: "None" })
    const held = run({ _tag: "Held", process })
    expect(step(held, { _tag: "Acquiring", scope })).toBe(held)
    expect(step(held, { _tag: "Started", session: "s" })).toBe(held)
  })
})
