import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { execFileSync } from "node:child_process"
import { type Gateway, startGateway, waitForNoCliChildren } from "../support/gateway.js"

// Fault injection through a STUB CLI (test/support/stub-cli.mjs), not the real one: a CLI that
// acknowledges the interrupt but never ends the turn (and ignores SIGTERM) cannot be produced on
// demand by the real CLI. sessions.turn_timeout_seconds must still free the session.

const STUB = fileURLToPath(new URL("../support/stub-cli.mjs", import.meta.url))

type Json = Record<string, any>

/** Stub CLI processes that are children of this test process. */
const stubs = (): Array<number> => {
  let out = ""
  try {
    out = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(process.pid)], { encoding: "utf8" })
  } catch {
    return [] // ps exits 1 when there are no children
  }
  return out.split("\n").filter((line) => line.includes("stub-cli.mjs")).map((line) => Number.parseInt(line.trim(), 10))
}

let gateway: Gateway

beforeAll(async () => {
  gateway = await startGateway({
    upstreamUrl: "http://127.0.0.1:9",
    config: { claude: { command: STUB, timeout_seconds: 5 }, pool: { prewarm: 0 }, sessions: { turn_timeout_seconds: 1 } }
  })
})

afterAll(async () => {
  await gateway?.close()
  expect(await waitForNoCliChildren()).toEqual([])
  expect(stubs()).toEqual([])
})

describe("a session turn whose CLI ignores the interrupt (stub CLI)", () => {
  it("is interrupted after sessions.turn_timeout_seconds, then its CLI is killed; the next message works", async () => {
    const created = await fetch(`${gateway.url}/v1/sessions`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })
    expect(created.status).toBe(201)
    const session = (await created.json()) as Json
    const frames: Array<Json> = []
    // after=0: the session's boot (state idle) is replayed if it came before the connection.
    const ws = new WebSocket(`${gateway.url.replace("http", "ws")}${session.websocket_url}?after=0`)
    ws.on("message", (data) => frames.push(JSON.parse(String(data)) as Json))
    await new Promise((resolve, reject) => {
      ws.once("open", resolve)
      ws.once("error", reject)
    })
    const next = async (match: (frame: Json) => boolean, ms = 30_000) => {
      const deadline = Date.now() + ms
      for (;;) {
        const found = frames.find(match)
        if (found !== undefined) return found
        if (Date.now() > deadline) throw new Error(`no matching frame: ${JSON.stringify(frames)}`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    try {
      await next((f) => f.type === "state" && f.state === "idle")
      const hung = stubs()
      expect(hung).toHaveLength(1)
      const started = Date.now()
      ws.send(JSON.stringify({ type: "user_message", content: "STUB-HANG" }))
      const timedOut = await next((f) => f.type === "error" && f.code === "turn_timeout")
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000)
      // The stub acknowledged the interrupt but goes on: after the grace period it is killed.
      const failed = await next((f) => f.type === "error" && f.code === "cli_error" && f.seq > timedOut.seq)
      await next((f) => f.type === "state" && f.state === "idle" && f.seq > failed.seq)
      expect(stubs().filter((pid) => hung.includes(pid))).toEqual([])

      const from = frames.length
      ws.send(JSON.stringify({ type: "user_message", content: "after the hang" }))
      const result = await next((f) => f.type === "result" && frames.indexOf(f) >= from)
      expect(result).toMatchObject({ text: "tok0 tok1 tok2 ", is_error: false, interrupted: false })
    } finally {
      ws.close()
      await fetch(`${gateway.url}/v1/sessions/${session.id}`, { method: "DELETE" })
    }
  })
})
