import { Data, Effect, Either, Layer, ParseResult, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parse as parseToml } from "smol-toml"

/**
 * Typed gateway configuration. Precedence: defaults < TOML file < environment
 * (`CLAUDE_CODE__SECTION__KEY`, compatible with claude-code-api-rs) < command-line flags.
 */

// Values from the environment and flags arrive as strings; these accept both forms.
const Int = Schema.Union(Schema.Number, Schema.NumberFromString).pipe(Schema.int())
const PositiveInt = Int.pipe(Schema.positive())
const NonNegativeInt = Int.pipe(Schema.nonNegative())
const Port = Int.pipe(Schema.between(0, 65535))
const Ratio = Schema.Union(Schema.Number, Schema.NumberFromString).pipe(Schema.between(0, 1))
const Bool = Schema.Union(Schema.Boolean, Schema.BooleanFromString)
// A value that looks like JSON must be valid JSON: `["a",` is a typo, not two list items.
const CommaList = Schema.transform(Schema.String.pipe(Schema.filter((s) => !s.trimStart().startsWith("[") || "expected a JSON array of strings")), Schema.Array(Schema.String), {
  strict: true,
  decode: (s) => s.split(",").map((x) => x.trim()).filter((x) => x.length > 0),
  encode: (xs) => xs.join(",")
})
// A list from TOML, or a JSON array / comma-separated string from the environment.
const StringList = Schema.Union(
  Schema.Array(Schema.String),
  Schema.parseJson(Schema.Array(Schema.String)),
  CommaList
)
const PermissionMode = Schema.Literal("default", "acceptEdits", "plan", "dontAsk", "auto", "bypassPermissions")
// A list of permission modes (TOML list, JSON array or comma-separated), at least one.
const PermissionModeList = Schema.Union(
  Schema.Array(PermissionMode),
  Schema.parseJson(Schema.Array(PermissionMode)),
  CommaList.pipe(Schema.compose(Schema.Array(PermissionMode)))
).pipe(Schema.filter((modes) => modes.length > 0 || "expected at least one permission mode"))
const LogLevel = Schema.Literal("trace", "debug", "info", "warning", "error", "none")

const withDefault = <A, I>(schema: Schema.Schema<A, I>, value: () => A) =>
  Schema.optionalWith(schema, { default: value })

// A whole section may be absent: it then decodes from `{}`, i.e. all its defaults.
const Section = <A, I>(schema: Schema.Schema<A, I>) => withDefault(schema, () => Schema.decodeUnknownSync(schema)({}))

