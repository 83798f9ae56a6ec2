import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startUpstream, type Upstream } from "../support/upstream.js"

// No CLI outlives the gateway, even one SIGKILLed mid-turn (issue 13, item 3): the gateway runs in
// a process of its own (test/support/gateway-main.ts), drives the real CLI, and is killed.

const VITE_NODE = fileURLToPath(new URL("../../node_modules/.bin/vite-node", import.meta.url))
const MAIN = fileURLToPath(new URL("../support/gateway-main.ts", import.meta.url))

let upstream: Upstream
let gateway: ChildProcess | undefined
let survivors: Array<number> = []

/** Every process below `root` (pid and command line). */
const descendants = (root: number): Array<{ readonly pid: number; readonly args: string }> => {
  const rows = execFileSync("ps", ["-eo", "pid=,ppid=,args="], { encoding: "utf8" }).split("\n").flatMap((line) => {
    const match = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line)
    return match ? [{ pid: Number(match[1]), ppid: Number(match[2]), args: match[3]! }] : []
  })
  const found: Array<{ pid: number; args: string }> = []
  const walk = (parent: number) => {
    for (const row of rows.filter((r) => r.ppid === parent)) {
      found.push({ pid: row.pid, args: row.args })
      walk(row.pid)
    }
  }
  walk(root)
  return found
}

/** Running (a zombie is dead: this machine's init may never reap what it inherits). */
const alive = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "")[0] !== "Z"
  } catch {
    return false
  }
}

beforeAll(async () => {
  upstream = await startUpstream()
})

afterAll(async () => {
  if (gateway?.exitCode === null) gateway.kill("SIGKILL")
  for (const pid of survivors) if (alive(pid)) process.kill(pid, "SIGKILL")
  await upstream?.close()
})

describe("a gateway killed with SIGKILL mid-turn", () => {
  it("takes every CLI with it within a second: the running turn stops streaming upstream", async () => {
    // A turn of ~15 s: 60 deltas 250 ms apart.
    upstream.on("ORPHAN-LONG", { kind: "message", blocks: [{ type: "text", text: Array.from({ length: 60 }, (_, i) => `t${i} `) }], interDeltaMs: 250 })
    gateway = spawn(VITE_NODE, [MAIN, upstream.url], { stdio: ["ignore", "pipe", "inherit"] })
    const url = await new Promise<string>((resolve, reject) => {
      let out = ""
      gateway!.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        const line = out.split("\n").find((l) => l.startsWith("{"))
        if (line !== undefined) resolve((JSON.parse(line) as { url: string }).url)
      })
      gateway!.once("exit", (code) => reject(new Error(`gateway exited (${code})`)))
    })
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "sonnet", stream: true, messages: [{ role: "user", content: "ORPHAN-LONG" }] })
    })
    const reader = response.body!.getReader()
    let streamed = ""
    while (!streamed.includes("t2 ")) streamed += new TextDecoder().decode((await reader.read()).value)
    const clis = descendants(gateway.pid!).filter((p) => p.args.includes("stream-json"))
    expect(clis.length).toBeGreaterThan(0) // the turn's CLI (and the standby)
    survivors = clis.map((p) => p.pid)

    gateway.kill("SIGKILL")
    const killedAt = Date.now()
    while (survivors.some(alive) && Date.now() - killedAt < 1500) await new Promise((resolve) => setTimeout(resolve, 25))
    expect(survivors.filter(alive)).toEqual([])
    expect(Date.now() - killedAt).toBeLessThan(1500)
    void reader.cancel().catch(() => {})
  })
})
