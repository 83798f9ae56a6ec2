import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Scope, TestClock } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { GatewayConfig } from "../../src/config/GatewayConfig.js"
import { Conversations } from "../../src/services/Conversations.js"

// No CLI is spawned: no standbys (pool.enabled = false) and no turn.
const layer = Conversations.Default.pipe(Layer.provide(GatewayConfig.layerWith({
  conversation: { data_dir: fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-lock-")) },
  pool: { enabled: false, prewarm: 0 },
  queue: { max_wait_seconds: 5 }
})))

/** Hold the lock of `id` in a scope of its own (closed to release it). */
const hold = (id: string) =>
  Effect.gen(function*() {
    const conversations = yield* Conversations
    const scope = yield* Scope.make()
    yield* Scope.extend(conversations.lock(id), scope)
    return scope
  })

describe("Conversations.lock", () => {
  it.scoped("serves holders one at a time, first come first served", () =>
    Effect.gen(function*() {
      const conversations = yield* Conversations
      const first = yield* hold("a")
      const order: Array<string> = []
      const second = yield* Effect.fork(Effect.tap(hold("a"), () => Effect.sync(() => order.push("second"))))
      const third = yield* Effect.fork(Effect.tap(hold("a"), () => Effect.sync(() => order.push("third"))))
      yield* Effect.yieldNow()
      // Another conversation is not held up.
      expect(yield* Effect.scoped(conversations.lockIfFree("b"))).toBe(true)
      expect(yield* Effect.scoped(conversations.lockIfFree("a"))).toBe(false)
      expect(order).toEqual([])
      yield* Scope.close(first, Exit.void)
      const secondScope = yield* Fiber.join(second)
      expect(order).toEqual(["second"])
      yield* Scope.close(secondScope, Exit.void)
      yield* Scope.close(yield* Fiber.join(third), Exit.void)
      expect(order).toEqual(["second", "third"])
      // Free again: taken at once.
      expect(yield* Effect.scoped(conversations.lockIfFree("a"))).toBe(true)
    }).pipe(Effect.provide(layer)))

  it.scoped("a waiter past queue.max_wait_seconds gets Overloaded (queue_timeout) and leaves the queue", () =>
    Effect.gen(function*() {
      const conversations = yield* Conversations
      const first = yield* hold("c")
      const waiter = yield* Effect.fork(Effect.scoped(conversations.lock("c")))
      yield* Effect.yieldNow()
      yield* TestClock.adjust("6 seconds")
      const exit = yield* Fiber.await(waiter)
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("queue_timeout")
      yield* Scope.close(first, Exit.void)
      expect(yield* Effect.scoped(conversations.lockIfFree("c"))).toBe(true)
    }).pipe(Effect.provide(layer)))

  it.scoped("an interrupted waiter leaves the queue; the lock goes to the next one", () =>
    Effect.gen(function*() {
      const conversations = yield* Conversations
      const first = yield* hold("d")
      const gone = yield* Effect.fork(Effect.scoped(conversations.lock("d")))
      const got = yield* Deferred.make<void>()
      const next = yield* Effect.fork(Effect.scoped(Effect.zipRight(conversations.lock("d"), Deferred.succeed(got, undefined))))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(gone)
      yield* Scope.close(first, Exit.void)
      yield* Deferred.await(got)
      yield* Fiber.join(next)
      expect(yield* Effect.scoped(conversations.lockIfFree("d"))).toBe(true)
    }).pipe(Effect.provide(layer)))
})
