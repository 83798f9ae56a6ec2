/**
 * Where the time of a later turn goes, through the openai client (SSE), the typed RPC client over HTTP and over
 * WebSocket: the real CLI against the scripted upstream, the three interleaved turn by turn as in `npm run bench -- rpc`.
 * Not a test. After a build into build/: node bench/turnphases.mjs [turns=150]. Per series, medians in ms:
 * - total: the client's whole turn; cli: from the CLI's user message to its `result` line (read by
 *   bench/turn-phases-preload.mjs in the gateway); over = total − cli, the turn without the CLI's own time, which
 *   varies by ±5 ms from turn to turn and hides sub-millisecond differences in `total`;
 * - pre: the client's start to the CLI's input; post: the CLI's result to the client's end, split into reply (the
 *   result to the gateway's next socket write), delivery (to the client's last read from the gateway's socket) and
 *   tail (from there to the end of the client's call).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const { Effect, Stream, ManagedRuntime } = await import(`${ROOT}/node_modules/effect/dist/esm/index.js`)
const { GatewayClient } = await import(`${ROOT}/build/src/client.js`)
const { startUpstream } = await import(`${ROOT}/build/test/support/upstream.js`)
const { default: OpenAI } = await import(`${ROOT}/node_modules/openai/index.mjs`)
const TURNS = Number(process.argv[2] ?? 150)
const clock = () => performance.timeOrigin + performance.now()

const freePort = () => new Promise((resolve) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)) }) })
const port = await freePort()
// The client's last read from the gateway, per turn.
let lastRead = 0
const emit = net.Socket.prototype.emit
net.Socket.prototype.emit = function(event, ...rest) {
  if (event === "data" && this.remotePort === port) lastRead = clock()
  return emit.call(this, event, ...rest)
}

const upstream = await startUpstream()
const home = fs.mkdtempSync(path.join(os.tmpdir(), "turnphases-"))
const out = path.join(home, "phases.json")
const args = ["--import", `${ROOT}/bench/turn-phases-preload.mjs`, `${ROOT}/build/src/bin.js`, "--port", String(port), "--claude-command", `${ROOT}/node_modules/.bin/claude`, "--log-level", "error"]
for (const s of [`claude.workspace=${home}/ws`, `conversation.data_dir=${home}/data`, "conversation.max_live=8"]) args.push("--set", s)
const child = spawn(process.execPath, args, {
  env: { PATH: process.env.PATH, HOME: home, ANTHROPIC_BASE_URL: upstream.url, ANTHROPIC_API_KEY: "sk-bench", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1", TURNPHASES_OUT: out },
  stdio: "inherit"
})
const url = `http://127.0.0.1:${port}`
for (;;) { try { if ((await fetch(`${url}/health`)).status < 600) break } catch { await new Promise((r) => setTimeout(r, 50)) } }

const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 })
const viaHttp = ManagedRuntime.make(GatewayClient.layer({ url }))
const viaWs = ManagedRuntime.make(GatewayClient.layer({ url, transport: "websocket" }))
const openaiTurn = async (conversation_id, content) => {
  const { data, response } = await openai.chat.completions.create({ model: "sonnet", stream: true, messages: [{ role: "user", content }], ...(conversation_id ? { conversation_id } : {}) }).withResponse()
  for await (const _ of data) { /* read to the end */ }
  return response.headers.get("x-conversation-id")
}
const rpcTurn = (rt, conversationId, input) => rt.runPromise(Effect.gen(function*() {
  const client = yield* GatewayClient
  let id = ""
  yield* Stream.runForEach(client.Chat({ model: "sonnet", conversationId, input }), (e) => Effect.sync(() => { if (e._tag === "Accepted") id = e.conversationId }))
  return id
}))
const series = {
  openai_http_sse: (id, input) => openaiTurn(id, input),
  rpc_http_ndjson: (id, input) => rpcTurn(viaHttp, id, input),
  rpc_websocket: (id, input) => rpcTurn(viaWs, id, input)
}
const names = Object.keys(series)
const ids = {}
for (const name of names) {
  ids[name] = await series[name](undefined, `open ${name}`)
  for (let i = 0; i < 10; i++) await series[name](ids[name], `warm ${i}`)
}
const phases = () => new Promise((resolve) => {
  child.kill("SIGUSR2")
  const poll = () => fs.existsSync(out) ? resolve(JSON.parse(fs.readFileSync(out, "utf8"))) : setTimeout(poll, 20)
  setTimeout(poll, 50)
})
await phases()
fs.rmSync(out)
const turns = []
for (let i = 0; i < TURNS; i++) {
  for (const name of names.map((_, k) => names[(k + i) % names.length])) {
    const start = clock()
    await series[name](ids[name], `next ${i}`)
    turns.push({ name, start, end: clock(), read: lastRead })
  }
}
const log = await phases()
const first = (kind, from) => log.find(([k, t]) => k === kind && t >= from)?.[1]
const median = (xs) => { const s = xs.filter(Number.isFinite).sort((a, b) => a - b); return +s[Math.floor(s.length / 2)].toFixed(2) }
const rows = Object.fromEntries(names.map((name) => {
  const mine = turns.filter((t) => t.name === name).map((t) => {
    const stdin = first("stdin", t.start)
    const result = first("result", stdin)
    const reply = first("tcp", result)
    return { total: t.end - t.start, cli: result - stdin, over: t.end - t.start - (result - stdin), pre: stdin - t.start, post: t.end - result, reply: reply - result, delivery: t.read - reply, tail: t.end - t.read }
  }).filter((t) => t.cli > 0 && t.cli < t.total)
  return [name, { turns: mine.length, ...Object.fromEntries(["total", "cli", "over", "pre", "post", "reply", "delivery", "tail"].map((k) => [k, median(mine.map((t) => t[k]))])) }]
}))
await viaHttp.dispose()
await viaWs.dispose()
await new Promise((r) => { child.once("exit", r); child.kill("SIGTERM") })
await upstream.close()
fs.rmSync(home, { recursive: true, force: true })
console.log(JSON.stringify({ load: os.loadavg()[0], ...rows }, null, 1))