export const ConfigSchema = Schema.Struct({
  server: Section(Schema.Struct({
    /** Address to listen on. Anything but loopback needs api_keys (or allow_unauthenticated_remote). */
    host: withDefault(Schema.String, () => "127.0.0.1"),
    /** Port to listen on; 0 picks a free one. */
    port: withDefault(Port, () => 8080),
    /** Accepted API keys (Bearer or x-api-key). Empty: no authentication. */
    api_keys: withDefault(StringList, () => []),
    /** Serve a non-loopback address without API keys. Refused unless set. */
    allow_unauthenticated_remote: withDefault(Bool, () => false),
    /** Origins allowed to call the API from a browser (CORS); ["*"] for any. Empty: no CORS headers. */
    cors_origins: withDefault(StringList, () => []),
    /** An SSE comment is sent this often on open streams, so that proxies keep quiet ones alive. 0: never. */
    sse_keepalive_seconds: withDefault(NonNegativeInt, () => 15),
    /** Largest request body accepted (base64 images count). */
    max_body_bytes: withDefault(PositiveInt, () => 32 * 1024 * 1024),
    /** On SIGTERM/SIGINT, how long in-flight turns may finish before every CLI is killed. */
    shutdown_grace_seconds: withDefault(NonNegativeInt, () => 30)
  })),
  claude: Section(Schema.Struct({
    /** The CLI to run; `claude` resolves through PATH (npm scripts put the pinned one first). */
    command: withDefault(Schema.String, () => "claude"),
    /** Limit for one turn from the moment it has a session slot (getting a CLI, then the answer): 504, CLI killed. */
    timeout_seconds: withDefault(PositiveInt, () => 300),
    /** Turns running at once (each on a CLI of its own); more wait in the queue. */
    max_concurrent_sessions: withDefault(PositiveInt, () => 10),
    /** Largest `n` (choices per request); each choice runs on a CLI of its own. */
    max_choices: withDefault(PositiveInt, () => 4),
    /** The CLI's own upstream retries (its default retries for ~3 minutes). */
    max_retries: withDefault(NonNegativeInt, () => 2),
    /** Working directory of every CLI process (its tools run there). */
    workspace: withDefault(Schema.String, () => path.join(os.tmpdir(), "claude-code-api", "workspace")),
    /** The CLI's `--permission-mode` for its own tools; no request can change it. */
    permission_mode: withDefault(PermissionMode, () => "default" as const),
    /**
     * The CLI's `--bare` mode: no hooks, plugins, auto-memory, CLAUDE.md discovery or attribution
     * reminder, and about half the CLI's time per turn. It authenticates only with ANTHROPIC_API_KEY
     * (or apiKeyHelper, Bedrock, Vertex): never with a `claude login` subscription, hence off by default.
     */
    bare: withDefault(Bool, () => false),
    /** The CLI's built-in tools: ["default"] for all of them, [] for none, or a list of names. */
    tools: withDefault(StringList, () => ["default"]),
    /** Tools allowed without a permission prompt (`--allowedTools`), e.g. ["Bash(git log:*)", "Edit"]. */
    allowed_tools: withDefault(StringList, () => []),
    /** Tools removed from the model's reach (`--disallowedTools`). */
    disallowed_tools: withDefault(StringList, () => []),
    /** Extra directories the CLI's tools may use (`--add-dir`). */
    add_dirs: withDefault(StringList, () => []),
    /** MCP servers for the CLI (`--mcp-config <file>`); with mcp_strict only those (`--strict-mcp-config`). */
    mcp_config: Schema.optional(Schema.String),
    /** Only the servers of mcp_config, none of the user's own MCP settings (`--strict-mcp-config`). */
    mcp_strict: withDefault(Bool, () => false),
    /** Model to switch to when the main one is overloaded (`--fallback-model`). */
    fallback_model: Schema.optional(Schema.String),
    /** Spending limit per request, by the CLI's own list-price estimate (`--max-budget-usd`). */
    max_budget_usd: Schema.optional(Schema.Union(Schema.Number, Schema.NumberFromString).pipe(Schema.positive())),
    /** Model of the prewarmed standbys and of the start-up model probe. */
    default_model: withDefault(Schema.String, () => "sonnet")
  })),
  pool: Section(Schema.Struct({
    /** Off: every request spawns its CLI (cold). */
    enabled: withDefault(Bool, () => true),
    /** Standby processes for the default launch signature, spawned at start-up. */
    prewarm: withDefault(NonNegativeInt, () => 1),
    /** Standbys kept for each recently used launch signature. */
    standby_per_signature: withDefault(NonNegativeInt, () => 1),
    /** Standbys across all signatures (each CLI is ~200 MB RSS). */
    max_standby: withDefault(NonNegativeInt, () => 4),
    /** All CLI processes, running or standing by; standbys are not spawned past it. */
    max_processes: withDefault(PositiveInt, () => 16),
    /**
     * What a standby does before it counts as ready: "none" only waits for the CLI to answer;
     * "context" also asks for the context usage (count_tokens calls upstream, which opens the
     * upstream connection). A local command turn would be faster still, but the CLI records it in
     * the session and the model would see it as context.
     */
    warmup: withDefault(Schema.Literal("none", "context"), () => "none" as const),
    /** A taken standby is replaced this much later, so that the new CLI's boot leaves the CPU to the turn. */
    replace_delay_ms: withDefault(NonNegativeInt, () => 500),
    /** A signature unused this long loses its standbys (the default one keeps its prewarm). */
    idle_ttl_seconds: withDefault(PositiveInt, () => 600),
    /**
     * Standbys grow past the floor with demand (requests that found none ready); after this many
     * quiet seconds the demand is forgotten and the standbys past the floor end.
     */
    demand_window_seconds: withDefault(PositiveInt, () => 60),
    /**
     * A process whose conversation no longer needs it (one-shot requests, conversations evicted or
     * deleted) is reset and serves the next new conversation instead of being killed. Off: every
     * conversation gets a process of its own, killed after it.
     */
    reuse: withDefault(Bool, () => true),
    /** A process is retired (killed) after serving this many conversations. */
    max_uses: withDefault(PositiveInt, () => 200),
    /** A process is retired when its resident memory passes this many MB at release (Linux). */
    max_rss_mb: withDefault(PositiveInt, () => 600),
    /** A reset that takes longer than this kills the process. */
    reset_timeout_ms: withDefault(PositiveInt, () => 5000)
  })),
  queue: Section(Schema.Struct({
    /** Requests waiting for one of claude.max_concurrent_sessions; past it: 429. */
    max_waiting: withDefault(NonNegativeInt, () => 64),
    /** Longest wait for a free session before 429. */
    max_wait_seconds: withDefault(PositiveInt, () => 30)
  })),
  images: Section(Schema.Struct({
    /** Largest image fetched or read (decoded bytes). */
    max_bytes: withDefault(PositiveInt, () => 5 * 1024 * 1024),
    /** Longest time for fetching one image, start to end (also the longest silence of its server). */
    fetch_timeout_seconds: withDefault(PositiveInt, () => 10),
    /** Images given by URL or path in one request; more is a 400 before any is fetched. */
    max_per_request: withDefault(PositiveInt, () => 20),
    /** Bytes the fetched and read images of one request may have together. */
    max_total_bytes: withDefault(PositiveInt, () => 20 * 1024 * 1024),
    /** Longest time for fetching all images of one request. */
    request_timeout_seconds: withDefault(PositiveInt, () => 30),
    /** Fetch from loopback, private and link-local addresses too (refused by default: SSRF). */
    allow_private: withDefault(Bool, () => false),
    /** Local image paths (absolute or file://) are read only inside these directories. */
    allowed_dirs: withDefault(StringList, () => [])
  })),
  tools: Section(Schema.Struct({
    /** A turn waiting for the client's tool results keeps its CLI this long, then it is killed. */
    park_ttl_seconds: withDefault(PositiveInt, () => 300),
    /** Turns parked at once; parking one more ends the oldest. */
    max_parked: withDefault(PositiveInt, () => 32),
    /** Keep the CLI's own tools (and configured MCP servers) next to the client's functions. */
    with_builtin: withDefault(Bool, () => false)
  })),
  conversation: Section(Schema.Struct({
    /** Where the conversation database (SQLite) lives; created at start-up. */
    data_dir: withDefault(Schema.String, () => path.join(os.homedir(), ".claude-code-api")),
    /** A conversation's CLI stays alive this long after its last turn; later turns resume its session. */
    session_timeout_minutes: withDefault(PositiveInt, () => 30),
    /** Conversations kept alive at once (each is a running CLI); one more ends the least recently used. 0: none. */
    max_live: withDefault(NonNegativeInt, () => 8),
    /** Earlier messages a new conversation's transcript carries (the most recent ones). */
    max_history_messages: withDefault(PositiveInt, () => 200),
    /** How long a stateless client's history can still be matched to its conversation. */
    fingerprint_ttl_minutes: withDefault(PositiveInt, () => 1440),
    /** Conversations without a turn for this long are deleted (checked hourly). */
    retention_days: withDefault(PositiveInt, () => 30)
  })),
  sessions: Section(Schema.Struct({
    /** Serve interactive sessions (/v1/sessions and their WebSocket); off: those routes answer 404. */
    enabled: withDefault(Bool, () => true),
    /** A session without a running turn or a client message for this long ends (its CLI is killed); fractions allowed. */
    idle_timeout_minutes: withDefault(Schema.Union(Schema.Number, Schema.NumberFromString).pipe(Schema.positive()), () => 30),
    /** A permission prompt nobody answers within this time is denied. */
    permission_timeout_seconds: withDefault(PositiveInt, () => 120),
    /** Sessions not ended, per API key; one more is refused with 429. */
    max_per_key: withDefault(PositiveInt, () => 4),
    /** Sessions not ended, in all; one more is refused with 429. */
    max_total: withDefault(PositiveInt, () => 16),
    /** Events kept per session for a client that reconnects with `?after=N`. */
    replay_buffer: withDefault(PositiveInt, () => 1000),
    /** Permission modes a session may ask for (the first is its default); `bypassPermissions` only if listed here. */
    permission_modes: withDefault(PermissionModeList, () => ["default", "acceptEdits", "plan", "dontAsk"] as const),
    /** Lifetime of a WebSocket ticket (`POST /v1/sessions/{id}/ticket`). */
    ticket_ttl_seconds: withDefault(PositiveInt, () => 60),
    /** User messages a session holds while a turn runs; one more is refused (error `inbox_full`). */
    max_queued_messages: withDefault(PositiveInt, () => 16),
    /**
     * A session turn still running after this long is interrupted (clients get an error event
     * `turn_timeout`); a CLI that ignores the interrupt is killed. 0: no limit.
     */
    turn_timeout_seconds: withDefault(NonNegativeInt, () => 3600)
  })),
  models: Section(Schema.Struct({
    /** Extra model names mapped to a CLI model, e.g. { "gpt-4o" = "sonnet" }; listed by /v1/models. */
    aliases: withDefault(
      Schema.Union(
        Schema.Record({ key: Schema.String, value: Schema.String }),
        Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.String }))
      ),
      () => ({})
    )
  })),
  telemetry: Section(Schema.Struct({
    /** Record request, token, cost and latency metrics for /stats and /metrics. Off: both still answer, with the pool, session and tool figures only. */
    metrics_enabled: withDefault(Bool, () => true),
    /** Serve /metrics without an API key (for a Prometheus scraper on a trusted network); /stats always needs one. */
    metrics_public: withDefault(Bool, () => false),
    /**
     * OTLP/HTTP collector that receives the gateway's traces (JSON), e.g. http://127.0.0.1:4318; spans are
     * posted to <endpoint>/v1/traces unless the URL already ends in /v1/traces. Unset: no tracer at all.
     */
    otlp_endpoint: Schema.optional(Schema.String),
    /** The `service.name` resource attribute of exported spans. */
    service_name: withDefault(Schema.String, () => "claude-code-api"),
    /** How often finished spans are sent to the collector (and once more at shutdown). */
    export_interval_ms: withDefault(PositiveInt, () => 5000),
    /**
     * Share of traces exported (0 to 1), decided where a trace starts: a request that joins a caller's
     * trace (W3C traceparent, B3) follows the caller's sampled flag, and a span follows its parent.
     */
    trace_sample_ratio: withDefault(Ratio, () => 1)
  })),
  log: Section(Schema.Struct({
    /** Least severe log level written (to stdout, in logfmt). */
    level: withDefault(LogLevel, () => "info" as const)
  })),
  cache: Section(Schema.Struct({
    /**
     * Exact-match answer cache (docs/api/caching.md). Off by default: a language model's answer is
     * not expected to repeat, and a client asking twice usually wants a new one.
     */
    enabled: withDefault(Bool, () => false),
    /** Answers kept at most; one more evicts the least recently used. */
    max_entries: withDefault(PositiveInt, () => 1000),
    /** An answer is served from the cache for this long after it was stored. */
    ttl_seconds: withDefault(PositiveInt, () => 3600),
    /** Bytes of stored answers (their events as JSON) at most; past it the least recently used go. */
    max_bytes: withDefault(PositiveInt, () => 64 * 1024 * 1024),
    /** Share answers across API keys (by default each key has a cache of its own). */
    shared: withDefault(Bool, () => false),
    /** "memory", or "sqlite": the conversation database (conversation.data_dir), so answers survive a restart. */
    store: withDefault(Schema.Literal("memory", "sqlite"), () => "memory" as const)
  }))
})

