import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ConfigError, decodeConfig, fromAssignments, fromEnv, loadConfig } from "../../src/config/GatewayConfig.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-config-test-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

let fileCount = 0
/** A TOML file in a fresh temp dir; always passed explicitly so that config/local.toml never interferes. */
const tomlFile = (text: string): string => {
  const file = path.join(dir, `config-${++fileCount}.toml`)
  fs.writeFileSync(file, text)
  return file
}

const getRight = <R, L>(either: Either.Either<R, L>): R => {
  if (Either.isLeft(either)) throw new Error(`expected Right, got Left: ${String(either.left)}`)
  return either.right
}

const getLeft = <R, L>(either: Either.Either<R, L>): L => {
  if (Either.isRight(either)) throw new Error(`expected Left, got Right: ${JSON.stringify(either.right)}`)
  return either.left
}

describe("docs/operations.md", () => {
  const operations = fs.readFileSync(new URL("../../docs/operations.md", import.meta.url), "utf8")

  it.effect("sample config/local.toml loads as it stands", () =>
    Effect.gen(function*() {
      const sample = /```toml\n([\s\S]*?)```/.exec(operations)?.[1]
      expect(sample).toBeDefined()
      const config = yield* loadConfig({ file: tomlFile(sample!), env: {} })
      expect(config.conversation.max_live).toBe(8)
      expect(config.models.aliases).toMatchObject({ "gpt-4o": "sonnet" })
    }))
})

