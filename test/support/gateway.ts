import { HttpServer } from "@effect/platform"
import OpenAI from "openai"
import { Effect, HashMap, Layer, Logger, ManagedRuntime } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { CliEnvironment } from "../../src/cli/CliProcess.js"
import { GatewayLive } from "../../src/Gateway.js"
import { GatewayConfig } from "../../src/config/GatewayConfig.js"

/** The pinned real CLI (devDependency @anthropic-ai/claude-code). */
export const CLAUDE_BIN = fileURLToPath(new URL("../../node_modules/.bin/claude", import.meta.url))

export interface Gateway {
  readonly url: string
  /** For the openai client: `${url}/v1`. */
  readonly baseURL: string
  readonly home: string
  readonly close: (options?: { readonly keepHome?: boolean }) => Promise<void>
}

type Overrides = Record<string, Record<string, unknown>>

/**
 * The real app on a random port, driving the real CLI against the scripted upstream. The CLI's
 * environment is built here from scratch (temp HOME, dummy key): nothing leaks from the shell.
 */
export interface LogLine {
  readonly level: string
  readonly message: unknown
  readonly annotations: Record<string, unknown>
}

export const startGateway = async (options: {
  readonly upstreamUrl: string
  readonly config?: Overrides
  /** Receives every log line of the app (with its annotations). */
  readonly onLog?: (line: LogLine) => void
  /** Reuse a HOME (CLI sessions, conversation database) kept by an earlier gateway's `close({ keepHome: true })`. */
  readonly home?: string
  /** Changes to the CLI's environment (undefined removes a variable, e.g. ANTHROPIC_API_KEY). */
  readonly env?: Readonly<Record<string, string | undefined>>
}) => {
  const home = options.home ?? fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-test-"))
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    ANTHROPIC_BASE_URL: options.upstreamUrl,
    ANTHROPIC_API_KEY: "sk-test-dummy",
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    ...options.env
  }
  const overrides = options.config ?? {}
  const config = {
    ...overrides,
    server: { port: 0, ...overrides.server },
    claude: { command: CLAUDE_BIN, workspace: path.join(home, "workspace"), max_retries: 0, ...overrides.claude },
    conversation: { data_dir: path.join(home, "data"), ...overrides.conversation },
    log: { level: "warning", ...overrides.log }
  }
  const onLog = options.onLog
  const logger = onLog === undefined ? Layer.empty : Logger.add(Logger.make(({ annotations, logLevel, message }) =>
    onLog({ level: logLevel.label, message, annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
  ))
  const layer = GatewayLive.pipe(
    Layer.provide(GatewayConfig.layerWith(config)),
    Layer.provide(Layer.succeed(CliEnvironment, env)),
    Layer.provide(logger)
  )
  const runtime = ManagedRuntime.make(layer)
  const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (server) => server.address))
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
  const url = `http://127.0.0.1:${address.port}`
  return {
    url,
    baseURL: `${url}/v1`,
    home,
    close: async (closing?: { readonly keepHome?: boolean }) => {
      await runtime.dispose()
      if (closing?.keepHome !== true) fs.rmSync(home, { recursive: true, force: true })
    }
  } satisfies Gateway
}

/** Claude CLI processes (pid and command line) that are children of this test process. */
export const cliProcesses = (): Array<{ readonly pid: number; readonly args: string }> => {
  let out = ""
  try {
    out = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(process.pid)], { encoding: "utf8" })
  } catch {
    return [] // ps exits 1 when there are no children
  }
  return out
    .split("\n")
    .filter((line) => line.includes("claude") && line.includes("stream-json"))
    .map((line) => ({ pid: Number.parseInt(line.trim(), 10), args: line.trim().replace(/^\d+\s+/, "") }))
}

export const cliChildren = (): Array<number> => cliProcesses().map((p) => p.pid)

/** Wait until no CLI child remains (or give up after `ms`), returning what is left. */
export const waitForNoCliChildren = async (ms = 2000): Promise<Array<number>> => {
  const deadline = Date.now() + ms
  for (;;) {
    const left = cliChildren()
    if (left.length === 0 || Date.now() > deadline) return left
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export interface HealthBody {
  readonly status: string
  readonly sessions: { readonly running: number; readonly queued: number; readonly limit: number }
  readonly pool: {
    readonly processes: number
    readonly leased: number
    readonly hits: number
    readonly misses: number
    readonly spawned: number
    readonly reused: number
    readonly resetFailed: number
    readonly retired: number
    readonly signatures: ReadonlyArray<{ readonly model: string; readonly standby: number; readonly spawning: number }>
  }
  readonly tools: { readonly parked: number }
  readonly conversations: { readonly live: number }
}

export const health = async (gateway: Gateway): Promise<HealthBody> =>
  (await (await fetch(`${gateway.url}/health`)).json()) as HealthBody

/** Poll /health until `ready` holds (standbys booted, …). */
export const waitForHealth = async (gateway: Gateway, ready: (h: HealthBody) => boolean, ms = 15_000) => {
  const deadline = Date.now() + ms
  for (;;) {
    const body = await health(gateway)
    if (ready(body)) return body
    if (Date.now() > deadline) throw new Error(`health never became ready: ${JSON.stringify(body)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Total ready standbys across signatures. */
export const standbys = (h: HealthBody) => h.pool.signatures.reduce((n, s) => n + s.standby, 0)

/** POST a raw body (an object is JSON-encoded) to /v1/chat/completions, bypassing client validation. */
export const postChat = (gateway: Gateway, body: unknown) =>
  fetch(`${gateway.baseURL}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

/** The official openai client for a gateway; no retries, so that failures show at once. */
export const openaiFor = (gateway: Gateway) => new OpenAI({ baseURL: gateway.baseURL, apiKey: "unused", maxRetries: 0 })