export type Config = typeof ConfigSchema.Type

export class ConfigError extends Data.TaggedError("ConfigError")<{ readonly message: string }> {}

export const ENV_PREFIX = "CLAUDE_CODE__"

/** `CLAUDE_CODE__SERVER__PORT=9` → `{ server: { port: "9" } }`. */
export const fromEnv = (env: Readonly<Record<string, string | undefined>>) => {
  const out: Record<string, Record<string, unknown>> = {}
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue
    const parts = name.slice(ENV_PREFIX.length).toLowerCase().split("__")
    const [section, key] = parts
    if (parts.length !== 2 || !section || !key) {
      return Either.left(new ConfigError({ message: `${name}: expected CLAUDE_CODE__SECTION__KEY` }))
    }
    ;(out[section] ??= {})[key] = value
  }
  return Either.right(out)
}

/** `["server.port=9"]` → `{ server: { port: "9" } }`. */
export const fromAssignments = (assignments: ReadonlyArray<string>) => {
  const out: Record<string, Record<string, unknown>> = {}
  for (const assignment of assignments) {
    const match = /^([a-z_]+)\.([a-z_]+)=(.*)$/s.exec(assignment)
    if (!match) {
      return Either.left(new ConfigError({ message: `--set ${assignment}: expected section.key=value` }))
    }
    ;(out[match[1]!] ??= {})[match[2]!] = match[3]!
  }
  return Either.right(out)
}

