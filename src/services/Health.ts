import { Effect } from "effect"
import { GatewayConfig } from "../config/GatewayConfig.js"
import { Admission } from "./Admission.js"
import { Conversations } from "./Conversations.js"
import { ModelCatalog } from "./ModelCatalog.js"
import { Pool } from "./Pool.js"
import { ToolBridge } from "./ToolBridge.js"

/** The gateway's state as /health and the RPC `Health` report it (one computation for both). */
export const healthReport = Effect.gen(function*() {
  const { config } = yield* GatewayConfig
  const [state, pool, sessions, parked, live] = yield* Effect.all([
    Effect.flatMap(ModelCatalog, (catalog) => catalog.state),
    Effect.flatMap(Pool, (pool) => pool.stats),
    Effect.flatMap(Admission, (admission) => admission.stats),
    Effect.flatMap(ToolBridge, (bridge) => bridge.count),
    Effect.flatMap(Conversations, (conversations) => conversations.liveIds)
  ])
  // A CLI that is not logged in fails every chat: not healthy.
  const healthy = state._tag === "Ready" && state.info.auth.loggedIn
  return {
    healthy,
    body: {
      status: healthy ? "ok" as const : "degraded" as const,
      cli: {
        command: config.claude.command,
        version: state._tag === "Ready" ? state.info.version : null,
        error: state._tag === "Ready"
          ? (state.info.auth.loggedIn ? null : "not logged in: log the CLI in with `claude /login`, or set ANTHROPIC_API_KEY")
          : state.reason,
        auth: state._tag === "Ready" ? { logged_in: state.info.auth.loggedIn, method: state.info.auth.method } : null
      },
      sessions,
      pool,
      tools: { parked },
      conversations: { live: live.size }
    }
  }
})
