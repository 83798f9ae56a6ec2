/** What the benchmarks share: paths, statistics, ports, child processes, the gateway as a child process. */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const BIN = path.join(ROOT, "build/src/bin.js")
export const CLAUDE = path.join(ROOT, "node_modules/.bin/claude")
export const SH_STUB = path.join(ROOT, "bench/stub-cli.sh")
export const TIMED_STUB = path.join(ROOT, "bench/stub-cli-timed.mjs")

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
export const round = (n: number) => Math.round(n * 100) / 100
export const quantile = (xs: ReadonlyArray<number>, q: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
}
export const summary = (xs: ReadonlyArray<number>) => ({
  n: xs.length,
  p50: round(quantile(xs, 0.5)),
  p90: round(quantile(xs, 0.9)),
  p99: round(quantile(xs, 0.99))
})
export const now = () => performance.now()

export const freePort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

export const cliEnv = (home: string, upstream: string) => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: home,
  ANTHROPIC_BASE_URL: upstream,
  ANTHROPIC_API_KEY: "sk-bench",
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1"
})

export const waitForUrl = async (url: string) => {
  // Generous: on a loaded 2-core machine a gateway (and its first CLI) may take many seconds to start.
  for (let i = 0; i < 1200; i++) {
    try {
      if ((await fetch(url)).status < 600) return
    } catch {
      // not up yet
    }
    await sleep(50)
  }
  throw new Error(`${url} never came up`)
}

export const stopChild = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGTERM")
    setTimeout(() => child.kill("SIGKILL"), 10_000).unref()
  })

export interface Child {
  readonly url: string
  readonly pid: number
  readonly stop: () => Promise<void>
}

/** The real gateway as a child process (`node build/src/bin.js`) in a temporary HOME, configured through flags. */
export const startGateway = async (options: {
  readonly command: string
  readonly upstream?: string
  readonly set: ReadonlyArray<string>
  /** Another build's bin.js (to compare two versions side by side). */
  readonly bin?: string
}): Promise<Child> => {
  const port = await freePort()
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-bench-"))
  const args = [options.bin ?? BIN, "--port", String(port), "--claude-command", options.command, "--log-level", "error"]
  // Each request is its own conversation here: no CLI kept after it unless a run asks for it.
  // A stub CLI keeps no transcripts, so it cannot be reset for reuse: its processes are not reused.
  const stub = options.command === CLAUDE ? [] : ["pool.reuse=false"]
  for (const s of [`claude.workspace=${path.join(home, "workspace")}`, "conversation.max_live=0", ...stub, ...options.set]) args.push("--set", s)
  const child = spawn(process.execPath, args, {
    env: cliEnv(home, options.upstream ?? "http://127.0.0.1:9"),
    stdio: ["ignore", "inherit", "inherit"]
  })
  const url = `http://127.0.0.1:${port}`
  try {
    await waitForUrl(`${url}/health`)
  } catch (error) {
    await stopChild(child) // no gateway (and its CLIs) left behind
    throw error
  }
  return {
    url,
    pid: child.pid!,
    stop: async () => {
      await stopChild(child)
      fs.rmSync(home, { recursive: true, force: true })
    }
  }
}