describe("loadConfig", () => {
  it.effect("defaults bind to 127.0.0.1:8080", () =>
    Effect.gen(function*() {
      const config = yield* loadConfig({ file: tomlFile(""), env: {} })
      expect(config.server.host).toBe("127.0.0.1")
      expect(config.server.port).toBe(8080)
      expect(config.server.api_keys).toEqual([])
      expect(config.server.allow_unauthenticated_remote).toBe(false)
      expect(config.claude.timeout_seconds).toBe(300)
      expect(config.claude.tools).toEqual(["default"])
      expect(config.pool.enabled).toBe(true)
      expect(config.log.level).toBe("info")
    }))

  it.effect("layers defaults < TOML file < environment < flags", () =>
    Effect.gen(function*() {
      const file = tomlFile(
        [
          "[server]",
          `host = "0.0.0.0"`,
          "port = 1111",
          "",
          "[claude]",
          "max_retries = 5",
          `default_model = "haiku"`,
          "",
          "[pool]",
          "prewarm = 3"
        ].join("\n")
      )
      const config = yield* loadConfig({
        file,
        env: {
          PATH: "/usr/bin",
          CLAUDE_CODE__SERVER__PORT: "2222",
          CLAUDE_CODE__CLAUDE__MAX_RETRIES: "6",
          CLAUDE_CODE__QUEUE__MAX_WAITING: "7"
        },
        flags: { server: { port: "3333" }, queue: { max_wait_seconds: 9 } }
      })
      // flags beat env and file
      expect(config.server.port).toBe(3333)
      // env beats file
      expect(config.claude.max_retries).toBe(6)
      // file beats defaults, and a deeper layer does not wipe the file's other keys of a section
      expect(config.server.host).toBe("0.0.0.0")
      expect(config.claude.default_model).toBe("haiku")
      expect(config.pool.prewarm).toBe(3)
      // env and flags for different keys of one section both apply
      expect(config.queue.max_waiting).toBe(7)
      expect(config.queue.max_wait_seconds).toBe(9)
      // untouched keys keep their defaults
      expect(config.claude.timeout_seconds).toBe(300)
      expect(config.pool.max_processes).toBe(16)
    }))

  it.effect("coerces environment strings to numbers and booleans", () =>
    Effect.gen(function*() {
      const config = yield* loadConfig({
        file: tomlFile(""),
        env: {
          CLAUDE_CODE__SERVER__PORT: "9000",
          CLAUDE_CODE__SERVER__ALLOW_UNAUTHENTICATED_REMOTE: "true",
          CLAUDE_CODE__POOL__ENABLED: "false",
          CLAUDE_CODE__CLAUDE__TIMEOUT_SECONDS: "42",
          CLAUDE_CODE__TELEMETRY__TRACE_SAMPLE_RATIO: "0.25"
        }
      })
      expect(config.telemetry.trace_sample_ratio).toBe(0.25)
      expect(config.server.port).toBe(9000)
      expect(config.server.allow_unauthenticated_remote).toBe(true)
      expect(config.pool.enabled).toBe(false)
      expect(config.claude.timeout_seconds).toBe(42)
    }))

  it.effect("reads lists from the environment as a JSON array or comma-separated", () =>
    Effect.gen(function*() {
      const json = yield* loadConfig({
        file: tomlFile(""),
        env: { CLAUDE_CODE__SERVER__API_KEYS: `["k1","k,2"]`, CLAUDE_CODE__CLAUDE__TOOLS: "[]" }
      })
      expect(json.server.api_keys).toEqual(["k1", "k,2"])
      expect(json.claude.tools).toEqual([])
      const comma = yield* loadConfig({
        file: tomlFile(""),
        env: { CLAUDE_CODE__SERVER__API_KEYS: " k1, k2 ,,k3 ", CLAUDE_CODE__CLAUDE__TOOLS: "Read,Bash" }
      })
      expect(comma.server.api_keys).toEqual(["k1", "k2", "k3"])
      expect(comma.claude.tools).toEqual(["Read", "Bash"])
    }))

  it.effect("takes lists and numbers from TOML as native values", () =>
    Effect.gen(function*() {
      const config = yield* loadConfig({
        file: tomlFile(`[server]\napi_keys = ["a", "b"]\nport = 0\n[claude]\ntools = []\npermission_mode = "plan"\n`),
        env: {}
      })
      expect(config.server.api_keys).toEqual(["a", "b"])
      expect(config.server.port).toBe(0)
      expect(config.claude.tools).toEqual([])
      expect(config.claude.permission_mode).toBe("plan")
    }))

  it.effect("names the key and its environment variable when a value is invalid", () =>
    Effect.gen(function*() {
      const error = yield* loadConfig({
        file: tomlFile(""),
        env: { CLAUDE_CODE__CLAUDE__TIMEOUT_SECONDS: "soon" }
      }).pipe(Effect.flip)
      expect(error).toBeInstanceOf(ConfigError)
      expect(error._tag).toBe("ConfigError")
      expect(error.message).toContain("claude.timeout_seconds")
      expect(error.message).toContain("CLAUDE_CODE__CLAUDE__TIMEOUT_SECONDS")
    }))

  it.effect("rejects out-of-range numbers, non-integers, bad booleans and unknown literals", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, string, string]> = [
        ["CLAUDE_CODE__CLAUDE__TIMEOUT_SECONDS", "0", "claude.timeout_seconds"],
        ["CLAUDE_CODE__SERVER__PORT", "70000", "server.port"],
        ["CLAUDE_CODE__SERVER__PORT", "80.5", "server.port"],
        ["CLAUDE_CODE__POOL__ENABLED", "yes", "pool.enabled"],
        ["CLAUDE_CODE__LOG__LEVEL", "loud", "log.level"],
        ["CLAUDE_CODE__POOL__WARMUP", "hot", "pool.warmup"],
        ["CLAUDE_CODE__TELEMETRY__TRACE_SAMPLE_RATIO", "1.5", "telemetry.trace_sample_ratio"]
      ]
      for (const [name, value, key] of cases) {
        const error = yield* loadConfig({ file: tomlFile(""), env: { [name]: value } }).pipe(Effect.flip)
        expect(error.message, `${name}=${value}`).toContain(key)
        expect(error.message, `${name}=${value}`).toContain(name)
      }
    }))

  it.effect("reports every invalid key, not only the first", () =>
    Effect.gen(function*() {
      const error = yield* loadConfig({
        file: tomlFile(""),
        env: { CLAUDE_CODE__SERVER__PORT: "-1", CLAUDE_CODE__QUEUE__MAX_WAITING: "many" }
      }).pipe(Effect.flip)
      expect(error.message).toContain("CLAUDE_CODE__SERVER__PORT")
      expect(error.message).toContain("CLAUDE_CODE__QUEUE__MAX_WAITING")
    }))

  it.effect("rejects unknown keys and sections in the TOML file", () =>
    Effect.gen(function*() {
      const key = yield* loadConfig({ file: tomlFile(`[server]\nprot = 9000\n`), env: {} }).pipe(Effect.flip)
      expect(key).toBeInstanceOf(ConfigError)
      expect(key.message).toContain("server.prot")
      const section = yield* loadConfig({ file: tomlFile(`[sever]\nport = 9000\n`), env: {} }).pipe(Effect.flip)
      expect(section.message).toContain("sever")
    }))

  it.effect("ignores unknown environment keys (shared with other programs) but rejects unknown flags", () =>
    Effect.gen(function*() {
      const config = yield* loadConfig({
        file: tomlFile(""),
        env: { CLAUDE_CODE__SERVER__NOPE: "1", CLAUDE_CODE__NOPE__TTL_SECONDS: "60", CLAUDE_CODE__SERVER__PORT: "9" }
      })
      expect(config.server.port).toBe(9)
      expect(config).not.toHaveProperty("nope")
      const flags = yield* loadConfig({ file: tomlFile(""), env: {}, flags: { pool: { size: "1" } } }).pipe(Effect.flip)
      expect(flags.message).toContain("pool.size")
    }))

  it.effect("rejects a malformed environment variable name", () =>
    Effect.gen(function*() {
      for (const name of ["CLAUDE_CODE__ONLYONE", "CLAUDE_CODE__A__B__C", "CLAUDE_CODE____PORT"]) {
        const error = yield* loadConfig({ file: tomlFile(""), env: { [name]: "1" } }).pipe(Effect.flip)
        expect(error).toBeInstanceOf(ConfigError)
        expect(error.message).toContain(name)
      }
    }))

  it.effect("fails when an explicit config file does not exist", () =>
    Effect.gen(function*() {
      const missing = path.join(dir, "does-not-exist.toml")
      const error = yield* loadConfig({ file: missing, env: {} }).pipe(Effect.flip)
      expect(error).toBeInstanceOf(ConfigError)
      expect(error.message).toContain(missing)
    }))

  it.effect("fails on a file that is not TOML", () =>
    Effect.gen(function*() {
      const file = tomlFile("[server\nport = = 1\n")
      const error = yield* loadConfig({ file, env: {} }).pipe(Effect.flip)
      expect(error).toBeInstanceOf(ConfigError)
      expect(error.message).toContain(file)
    }))
})

