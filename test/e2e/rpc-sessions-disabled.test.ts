import { Effect, Either, ManagedRuntime, Stream } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { GatewayClient } from "../../src/client.js"
import type { Gateway } from "../support/gateway.js"
import { useGateway } from "../support/e2e.js"

// sessions.enabled = false: every session RPC fails with the typed InvalidRequest `sessions_disabled`
// (the HTTP routes answer 404), over both transports, and no session CLI starts. The rest of the
// RPC surface still answers.

const KEY = "rpc-sessions-off"
let gateway: Gateway

useGateway(
  { config: { server: { api_keys: [KEY] }, pool: { prewarm: 0 }, sessions: { enabled: false } } },
  (started) => ({ gateway } = started)
)

const runtimes: Array<ManagedRuntime.ManagedRuntime<GatewayClient, never>> = []
afterAll(async () => {
  for (const runtime of runtimes) await runtime.dispose()
})

const disabled = { _tag: "InvalidRequest", code: "sessions_disabled", param: null }

describe.each(["http", "websocket"] as const)("session RPCs with sessions disabled, over %s", (transport) => {
  it("fail with InvalidRequest sessions_disabled", async () => {
    const runtime = ManagedRuntime.make(GatewayClient.layer({ url: gateway.url, transport, apiKey: KEY }))
    runtimes.push(runtime)
    const outcome = await runtime.runPromise(Effect.gen(function*() {
      const client = yield* GatewayClient
      const calls = {
        CreateSession: client.CreateSession({}),
        ListSessions: client.ListSessions(),
        GetSession: client.GetSession({ id: "sess_x" }),
        DeleteSession: client.DeleteSession({ id: "sess_x" }),
        SessionSend: client.SessionSend({ id: "sess_x", content: "hello" }),
        SessionInterrupt: client.SessionInterrupt({ id: "sess_x" }),
        SessionPermission: client.SessionPermission({ id: "sess_x", request_id: "r", decision: "allow" }),
        SessionSetModel: client.SessionSetModel({ id: "sess_x", model: "sonnet" }),
        SessionSetPermissionMode: client.SessionSetPermissionMode({ id: "sess_x", mode: "plan" }),
        SessionEvents: Stream.runCollect(client.SessionEvents({ id: "sess_x" }))
      }
      const results: Record<string, unknown> = {}
      for (const [name, call] of Object.entries(calls)) {
        const result = yield* Effect.either(call as Effect.Effect<unknown, unknown>)
        results[name] = Either.isLeft(result) ? result.left : { succeeded: result.right }
      }
      const health = yield* client.Health()
      return { results, health }
    }))
    for (const [name, result] of Object.entries(outcome.results)) {
      expect(result, name).toMatchObject(disabled)
      expect((result as { message: string }).message, name).toContain("sessions.enabled")
    }
    // The gateway itself is fine.
    expect(outcome.health.status).toBeDefined()
  })
})
