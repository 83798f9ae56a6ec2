/**
 * Gateway CPU per later turn of a conversation (stub CLI), and per cache hit. Not a test.
 *   node bench/turncpu.mjs [sequential turns=400] [c64 turns=1500]
 * Needs a build (`npx tsc -p tsconfig.json --noEmit false --outDir build`). With CPU_PROF=dir the
 * gateway runs under `node --cpu-prof --cpu-prof-dir=dir`; NODE_FLAGS adds node flags (e.g. the step
 * counter bench/opcount.mjs, whose OPCOUNT_* variables are passed on). Prints JSON; CPU is read from /proc, so
 * it is less sensitive than wall time to other load on the machine. WARMUP=n turns before measuring (default 300).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const BIN = path.resolve(process.env.BIN ?? path.join(ROOT, "build/src/bin.js"))
const STUB = path.join(ROOT, "bench/stub-cli.sh")
const sequential = Number(process.argv[2] ?? 400)
const concurrentTotal = Number(process.argv[3] ?? 1500)

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const round = (n) => Math.round(n * 100) / 100
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]
const freePort = () => new Promise((resolve) => {
  const server = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address()
    server.close(() => resolve(port))
  })
})
const cpuMs = (pid) => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
// A kept-alive socket the server closes as it is reused resets the request: sent again, once.
const post = (url, body) => postOnce(url, body).catch((error) => error.code === "ECONNRESET" ? postOnce(url, body) : Promise.reject(error))
const postOnce = (url, body) => new Promise((resolve, reject) => {
  const started = performance.now()
  const request = http.request(url, { method: "POST", agent, headers: { "content-type": "application/json" } }, (response) => {
    let text = ""
    response.setEncoding("utf8")
    response.on("data", (chunk) => { text += chunk })
    response.on("end", () => resolve({ status: response.statusCode, text, ms: performance.now() - started, cache: response.headers["x-cache"] }))
    response.on("error", reject)
  })
  request.on("error", reject)
  request.end(body)
})

const start = async (set) => {
  const port = await freePort()
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-turncpu-"))
  const prof = [...(process.env.CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.CPU_PROF}`] : []), ...(process.env.NODE_FLAGS ?? "").split(" ").filter(Boolean)]
  const args = [...prof, BIN, "--port", String(port), "--claude-command", STUB, "--log-level", "error"]
  // GATEWAY_SET="a.b=1;c.d=2" adds config to every gateway (e.g. telemetry settings).
  const extra = (process.env.GATEWAY_SET ?? "").split(";").filter(Boolean)
  for (const s of [`claude.workspace=${path.join(home, "ws")}`, `conversation.data_dir=${path.join(home, "data")}`, "pool.reuse=false", ...set, ...extra]) args.push("--set", s)
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, HOME: home, ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("OPCOUNT_"))) }, stdio: ["ignore", "inherit", "inherit"] })
  const url = `http://127.0.0.1:${port}`
  for (;;) {
    try { if ((await fetch(`${url}/health`)).status < 600) break } catch { await sleep(50) }
  }
  return {
    url, pid: child.pid,
    stop: () => new Promise((resolve) => { child.once("exit", resolve); child.kill("SIGTERM") }).then(() => fs.rmSync(home, { recursive: true, force: true }))
  }
}

const chat = (content, stream, id) => JSON.stringify({ model: "sonnet", stream, ...(id ? { conversation_id: id } : {}), messages: [{ role: "user", content }] })
const check = (r) => { if (r.status !== 200) throw new Error(`status ${r.status}: ${r.text.slice(0, 300)}`) ; return r }

const laterTurns = async () => {
  const g = await start(["conversation.max_live=128", "claude.max_concurrent_sessions=128", "queue.max_waiting=1024", "pool.max_processes=256"])
  const chatUrl = `${g.url}/v1/chat/completions`
  try {
    const open = async () => JSON.parse(check(await post(chatUrl, chat("open", false))).text).conversation_id
    const id = await open()
    // Stream and non-stream turns alternate, so that neither pays alone for the JIT's warm-up or the machine's moods.
    const measure = async (kinds) => {
      const runs = Object.fromEntries(kinds.map((stream) => [stream, { cpu: [], ms: [] }]))
      for (let i = 0; i < sequential * kinds.length; i++) {
        const stream = kinds[i % kinds.length]
        const before = cpuMs(g.pid)
        const r = check(await post(chatUrl, chat("next", stream, id)))
        runs[stream].ms.push(r.ms)
        runs[stream].cpu.push(cpuMs(g.pid) - before)
      }
      const figures = ({ cpu, ms }) => ({ p50_ms: round(quantile(ms, 0.5)), p90_ms: round(quantile(ms, 0.9)), cpu_ms_per_turn: round(cpu.reduce((a, b) => a + b, 0) / cpu.length) })
      return Object.fromEntries(kinds.map((stream) => [stream ? "stream" : "non_stream", figures(runs[stream])]))
    }
    // WARMUP (default 300): the JIT keeps making a turn cheaper for ~2 000 turns.
    for (let i = 0; i < Number(process.env.WARMUP ?? 300); i++) check(await post(chatUrl, chat("warm", i % 2 === 0, id)))
    const phase = process.env.PHASE
    if (phase === "stream") return await measure([true])
    if (phase === "nonstream") return await measure([false])
    const { stream, non_stream: nonStream } = await measure([true, false])
    // c64: 64 conversations, each request a later turn on its live CLI.
    const ids = await Promise.all(Array.from({ length: 64 }, open))
    const bodies = ids.map((cid) => chat("next", true, cid))
    let next = 0
    const cpuBefore = cpuMs(g.pid)
    const started = performance.now()
    await Promise.all(bodies.map(async (body) => {
      while (next++ < concurrentTotal) check(await post(chatUrl, body))
    }))
    const wall = performance.now() - started
    const c64 = { requests_per_s: round(concurrentTotal / (wall / 1000)), cpu_ms_per_turn: round((cpuMs(g.pid) - cpuBefore) / concurrentTotal) }
    return { stream, non_stream: nonStream, c64 }
  } finally {
    await g.stop()
  }
}

const cacheHits = async () => {
  const g = await start(["conversation.max_live=0", "cache.enabled=true"])
  const chatUrl = `${g.url}/v1/chat/completions`
  try {
    check(await post(chatUrl, chat("cached", false)))
    for (let i = 0; i < 100; i++) check(await post(chatUrl, chat("cached", false)))
    const ms = []
    const before = cpuMs(g.pid)
    for (let i = 0; i < sequential; i++) {
      const r = check(await post(chatUrl, chat("cached", false)))
      if (r.cache !== "hit") throw new Error(`expected a hit, got ${r.cache}`)
      ms.push(r.ms)
    }
    return { p50_ms: round(quantile(ms, 0.5)), p90_ms: round(quantile(ms, 0.9)), cpu_ms_per_hit: round((cpuMs(g.pid) - before) / sequential) }
  } finally {
    await g.stop()
  }
}

// The floor: the same HTTP stack answering GET /v1/models, no CLI and no conversation.
const floor = async () => {
  const g = await start([])
  try {
    const get = () => new Promise((resolve, reject) => {
      const started = performance.now()
      http.get(`${g.url}/v1/models`, { agent }, (response) => {
        response.resume()
        response.on("end", () => resolve(performance.now() - started))
      }).on("error", reject)
    })
    for (let i = 0; i < 200; i++) await get()
    const ms = []
    const before = cpuMs(g.pid)
    for (let i = 0; i < sequential; i++) ms.push(await get())
    return { p50_ms: round(quantile(ms, 0.5)), cpu_ms_per_request: round((cpuMs(g.pid) - before) / sequential) }
  } finally {
    await g.stop()
  }
}

const which = process.env.ONLY
const out = {}
if (!which || which === "floor") out.models_floor = await floor()
if (!which || which === "turns") out.later_turns = await laterTurns()
if (!which || which === "cache") out.cache_hits = await cacheHits()
console.log(JSON.stringify({ load_average: os.loadavg().map(round), ...out }, null, 2))