type Layered = Record<string, unknown>

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const merge = (...layers: ReadonlyArray<Layered>): Layered => {
  const out: Layered = {}
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      const prev = out[key]
      out[key] = isRecord(prev) && isRecord(value) ? merge(prev, value) : value
    }
  }
  return out
}

const envName = (p: ReadonlyArray<PropertyKey>) =>
  p.length === 2 ? ` (${ENV_PREFIX}${p.map(String).join("__").toUpperCase()})` : ""

/** Decode merged layers, naming the first bad key in the error. */
export const decodeConfig = (raw: unknown): Either.Either<Config, ConfigError> =>
  Schema.decodeUnknownEither(ConfigSchema, { onExcessProperty: "error", errors: "all" })(raw).pipe(
    Either.mapLeft((error) => {
      const byKey = new Map<string, string>()
      for (const issue of ParseResult.ArrayFormatter.formatErrorSync(error)) {
        const key = issue.path.map(String).join(".")
        // The optional-with-default wrappers add "Expected undefined" alternatives: not the point.
        if (issue.message.startsWith("Expected undefined") || byKey.has(key)) continue
        byKey.set(key, `${key}${envName(issue.path)}: ${issue.message}`)
      }
      const lines = [...byKey.values()]
      return new ConfigError({ message: `invalid configuration:\n  ${lines.join("\n  ")}` })
    })
  )

