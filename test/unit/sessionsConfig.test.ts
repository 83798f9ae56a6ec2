import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { decodeConfig, fromEnv } from "../../src/config/GatewayConfig.js"

describe("[sessions] config", () => {
  it("has defaults that never allow bypassPermissions", () => {
    const config = Either.getOrThrow(decodeConfig({}))
    expect(config.sessions).toEqual({
      enabled: true,
      idle_timeout_minutes: 30,
      permission_timeout_seconds: 120,
      max_per_key: 4,
      max_total: 16,
      replay_buffer: 1000,
      permission_modes: ["default", "acceptEdits", "plan", "dontAsk"],
      ticket_ttl_seconds: 60,
      max_queued_messages: 16,
      turn_timeout_seconds: 3600
    })
  })

  it("takes turn_timeout_seconds = 0 (no limit) and refuses max_queued_messages = 0, naming the key", () => {
    const env = Either.getOrThrow(fromEnv({ CLAUDE_CODE__SESSIONS__TURN_TIMEOUT_SECONDS: "0" }))
    expect(Either.getOrThrow(decodeConfig(env)).sessions.turn_timeout_seconds).toBe(0)
    const error = decodeConfig(Either.getOrThrow(fromEnv({ CLAUDE_CODE__SESSIONS__MAX_QUEUED_MESSAGES: "0" })))
    expect(Either.isLeft(error)).toBe(true)
    if (Either.isLeft(error)) expect(error.left.message).toContain("max_queued_messages")
  })

  it("reads the permission modes from the environment as a comma list or a JSON array", () => {
    for (const value of ["plan, default", "[\"plan\",\"default\"]"]) {
      const config = Either.getOrThrow(decodeConfig(Either.getOrThrow(fromEnv({ CLAUDE_CODE__SESSIONS__PERMISSION_MODES: value }))))
      expect(config.sessions.permission_modes).toEqual(["plan", "default"])
    }
  })

  it("refuses an unknown permission mode or an empty list, naming the key", () => {
    for (const value of ["default,yolo", "[]"]) {
      const error = decodeConfig(Either.getOrThrow(fromEnv({ CLAUDE_CODE__SESSIONS__PERMISSION_MODES: value })))
      expect(Either.isLeft(error)).toBe(true)
      if (Either.isLeft(error)) expect(error.left.message).toContain("permission_modes")
    }
  })
})
