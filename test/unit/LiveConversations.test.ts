import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option, Scope, Stream } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { CliHandle } from "../../src/cli/CliProcess.js"
import { decodeConfig, GatewayConfig } from "../../src/config/GatewayConfig.js"
import { Conversations, type OwnedProcess } from "../../src/services/Conversations.js"

// An idle CLI that is never asked for a turn: what a live conversation holds between turns.
const idle: CliHandle = {
  pid: 0,
  turn: () => Stream.dieMessage("no turn in this test"),
  read: () => Effect.dieMessage("no turn in this test"),
  control: () => Effect.dieMessage("no control request in this test"),
  ready: Effect.void,
  reset: Effect.void,
  isRunning: Effect.succeed(true),
  isIdle: Effect.succeed(true),
  whenIdle: Effect.succeed(true),
  exited: Effect.never,
  cutTurn: () => {},
  tools: undefined
}

// The idle timeout in minutes, below the config schema's whole minutes: 0.002 min = 120 ms.
const config = Either.getOrThrow(decodeConfig({
  conversation: { data_dir: fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-live-")) },
  pool: { enabled: false, prewarm: 0 }
}))
const layer = Conversations.Default.pipe(Layer.provide(Layer.succeed(GatewayConfig, GatewayConfig.make({
  config: { ...config, conversation: { ...config.conversation, session_timeout_minutes: 0.002 } }
}))))

describe("Conversations' live CLIs", () => {
  it.live("end after conversation.session_timeout_minutes idle; one taken back for a turn keeps its process", () =>
    Effect.gen(function*() {
      const conversations = yield* Conversations
      const ended: Array<string> = []
      const process = (name: string) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          yield* Scope.addFinalizer(scope, Effect.sync(() => ended.push(name)))
          return { scope, handle: idle, signature: "s", tools: "[]" } satisfies OwnedProcess
        })
      yield* conversations.keepLive("a", yield* process("a"))
      yield* conversations.keepLive("b", yield* process("b"))
      expect(yield* conversations.liveIds).toEqual(new Set(["a", "b"]))
      const taken = yield* conversations.takeLive("b", "s")
      expect(Option.isSome(taken)).toBe(true)
      yield* Effect.sleep("400 millis")
      // a's timer ended it; b's was stopped when its next turn took it.
      expect(ended).toEqual(["a"])
      expect(yield* conversations.liveIds).toEqual(new Set())
    }).pipe(Effect.provide(layer)))
})