export interface ConfigSources {
  /** Explicit file (`--config`); it must exist. Without it `config/local.toml` is read when present. */
  readonly file?: string | undefined
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** Flag values, already as `{ section: { key: value } }`. */
  readonly flags?: Layered | undefined
}

const readToml = (file: string | undefined) =>
  Effect.try({
    try: (): Layered => {
      const target = file ?? path.resolve("config/local.toml")
      if (file === undefined && !fs.existsSync(target)) return {}
      return parseToml(fs.readFileSync(target, "utf8"))
    },
    catch: (error) =>
      new ConfigError({ message: `cannot read config file ${file ?? "config/local.toml"}: ${String(error)}` })
  })

const DEFAULTS: Record<string, Record<string, unknown>> = Schema.decodeSync(ConfigSchema)({})

/**
 * Environment keys this version does not know (e.g. claude-code-api-rs keys it lacks) are ignored
 * with a warning rather than stopping start-up: the environment is shared with other programs.
 * Unknown keys in the file or flags are errors (typos).
 */
const knownOnly = (env: Record<string, Record<string, unknown>>) => {
  const known: Record<string, Record<string, unknown>> = {}
  const ignored: Array<string> = []
  for (const [section, keys] of Object.entries(env)) {
    for (const [key, value] of Object.entries(keys)) {
      if (DEFAULTS[section] !== undefined && key in DEFAULTS[section]) (known[section] ??= {})[key] = value
      else ignored.push(`${ENV_PREFIX}${section.toUpperCase()}__${key.toUpperCase()}`)
    }
  }
  return { known, ignored }
}

export const loadConfig = (sources: ConfigSources): Effect.Effect<Config, ConfigError> =>
  Effect.gen(function*() {
    const file = yield* readToml(sources.file)
    const { known, ignored } = knownOnly(yield* fromEnv(sources.env ?? {}))
    if (ignored.length > 0) yield* Effect.logWarning(`ignoring unknown configuration variables: ${ignored.join(", ")}`)
    return yield* decodeConfig(merge(file, known, sources.flags ?? {}))
  })

export class GatewayConfig extends Effect.Service<GatewayConfig>()("GatewayConfig", {
  effect: Effect.map(loadConfig({ env: process.env }), (config) => ({ config }))
}) {
  static readonly layerFrom = (sources: ConfigSources) =>
    Layer.effect(GatewayConfig, Effect.map(loadConfig(sources), (config) => GatewayConfig.make({ config })))

  /** A fixed configuration: defaults overridden by `overrides` (tests, embedding apps). */
  static readonly layerWith = (overrides: Layered) =>
    Layer.effect(GatewayConfig, Effect.map(decodeConfig(overrides), (config) => GatewayConfig.make({ config })))
}
