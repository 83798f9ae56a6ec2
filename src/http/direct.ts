import type { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Context, type Effect, type Scope } from "effect"
import type { Caller } from "./auth.js"

/**
 * The chat routes (`POST /v1/chat/completions`, `/v1/messages`, `/v1/responses`), served by the
 * server's outer middleware straight from their handlers, past the HttpApi's router and per-endpoint
 * plumbing: that costs every request ~140 run-loop steps, a seventh of a later turn's (measured with
 * bench/opcount.mjs; bench/README.md, "Per-request CPU"). The same handlers stay in the HttpApi, for
 * its OpenAPI document and for apps that serve `ApiLive` themselves. Keyed by path.
 */
export type DirectHandler = (
  request: HttpServerRequest.HttpServerRequest
) => Effect.Effect<HttpServerResponse.HttpServerResponse, never, Caller | Scope.Scope>

export class DirectRoutes extends Context.Tag("claude-code-api/DirectRoutes")<DirectRoutes, ReadonlyMap<string, DirectHandler>>() {}
