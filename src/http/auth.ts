import { HttpApiMiddleware, HttpApiSchema, HttpApiSecurity } from "@effect/platform"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import * as crypto from "node:crypto"
import { GatewayConfig } from "../config/GatewayConfig.js"
import { ownerOfKey } from "./request.js"

/**
 * API keys and the request's owner. The server's outer middleware turns away a request without a
 * valid key before routing (so unknown routes and /rpc are covered, in each dialect's envelope);
 * this middleware then tells the handlers whose conversations, responses and sessions the request
 * may see, and declares the two key schemes in the OpenAPI document.
 */

/** Whose things a request may see: a hash of its API key when keys are configured, else everyone's (""). */
export class Caller extends Context.Tag("claude-code-api/Caller")<Caller, { readonly owner: string }>() {}

export class KeyRefused extends Schema.TaggedError<KeyRefused>()(
  "KeyRefused",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("claude-code-api/Authorization", {
  provides: Caller,
  failure: KeyRefused,
  security: {
    bearer: HttpApiSecurity.bearer,
    apiKey: HttpApiSecurity.apiKey({ in: "header", key: "x-api-key" })
  }
}) {}

export const sameSecret = (expected: string, offered: string) => {
  const a = Buffer.from(expected)
  const b = Buffer.from(offered)
  return a.length === b.length && crypto.timingSafeEqual(a, b)
}

export const REFUSED = "Incorrect API key provided. Send it as 'Authorization: Bearer <key>' or 'x-api-key'."

/** The caller an offered key makes, or None when keys are configured and it is not one of them. */
export const callerOf = (keys: ReadonlyArray<Redacted.Redacted>, offered: string | undefined) =>
  keys.length === 0
    ? { owner: ownerOfKey(offered, false) }
    : offered !== undefined && offered !== "" && keys.some((key) => sameSecret(Redacted.value(key), offered))
    ? { owner: ownerOfKey(offered, true) }
    : undefined

export const AuthorizationLive = Layer.effect(
  Authorization,
  Effect.map(GatewayConfig, ({ config }) => {
    const keys = config.server.api_keys.map((key) => Redacted.make(key))
    const check = (offered: Redacted.Redacted) => {
      const caller = callerOf(keys, Redacted.value(offered))
      return caller === undefined ? Effect.fail(new KeyRefused({ message: REFUSED })) : Effect.succeed(caller)
    }
    return Authorization.of({ bearer: check, apiKey: check })
  })
)
