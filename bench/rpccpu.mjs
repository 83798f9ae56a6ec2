/**
 * Gateway CPU and client CPU per later turn (stub CLI): the openai SDK (what `npm run bench -- rpc` compares with), a raw node:http SSE client, the typed RPC client over HTTP
 * (NDJSON) and over WebSocket. Not a test. After a build into build/: node bench/rpccpu.mjs [turns=300]; ONLY=<series>.
 * STEPS=1 also counts the client's Effect run-loop steps per call (they do not depend on the machine's load).
 * OLD_CLIENT=<another build's build/src/client.js> adds that client's series (same gateway). STUB=gaps: a stub CLI
 * whose lines come spread out like the real CLI's (bench/stub-cli-gaps.mjs; STUB_DELTAS, STUB_GAP_MS). The series
 * take turns in rounds of ROUND turns (default 25), so that a change in the machine's load falls on all of them.
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
const OldClient = process.env.OLD_CLIENT ? (await import(path.resolve(process.env.OLD_CLIENT))).GatewayClient : undefined
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
const args = [...(process.env.NODE_FLAGS ?? "").split(" ").filter(Boolean), `${ROOT}/build/src/bin.js`, "--port", String(port), "--claude-command", process.env.STUB === "gaps" ? `${ROOT}/bench/stub-cli-gaps.mjs` : `${ROOT}/bench/stub-cli.sh`, "--log-level", "error"]
for (const s of [`claude.workspace=${home}/ws`, `conversation.data_dir=${home}/data`, "pool.reuse=false", "conversation.max_live=16"]) args.push("--set", s)
const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, HOME: home, ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("OPCOUNT_") || k.startsWith("STUB_"))) }, stdio: "inherit" })
const url = `http://127.0.0.1:${port}`
for (;;) { try { if ((await fetch(`${url}/health`)).status < 600) break } catch { await new Promise((r) => setTimeout(r, 50)) } }
const agent = new http.Agent({ keepAlive: true })
const post = (body) => new Promise((resolve, reject) => { const r = http.request(`${url}/v1/chat/completions`, { method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => { let t = ""; res.setEncoding("utf8"); res.on("data", (c) => t += c); res.on("end", () => resolve({ t, id: res.headers["x-conversation-id"] })) }); r.on("error", reject); r.end(body) })
const viaHttp = ManagedRuntime.make(GatewayClient.layer({ url }))
const viaWs = ManagedRuntime.make(GatewayClient.layer({ url, transport: "websocket" }))
const oldViaHttp = OldClient && ManagedRuntime.make(OldClient.layer({ url }))
const oldViaWs = OldClient && ManagedRuntime.make(OldClient.layer({ url, transport: "websocket" }))
const rpcTurn = (rt, conversationId, input, tag = GatewayClient) => rt.runPromise(Effect.gen(function*() { const c = yield* tag; let id = ""; yield* Stream.runForEach(c.Chat({ model: "sonnet", conversationId, input }), (e) => Effect.sync(() => { if (e._tag === "Accepted") id = e.conversationId })); return id }))
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
  rpc_ws: { open: () => rpcTurn(viaWs, undefined, "open"), next: (id) => rpcTurn(viaWs, id, "next") },
  ...(OldClient ? {
    old_rpc_http: { open: () => rpcTurn(oldViaHttp, undefined, "open", OldClient), next: (id) => rpcTurn(oldViaHttp, id, "next", OldClient) },
    old_rpc_ws: { open: () => rpcTurn(oldViaWs, undefined, "open", OldClient), next: (id) => rpcTurn(oldViaWs, id, "next", OldClient) }
  } : {})
}
const only = process.env.ONLY
const names = Object.keys(series).filter((name) => !only || only.split(",").includes(name))
const ROUND = Number(process.env.ROUND ?? 25)
const ids = {}
const sums = Object.fromEntries(names.map((name) => [name, { gateway: 0, client: 0, wall: 0, steps: 0, n: 0 }]))
for (const name of names) {
  ids[name] = await series[name].open()
  for (let i = 0; i < 50; i++) await series[name].next(ids[name])
}
for (let done = 0; done < N; done += ROUND) {
  const k = Math.min(ROUND, N - done)
  for (const name of names) {
    const g0 = cpuMs(child.pid), c0 = process.cpuUsage(), t0 = performance.now(), s0 = steps
    for (let i = 0; i < k; i++) await series[name].next(ids[name])
    const c1 = process.cpuUsage(c0), sum = sums[name]
    sum.gateway += cpuMs(child.pid) - g0; sum.client += (c1.user + c1.system) / 1000; sum.wall += performance.now() - t0; sum.steps += steps - s0; sum.n += k
  }
}
const out = Object.fromEntries(names.map((name) => {
  const { gateway, client, wall, steps: st, n } = sums[name]
  return [name, { gateway_cpu_ms: +(gateway / n).toFixed(2), client_cpu_ms: +(client / n).toFixed(2), wall_ms: +(wall / n).toFixed(2), ...(process.env.STEPS ? { client_steps: Math.round(st / n) } : {}) }]
}))
await viaHttp.dispose(); await viaWs.dispose(); await oldViaHttp?.dispose(); await oldViaWs?.dispose()
await new Promise((r) => { child.once("exit", r); child.kill("SIGTERM") })
fs.rmSync(home, { recursive: true, force: true })
console.log(JSON.stringify({ load: os.loadavg()[0], ...out }))
