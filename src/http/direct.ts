import type { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Context, Effect, FiberRef, type Scope } from "effect"
import type { Caller } from "./auth.js"

/**
 * The chat routes (`POST /v1/chat/completions`, `/v1/messages`, `/v1/responses`, `/rpc`), served by the
 * server's outer middleware straight from their handlers, past the HttpApi's router and per-endpoint
 * plumbing: that costs every request ~140 run-loop steps, a seventh of a later turn's (measured with
 * bench/opcount.mjs; bench/README.md, "Per-request CPU"). The same handlers stay in the HttpApi, for
 * its OpenAPI document and for apps that serve `ApiLive` themselves. Keyed by path.
 */
export type DirectHandler = (
  request: HttpServerRequest.HttpServerRequest
) => Effect.Effect<HttpServerResponse.HttpServerResponse, never, Caller | Scope.Scope | HttpServerRequest.HttpServerRequest>

export class DirectRoutes extends Context.Tag("claude-code-api/DirectRoutes")<DirectRoutes, ReadonlyMap<string, DirectHandler>>() {}

/**
 * `Effect.provideService` for an effect that runs on a fiber of its own to that fiber's end (a
 * request's fiber, an RPC call's): the service is added to the fiber's context, with nothing to
 * restore. `provideService` scopes it with a FiberRef acquire/release, ~14 run-loop steps each.
 */
export const provideOnOwnFiber = <I, S, A, E, R>(
  tag: Context.Tag<I, S>,
  service: S,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, Exclude<R, I>> =>
  Effect.zipRight(
    FiberRef.update(FiberRef.currentContext, (context) => Context.add(context, tag, service)),
    effect as Effect.Effect<A, E, Exclude<R, I>>
  )
