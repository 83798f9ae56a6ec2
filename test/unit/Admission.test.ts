import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Scope } from "effect"
import { Admission } from "../../src/services/Admission.js"
import { GatewayConfig } from "../../src/config/GatewayConfig.js"

const layer = Admission.Default.pipe(
  Layer.provide(GatewayConfig.layerWith({ claude: { max_concurrent_sessions: 1 }, queue: { max_waiting: 1, max_wait_seconds: 1 } }))
)

describe("Admission", () => {
  it.live("bounds the queue, times out waiters and releases every slot", () =>
    Effect.gen(function*() {
      const admission = yield* Admission
      const scope1 = yield* Scope.make()
      yield* Scope.extend(admission.admit, scope1)
      expect(yield* admission.stats).toMatchObject({ running: 1, queued: 0 })
      const waiter = yield* Effect.fork(Effect.scoped(admission.admit))
      yield* Effect.sleep("50 millis")
      expect(yield* admission.stats).toMatchObject({ running: 1, queued: 1 })
      const full = yield* Effect.scoped(admission.admit).pipe(Effect.flip)
      expect(full.reason).toBe("queue_full")
      const timedOut = yield* Fiber.join(waiter).pipe(Effect.flip)
      expect(timedOut.reason).toBe("queue_timeout")
      expect(yield* admission.stats).toMatchObject({ running: 1, queued: 0 })
      yield* Scope.close(scope1, Exit.void)
      expect(yield* admission.stats).toMatchObject({ running: 0, queued: 0 })
      yield* Effect.scoped(admission.admit)
      expect(yield* admission.stats).toMatchObject({ running: 0, queued: 0 })
    }).pipe(Effect.provide(layer)))

  it.live("serves waiters in arrival order", () =>
    Effect.gen(function*() {
      const admission = yield* Admission
      const order: Array<number> = []
      const scope1 = yield* Scope.make()
      yield* Scope.extend(admission.admit, scope1)
      const a = yield* Effect.fork(Effect.scoped(Effect.zipRight(admission.admit, Effect.sync(() => order.push(1)))))
      yield* Effect.sleep("20 millis")
      yield* Scope.close(scope1, Exit.void)
      yield* Fiber.join(a)
      expect(order).toEqual([1])
    }).pipe(Effect.provide(layer)))
})

describe("Admission's queue", () => {
  const one = Admission.Default.pipe(
    Layer.provide(GatewayConfig.layerWith({ claude: { max_concurrent_sessions: 1 }, queue: { max_waiting: 8, max_wait_seconds: 5 } }))
  )

  it.live("hands a freed slot to the first waiter still queued, and drains after the running turns", () =>
    Effect.gen(function*() {
      const admission = yield* Admission
      const order: Array<string> = []
      const first = yield* Scope.make()
      yield* Scope.extend(admission.admit, first)
      const wait = (name: string) =>
        Effect.fork(Effect.scoped(Effect.zipRight(admission.admit, Effect.sync(() => order.push(name)))))
      const a = yield* wait("a")
      yield* Effect.sleep("10 millis")
      const b = yield* wait("b")
      yield* Effect.sleep("10 millis")
      const c = yield* wait("c")
      yield* Effect.sleep("10 millis")
      expect(yield* admission.stats).toMatchObject({ running: 1, queued: 3 })
      // b's client goes away: it leaves the queue and c moves up.
      yield* Fiber.interrupt(b)
      expect(yield* admission.stats).toMatchObject({ running: 1, queued: 2 })
      yield* Scope.close(first, Exit.void)
      yield* Fiber.join(a)
      yield* Fiber.join(c)
      expect(order).toEqual(["a", "c"])
      expect(yield* admission.stats).toMatchObject({ running: 0, queued: 0 })

      const last = yield* Scope.make()
      yield* Scope.extend(admission.admit, last)
      const drain = yield* Effect.fork(admission.drain)
      yield* Effect.sleep("20 millis")
      // Draining: new turns are refused; the drain waits for the running one.
      expect((yield* Effect.scoped(admission.admit).pipe(Effect.flip)).reason).toBe("shutting_down")
      expect(drain.unsafePoll()).toBeNull()
      yield* Scope.close(last, Exit.void)
      yield* Fiber.join(drain)
    }).pipe(Effect.provide(one)))
})

describe("Admission.admitMany", () => {
  const three = Admission.Default.pipe(Layer.provide(GatewayConfig.layerWith({ claude: { max_concurrent_sessions: 3 }, queue: { max_wait_seconds: 1 } })))

  it.live("takes the slots of one request together and gives them back together", () =>
    Effect.gen(function*() {
      const admission = yield* Admission
      const scope = yield* Scope.make()
      yield* Scope.extend(admission.admitMany(2), scope)
      expect(yield* admission.stats).toMatchObject({ running: 2 })
      // Two more do not fit next to them: the request waits whole, holding nothing.
      const waiting = yield* Effect.fork(Effect.scoped(admission.admitMany(2)))
      yield* Effect.sleep("50 millis")
      expect(yield* admission.stats).toMatchObject({ running: 2, queued: 1 })
      yield* Scope.close(scope, Exit.void)
      yield* Fiber.join(waiting)
      expect(yield* admission.stats).toMatchObject({ running: 0, queued: 0 })
    }).pipe(Effect.provide(three)))
})
