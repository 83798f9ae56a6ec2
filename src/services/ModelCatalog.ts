import { Effect, Either, Option, Schema, SynchronizedRef } from "effect"
import { CliProcess } from "../cli/CliProcess.js"
import { ModelNotFound } from "../domain/errors.js"
import { GatewayConfig } from "../config/GatewayConfig.js"

/**
 * The models the gateway accepts, as the CLI itself reports them (aliases such as `sonnet` and
 * the full ids they resolve to), learned once from an `initialize` handshake with a CLI process.
 * The same list serves `/v1/models` and the chat endpoints' model check.
 */

const InitializeResponse = Schema.Struct({
  claude_code_version: Schema.String,
  models: Schema.Array(Schema.Struct({ value: Schema.String, resolvedModel: Schema.optional(Schema.String) })),
  /** How the CLI would authenticate upstream (read from its config and environment; no model call). */
  account: Schema.optional(Schema.Struct({
    tokenSource: Schema.optional(Schema.String),
    apiKeySource: Schema.optional(Schema.String),
    apiProvider: Schema.optional(Schema.String)
  }))
})

export interface CliAuth {
  readonly loggedIn: boolean
  /** api_key (and where from), oauth (a `claude login` token), or the cloud provider; "none" when logged out. */
  readonly method: string
}

/**
 * Logged in: an API key, a login token, or a cloud provider (Bedrock, Vertex…), whose credentials
 * the CLI only checks when it calls. An older CLI that reports no account is taken at its word.
 */
export const authOf = (account: typeof InitializeResponse.Type["account"]): CliAuth => {
  if (account === undefined) return { loggedIn: true, method: "unknown" }
  if (account.apiProvider !== undefined && account.apiProvider !== "firstParty") return { loggedIn: true, method: account.apiProvider }
  if (account.apiKeySource !== undefined && account.apiKeySource !== "none") return { loggedIn: true, method: `api_key (${account.apiKeySource})` }
  if (account.tokenSource !== undefined && account.tokenSource !== "none") return { loggedIn: true, method: `oauth (${account.tokenSource})` }
  return { loggedIn: false, method: "none" }
}

export interface CatalogEntry {
  readonly id: string
  /** The full model id an alias resolves to (itself for full ids). */
  readonly resolved: string
}

export interface CliInfo {
  readonly version: string
  readonly auth: CliAuth
  readonly models: ReadonlyArray<CatalogEntry>
  readonly probedAt: number
}

export type CatalogState =
  | { readonly _tag: "Ready"; readonly info: CliInfo }
  | { readonly _tag: "Unavailable"; readonly reason: string }

const RETRY_PROBE_MS = 10_000

const FALLBACK: ReadonlyArray<CatalogEntry> = ["default", "opus", "sonnet", "haiku"].map((id) => ({ id, resolved: id }))

export const entriesOf = (models: typeof InitializeResponse.Type["models"]): ReadonlyArray<CatalogEntry> => {
  const entries = new Map<string, CatalogEntry>()
  for (const model of models) {
    const resolved = model.resolvedModel ?? model.value
    entries.set(model.value, { id: model.value, resolved })
    if (!entries.has(resolved)) entries.set(resolved, { id: resolved, resolved })
  }
  return [...entries.values()]
}

export class ModelCatalog extends Effect.Service<ModelCatalog>()("ModelCatalog", {
  scoped: Effect.gen(function*() {
    const cli = yield* CliProcess
    const { config } = yield* GatewayConfig
    const ref = yield* SynchronizedRef.make<Option.Option<CliInfo>>(Option.none())
    // A failed probe is remembered briefly, so that a broken CLI is not probed on every request.
    let lastFailure: { readonly at: number; readonly reason: string } | undefined

    const probe = Effect.scoped(
      Effect.gen(function*() {
        const process = yield* cli.spawn({ model: config.claude.default_model, systemPrompt: undefined })
        const response = yield* process.control("initialize")
        const decoded = yield* Schema.decodeUnknown(InitializeResponse)(response)
        return { version: decoded.claude_code_version, auth: authOf(decoded.account), models: entriesOf(decoded.models), probedAt: Date.now() }
      })
    ).pipe(Effect.timeout("20 seconds"))

    // Once known, read without the ref's lock: every chat request resolves its model here.
    let ready: CatalogState | undefined
    const probed: Effect.Effect<CatalogState> = SynchronizedRef.modifyEffect(ref, (current): Effect.Effect<readonly [CatalogState, Option.Option<CliInfo>]> =>
      Option.match(current, {
        onSome: (info) => Effect.succeed([{ _tag: "Ready", info } as const, current] as const),
        onNone: () =>
          lastFailure !== undefined && Date.now() - lastFailure.at < RETRY_PROBE_MS
            ? Effect.succeed([{ _tag: "Unavailable", reason: lastFailure.reason } as const, current] as const)
            : probe.pipe(
            Effect.either,
            Effect.map((result) =>
              Either.match(result, {
                onRight: (info) => [{ _tag: "Ready", info } as const, Option.some(info)] as const,
                onLeft: (error) => {
                  lastFailure = { at: Date.now(), reason: error.message }
                  return [{ _tag: "Unavailable", reason: error.message } as const, Option.none()] as const
                }
              })
            )
          )
      }))
    const state: Effect.Effect<CatalogState> = Effect.suspend(() =>
      ready !== undefined
        ? Effect.succeed(ready)
        : Effect.tap(probed, (s) => {
          if (s._tag === "Ready") ready = s
        })
    )

    // Configured aliases (models.aliases) for clients with hard-coded names, e.g. gpt-4o → sonnet.
    const aliases: ReadonlyArray<CatalogEntry> = Object.entries<string>(config.models.aliases).map(([id, target]) => ({
      id,
      resolved: target
    }))

    /** What `/v1/models` lists and chat accepts: the CLI's models, then the configured aliases. */
    const models = Effect.map(state, (s): ReadonlyArray<CatalogEntry> => [
      ...(s._tag === "Ready" ? s.info.models : FALLBACK),
      ...aliases.filter((alias) => !(s._tag === "Ready" && s.info.models.some((m) => m.id === alias.id)))
    ])

    /** The model to pass to the CLI, or ModelNotFound listing what exists. */
    const resolve = (model: string) =>
      Effect.flatMap(models, (entries) => {
        const entry = entries.find((e) => e.id === model)
        if (entry === undefined) {
          return Effect.fail(new ModelNotFound({ model, available: entries.map((e) => e.id) }))
        }
        return Effect.succeed(aliases.includes(entry) ? entry.resolved : model)
      })

    // Every chat would fail with "Not logged in": say so at start-up, not at the first request.
    yield* Effect.forkScoped(Effect.tap(state, (s) =>
      s._tag === "Ready" && !s.info.auth.loggedIn
        ? Effect.logWarning(
          "the Claude Code CLI is not logged in: every chat will fail. Log it in with `claude /login`, or set ANTHROPIC_API_KEY for the gateway"
        )
        : Effect.void))
    return { state, models, resolve } as const
  }),
  dependencies: [CliProcess.Default]
}) {}