describe("fromEnv", () => {
  it("maps CLAUDE_CODE__SECTION__KEY to { section: { key } } and ignores other variables", () => {
    expect(getRight(fromEnv({
      CLAUDE_CODE__SERVER__PORT: "9",
      CLAUDE_CODE__CLAUDE__DEFAULT_MODEL: "opus",
      CLAUDE_CODE_OTHER: "x",
      HOME: "/root",
      CLAUDE_CODE__POOL__ENABLED: undefined
    }))).toEqual({ server: { port: "9" }, claude: { default_model: "opus" } })
  })

  it("rejects a name without section and key", () => {
    const error = getLeft(fromEnv({ CLAUDE_CODE__ONLYONE: "1" }))
    expect(error).toBeInstanceOf(ConfigError)
    expect(error.message).toContain("CLAUDE_CODE__ONLYONE")
  })
})

describe("fromAssignments", () => {
  it("parses section.key=value, keeping '=' and newlines inside the value", () => {
    expect(getRight(fromAssignments(["server.port=9", "claude.command=/opt/a=b", "server.host=", "log.level=debug"])))
      .toEqual({ server: { port: "9", host: "" }, claude: { command: "/opt/a=b" }, log: { level: "debug" } })
    expect(getRight(fromAssignments(["claude.workspace=a\nb"]))).toEqual({ claude: { workspace: "a\nb" } })
    expect(getRight(fromAssignments([]))).toEqual({})
  })

  it("rejects anything that is not section.key=value", () => {
    for (const garbage of ["garbage", "port=9", "server.port", "server.port.x=1", ".port=1", "server.=1", "Server.Port=1"]) {
      const error = getLeft(fromAssignments(["server.host=ok", garbage]))
      expect(error, garbage).toBeInstanceOf(ConfigError)
      expect(error.message, garbage).toContain(garbage)
    }
  })

  it.effect("feeds flags that decode like any other layer", () =>
    Effect.gen(function*() {
      const flags = getRight(fromAssignments(["server.port=4321", "pool.enabled=false", "server.api_keys=a,b"]))
      const config = yield* loadConfig({ file: tomlFile(""), env: {}, flags })
      expect(config.server.port).toBe(4321)
      expect(config.pool.enabled).toBe(false)
      expect(config.server.api_keys).toEqual(["a", "b"])
    }))
})

describe("decodeConfig", () => {
  it("decodes an empty object to the defaults and rejects non-objects", () => {
    const config = getRight(decodeConfig({}))
    expect(config.server.port).toBe(8080)
    expect(config.claude.command).toBe("claude")
    expect(Either.isLeft(decodeConfig({ server: "x" }))).toBe(true)
    expect(Either.isLeft(decodeConfig(null))).toBe(true)
  })
})
