/**
 * Gateway CPU and client CPU per later turn (stub CLI): the openai SDK (what `npm run bench -- rpc` compares with), a raw node:http SSE client, the typed RPC client over HTTP
 * (NDJSON) and over WebSocket. Not a test. After a build into build/: node bench/rpccpu.mjs [turns=300]; ONLY=<series>.
 * STEPS=1 also counts the client's Effect run-loop steps per call (they do not depend on the machine's load).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const { Effect, Stream, ManagedRuntime } = await import(`${ROOT}/node_modules/effect/dist/esm/index.js`)
const { GatewayClient } = await import(`${ROOT}/build/src/client.js`)
const { default: OpenAI } = await import(`${ROOT}/node_modules/openai/index.mjs`)
const N = Number(process.argv[2] ?? 300)
let steps = 0
if (process.env.STEPS) {
  const { FiberRuntime } = await import(`${ROOT}/node_modules/effect/dist/esm/internal/fiberRuntime.js`)
  for (const op of ["Tag", "Left", "Right", "Some", "None", "Sync", "Success", "Failure", "Async", "Commit", "OnFailure", "OnSuccess", "OnSuccessAndFailure", "WithRuntime", "Yield", "While", "Iterator", "RevertFlags", "UpdateRuntimeFlags"]) {
    const original = FiberRuntime.prototype[op]
    if (typeof original === "function") FiberRuntime.prototype[op] = function(cur) { steps++; return original.call(this, cur) }
  }
}
const freePort = () => new Promise((resolve) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)) }) })
const cpuMs = (pid) => { const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return ((Number(f[11]) + Number(f[12])) * 1000) / 100 }
const port = await freePort()
const home = fs.mkdtempSync(path.join(os.tmpdir(), "rpccpu-"))
const args = [...(process.env.NODE_FLAGS ?? "").split(" ").filter(Boolean), `${ROOT}/build/src/bin.js`, "--port", String(port), "--claude-command", `${ROOT}/bench/stub-cli.sh`, "--log-level", "error"]
for (const s of [`claude.workspace=${home}/ws`, `conversation.data_dir=${home}/data`, "pool.reuse=false", "conversation.max_live=16"]) args.push("--set", s)
const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, HOME: home, ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("OPCOUNT_"))) }, stdio: "inherit" })
const url = `http://127.0.0.1:${port}`
for (;;) { try { if ((await fetch(`${url}/health`)).status < 600) break } catch { await new Promise((r) => setTimeout(r, 50)) } }
const agent = new http.Agent({ keepAlive: true })
const post = (body) => new Promise((resolve, reject) => { const r = http.request(`${url}/v1/chat/completions`, { method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => { let t = ""; res.setEncoding("utf8"); res.on("data", (c) => t += c); res.on("end", () => resolve({ t, id: res.headers["x-conversation-id"] })) }); r.on("error", reject); r.end(body) })
const viaHttp = ManagedRuntime.make(GatewayClient.layer({ url }))
const viaWs = ManagedRuntime.make(GatewayClient.layer({ url, transport: "websocket" }))
const rpcTurn = (rt, conversationId, input) => rt.runPromise(Effect.gen(function*() { const c = yield* GatewayClient; let id = ""; yield* Stream.runForEach(c.Chat({ model: "sonnet", conversationId, input }), (e) => Effect.sync(() => { if (e._tag === "Accepted") id = e.conversationId })); return id }))
const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 })
const openaiTurn = async (conversation_id, content) => {
  const { data, response } = await openai.chat.completions.create({ model: "sonnet", stream: true, messages: [{ role: "user", content }], ...(conversation_id ? { conversation_id } : {}) }).withResponse()
  for await (const _ of data) { /* read to the end */ }
  return response.headers.get("x-conversation-id")
}
const series = {
  openai_sdk_sse: { open: () => openaiTurn(undefined, "open"), next: (id) => openaiTurn(id, "next") },
  raw_http_sse: { open: async () => (await post(JSON.stringify({ model: "sonnet", stream: true, messages: [{ role: "user", content: "open" }] }))).id, next: (id) => post(JSON.stringify({ model: "sonnet", stream: true, conversation_id: id, messages: [{ role: "user", content: "next" }] })) },
  rpc_http: { open: () => rpcTurn(viaHttp, undefined, "open"), next: (id) => rpcTurn(viaHttp, id, "next") },
  rpc_ws: { open: () => rpcTurn(viaWs, undefined, "open"), next: (id) => rpcTurn(viaWs, id, "next") }
}
const only = process.env.ONLY
const out = {}
for (const [name, s] of Object.entries(series)) {
  if (only && only !== name) continue
  const id = await s.open()
  for (let i = 0; i < 50; i++) await s.next(id)
  const g0 = cpuMs(child.pid), c0 = process.cpuUsage(), t0 = performance.now(), s0 = steps
  for (let i = 0; i < N; i++) await s.next(id)
  const c1 = process.cpuUsage(c0)
  out[name] = { gateway_cpu_ms: +((cpuMs(child.pid) - g0) / N).toFixed(2), client_cpu_ms: +(((c1.user + c1.system) / 1000) / N).toFixed(2), wall_ms: +((performance.now() - t0) / N).toFixed(2), ...(process.env.STEPS ? { client_steps: Math.round((steps - s0) / N) } : {}) }
}
await viaHttp.dispose(); await viaWs.dispose()
await new Promise((r) => { child.once("exit", r); child.kill("SIGTERM") })
fs.rmSync(home, { recursive: true, force: true })
console.log(JSON.stringify({ load: os.loadavg()[0], ...out }))
