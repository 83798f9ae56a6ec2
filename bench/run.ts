/**
 * Benchmarks (not tests): each compares within one run and prints JSON.
 *   npm run bench                 all of them
 *   npm run bench -- latency      one of: latency, laterturns, overhead, delta, rss, newconv, rpc, cache, telemetry, concurrent, clirss
 * The gateway runs as a child process (`node build/src/bin.js`), as a user would run it.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as crypto from "node:crypto"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either, ManagedRuntime, Stream } from "effect"
import OpenAI from "openai"
import type { ChatCompletionCreateParamsStreaming } from "openai/resources/chat/completions"
import { GatewayClient } from "../src/client.js"
import { cliArgs } from "../src/cli/CliProcess.js"
import { decodeConfig } from "../src/config/GatewayConfig.js"
import { startUpstream, type Upstream } from "../test/support/upstream.js"
import {
  type Child,
  CLAUDE,
  cliEnv,
  freePort,
  now,
  quantile,
  round,
  SH_STUB,
  sleep,
  startGateway,
  stopChild,
  summary,
  TIMED_STUB
} from "./support.js"
import { cacheBench } from "./cache.js"
import { telemetryOverhead } from "./telemetry.js"

// ---------------------------------------------------------------------------- helpers

interface Health {
  readonly pool: { readonly leased: number; readonly signatures: ReadonlyArray<{ readonly standby: number; readonly spawning: number }> }
}
const standbyReady = async (url: string, count = 1, leased = 0) => {
  for (;;) {
    const h = await (await fetch(`${url}/health`)).json() as Health
    if (h.pool.leased === leased && h.pool.signatures.reduce((n, s) => n + s.standby, 0) >= count) return
    await sleep(20)
  }
}

const chatBody = (content: string, stream: boolean) =>
  JSON.stringify({ model: "sonnet", stream, messages: [{ role: "user", content }] })

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })

/** POST and read the whole body; resolves with the latency in ms and the body. */
const post = (url: string, body: string) =>
  new Promise<{ readonly ms: number; readonly status: number; readonly text: string }>((resolve, reject) => {
    const started = now()
    const request = http.request(url, { method: "POST", agent, headers: { "content-type": "application/json" } }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (text += chunk))
      response.on("end", () => resolve({ ms: now() - started, status: response.statusCode ?? 0, text }))
      response.on("error", reject)
    })
    request.on("error", reject)
    request.end(body)
  })

// ---------------------------------------------------------------------------- 1. latency

/** The same CLI, kept alive, driven directly over stream-json: the floor for a warm turn. */
const directTurns = async (upstream: Upstream, turns: number, bare: boolean) => {
  const cli = await directCli(upstream, bare)
  const times: Array<number> = []
  for (let i = 0; i < turns; i++) times.push(await cli.turn(`direct ${i}`))
  await cli.stop()
  return times
}

/** One CLI as the gateway launches it, driven directly: `turn` writes a user message and resolves with the ms to its result. */
const directCli = async (upstream: Upstream, bare: boolean) => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-bench-direct-"))
  const workspace = path.join(home, "workspace")
  fs.mkdirSync(workspace)
  const config = Either.getOrThrow(decodeConfig({ claude: { bare } }))
  const child = spawn(CLAUDE, cliArgs(config, { model: "sonnet", systemPrompt: undefined }), {
    cwd: workspace,
    env: { ...cliEnv(home, upstream.url), CLAUDE_CODE_MAX_RETRIES: "2" },
    stdio: ["pipe", "pipe", "ignore"]
  })
  let buffer = ""
  let waiter: ((line: string) => void) | undefined
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk
    for (let i = buffer.indexOf("\n"); i >= 0; i = buffer.indexOf("\n")) {
      const line = buffer.slice(0, i)
      buffer = buffer.slice(i + 1)
      waiter?.(line)
    }
  })
  const until = (match: (line: string) => boolean) =>
    new Promise<void>((resolve) => {
      waiter = (line) => {
        if (match(line)) resolve()
      }
    })
  const ready = until((line) => line.includes("control_response"))
  child.stdin!.write(`{"type":"control_request","request_id":"r","request":{"subtype":"get_binary_version"}}\n`)
  await ready
  return {
    turn: async (text: string) => {
      const done = until((line) => line.includes(`"type":"result"`))
      const started = now()
      child.stdin!.write(JSON.stringify({ type: "user", session_id: "", message: { role: "user", content: [{ type: "text", text }] }, parent_tool_use_id: null }) + "\n")
      await done
      return now() - started
    },
    stop: async () => {
      await stopChild(child)
      fs.rmSync(home, { recursive: true, force: true })
    }
  }
}

/**
 * Later turns of a conversation through the gateway (non-stream, on its live CLI) against the same
 * CLI driven directly, alternating turn by turn so that both share the machine's noise.
 */
const laterTurns = async (turns = 60) => {
  const upstream = await startUpstream()
  const direct = await directCli(upstream, false)
  const gateway = await startGateway({ command: CLAUDE, upstream: upstream.url, set: ["conversation.max_live=8"] })
  try {
    const opening = await post(`${gateway.url}/v1/chat/completions`, chatBody("open", false))
    const conversationId = (JSON.parse(opening.text) as { conversation_id: string }).conversation_id
    await standbyReady(gateway.url, 1, 1)
    const viaGateway = async (i: number) => {
      const r = await post(`${gateway.url}/v1/chat/completions`, JSON.stringify({ model: "sonnet", conversation_id: conversationId, messages: [{ role: "user", content: `next ${i}` }] }))
      if (r.status !== 200) throw new Error(`later turn failed: ${r.status} ${r.text}`)
      return r.ms
    }
    for (let i = 0; i < 5; i++) {
      await direct.turn(`warm ${i}`)
      await viaGateway(i)
    }
    const d: Array<number> = []
    const g: Array<number> = []
    for (let i = 0; i < turns; i++) {
      // Alternate who goes first.
      if (i % 2 === 0) {
        d.push(await direct.turn(`direct ${i}`))
        g.push(await viaGateway(i))
      } else {
        g.push(await viaGateway(i))
        d.push(await direct.turn(`direct ${i}`))
      }
    }
    const ds = summary(d)
    const gs = summary(g)
    return {
      what: "later turns, non-stream, real CLI + scripted upstream, ms, interleaved",
      direct_kept_alive_cli: ds,
      gateway_live_conversation: gs,
      gateway_over_direct_p50: round(gs.p50 / ds.p50),
      target: "<= 1.3"
    }
  } finally {
    await gateway.stop()
    await direct.stop()
    await upstream.close()
  }
}

/** One mode (the CLI's default or `claude.bare`): the direct floor, then the gateway warm, live and cold. */
const latencySeries = async (upstream: Upstream, turns: number, bare: boolean) => {
  const mode = `claude.bare=${bare}`
  const direct = await directTurns(upstream, turns, bare)

  const warmGateway = await startGateway({ command: CLAUDE, upstream: upstream.url, set: ["pool.prewarm=1", mode] })
  const warm: Array<number> = []
  for (let i = 0; i < turns; i++) {
    await standbyReady(warmGateway.url) // the pool's own work, off the request path
    const r = await post(`${warmGateway.url}/v1/chat/completions`, chatBody(`warm ${i}`, false))
    if (r.status !== 200) throw new Error(`warm request failed: ${r.status} ${r.text}`)
    warm.push(r.ms)
  }
  await warmGateway.stop()

  // Later turns of one conversation (conversation_id): the gateway writes them to the conversation's live CLI.
  const liveGateway = await startGateway({ command: CLAUDE, upstream: upstream.url, set: ["conversation.max_live=8", mode] })
  const opening = await post(`${liveGateway.url}/v1/chat/completions`, chatBody("open", false))
  const conversationId = (JSON.parse(opening.text) as { conversation_id: string }).conversation_id
  await standbyReady(liveGateway.url, 1, 1) // the replacement standby boots off the request path
  const continued: Array<number> = []
  for (let i = 0; i < turns; i++) {
    const body = JSON.stringify({ model: "sonnet", conversation_id: conversationId, messages: [{ role: "user", content: `next ${i}` }] })
    const r = await post(`${liveGateway.url}/v1/chat/completions`, body)
    if (r.status !== 200) throw new Error(`continued request failed: ${r.status} ${r.text}`)
    continued.push(r.ms)
  }
  await liveGateway.stop()

  const coldGateway = await startGateway({ command: CLAUDE, upstream: upstream.url, set: ["pool.enabled=false", mode] })
  const cold: Array<number> = []
  for (let i = 0; i < turns; i++) {
    const r = await post(`${coldGateway.url}/v1/chat/completions`, chatBody(`cold ${i}`, false))
    if (r.status !== 200) throw new Error(`cold request failed: ${r.status} ${r.text}`)
    cold.push(r.ms)
  }
  await coldGateway.stop()

  const d = summary(direct)
  const w = summary(warm)
  const c = summary(cold)
  const l = summary(continued)
  return {
    direct_kept_alive_cli: d,
    gateway_warm_pool: w,
    gateway_live_conversation: l,
    gateway_pool_off_cold: c,
    warm_over_direct_p50: round(w.p50 / d.p50),
    live_conversation_over_direct_p50: round(l.p50 / d.p50),
    cold_over_warm_p50: round(c.p50 / w.p50)
  }
}

const latency = async (turns = 15) => {
  const upstream = await startUpstream()
  try {
    return {
      what: "sequential non-stream turns, real CLI + scripted upstream, ms",
      cli_default: await latencySeries(upstream, turns, false),
      cli_bare: await latencySeries(upstream, turns, true),
      targets: { warm_over_direct_p50: "<= 1.3", cold_over_warm_p50: ">= 5" }
    }
  } finally {
    await upstream.close()
  }
}

// ---------------------------------------------------------------------------- 2. overhead

/** A plain node:http server writing the given SSE bytes frame by frame: the baseline. */
const startPlain = async (frames: ReadonlyArray<string>): Promise<Child> => {
  const port = await freePort()
  const server = http.createServer((request, response) => {
    request.resume()
    request.on("end", () => {
      response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache, no-transform" })
      for (const frame of frames) response.write(frame)
      response.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${port}`,
    pid: process.pid,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}

/** `total` streaming requests shared by one worker per body, each posting its body in a loop. */
const drive = async (url: string, bodies: ReadonlyArray<string>, total: number) => {
  const times: Array<number> = []
  let next = 0
  let failures = 0
  const started = now()
  await Promise.all(bodies.map(async (body) => {
    while (next++ < total) {
      const r = await post(url, body)
      if (r.status === 200 && r.text.endsWith("data: [DONE]\n\n")) times.push(r.ms)
      else failures++
    }
  }))
  const seconds = (now() - started) / 1000
  return { requests_per_s: round(times.length / seconds), ...summary(times), failures }
}

const load = (url: string, body: string, concurrency: number, total: number) =>
  drive(url, Array.from({ length: concurrency }, () => body), total)

/** Like `load`, but each worker opens a conversation and then continues it (conversation_id): no spawn per request. */
const loadConversations = async (url: string, concurrency: number, total: number) => {
  const ids = await Promise.all(Array.from({ length: concurrency }, async () => {
    const opened = await post(url, chatBody("open", false))
    return (JSON.parse(opened.text) as { conversation_id: string }).conversation_id
  }))
  const bodies = ids.map((id) =>
    JSON.stringify({ model: "sonnet", stream: true, conversation_id: id, messages: [{ role: "user", content: "next" }] }))
  return drive(url, bodies, total)
}

/** Gateway vs plain server at concurrency 1, 16 and 64; `before` runs ahead of each gateway load. */
const compare = async (
  gatewayLoad: (concurrency: number, total: number) => ReturnType<typeof load>,
  plainUrl: string,
  before: (concurrency: number) => Promise<void> = async () => {}
) => {
  const results: Record<string, unknown> = {}
  for (const concurrency of [1, 16, 64]) {
    const total = concurrency === 1 ? 300 : 1500
    await before(concurrency)
    const g = await gatewayLoad(concurrency, total)
    const p = await load(`${plainUrl}/`, chatBody("bench", true), concurrency, total)
    results[`c${concurrency}`] = {
      gateway: g,
      plain_node_http: p,
      overhead_p50_ms: round(g.p50 - p.p50),
      overhead_p99_ms: round(g.p99 - p.p99),
      throughput_ratio: round(g.requests_per_s / p.requests_per_s)
    }
  }
  return results
}

const overhead = async () => {
  const gateway = await startGateway({
    command: SH_STUB,
    set: [
      "pool.prewarm=64",
      "pool.standby_per_signature=64",
      "pool.max_standby=64",
      "pool.max_processes=256",
      "claude.max_concurrent_sessions=128",
      "queue.max_waiting=1024"
    ]
  })
  const sample = await post(`${gateway.url}/v1/chat/completions`, chatBody("sample", true))
  const frames = sample.text.split(/(?<=\n\n)/)
  const plain = await startPlain(frames)
  let fresh: Record<string, unknown>
  try {
    fresh = await compare(
      (concurrency, total) => load(`${gateway.url}/v1/chat/completions`, chatBody("bench", true), concurrency, total),
      plain.url,
      (concurrency) => standbyReady(gateway.url, Math.min(64, concurrency))
    )
  } finally {
    await gateway.stop()
  }
  // The same load as later turns of conversations: each on its conversation's live CLI.
  const conversational = await startGateway({
    command: SH_STUB,
    set: ["conversation.max_live=128", "claude.max_concurrent_sessions=128", "queue.max_waiting=1024", "pool.max_processes=256"]
  })
  let continued: Record<string, unknown>
  try {
    continued = await compare(
      (concurrency, total) => loadConversations(`${conversational.url}/v1/chat/completions`, concurrency, total),
      plain.url
    )
  } finally {
    await plain.stop()
    await conversational.stop()
  }
  return {
    what: "streaming requests through the gateway with a STUB CLI (bench/stub-cli.sh, 8 deltas) vs a plain node:http server writing the same SSE bytes",
    new_conversations: fresh,
    continued_conversations: continued,
    targets: { overhead_p50_ms: "<= 1 at c64", overhead_p99_ms: "<= 5 at c64", throughput_ratio: ">= 0.5" }
  }
}

// ---------------------------------------------------------------------------- 3. delta → chunk

const deltaLatency = async (requests = 30) => {
  const gateway = await startGateway({ command: TIMED_STUB, set: ["pool.prewarm=2", "pool.standby_per_signature=2"] })
  const gaps: Array<number> = []
  try {
    for (let i = 0; i < requests; i++) {
      await standbyReady(gateway.url)
      await new Promise<void>((resolve, reject) => {
        const request = http.request(`${gateway.url}/v1/chat/completions`, { method: "POST", agent, headers: { "content-type": "application/json" } }, (response) => {
          response.setEncoding("utf8")
          response.on("data", (chunk: string) => {
            const received = process.hrtime.bigint()
            for (const match of chunk.matchAll(/t=(\d+);/g)) gaps.push(Number(received - BigInt(match[1]!)) / 1e6)
          })
          response.on("end", resolve)
          response.on("error", reject)
        })
        request.on("error", reject)
        request.end(chatBody(`delta ${i}`, true))
      })
    }
  } finally {
    await gateway.stop()
  }
  return {
    what: "ms from the CLI writing a text delta (stub, monotonic clock) to the client receiving its SSE chunk",
    ...summary(gaps),
    target: "p50 <= 3"
  }
}

// ---------------------------------------------------------------------------- 4. RSS

const rssOf = (pid: number) => {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024
}

const rss = async () => {
  const gateway = await startGateway({
    command: SH_STUB,
    set: ["pool.prewarm=16", "pool.standby_per_signature=16", "pool.max_standby=16", "claude.max_concurrent_sessions=32"]
  })
  try {
    await standbyReady(gateway.url, 16)
    await load(`${gateway.url}/v1/chat/completions`, chatBody("rss", true), 8, 100)
    await sleep(500)
    const after100 = rssOf(gateway.pid)
    await load(`${gateway.url}/v1/chat/completions`, chatBody("rss", true), 8, 900)
    await sleep(500)
    const after1k = rssOf(gateway.pid)
    await load(`${gateway.url}/v1/chat/completions`, chatBody("rss", true), 8, 9_000)
    await sleep(500)
    const after10k = rssOf(gateway.pid)
    return {
      what: "gateway process RSS (MiB) with a STUB CLI, streaming requests at concurrency 8",
      after_100: round(after100),
      after_1000: round(after1k),
      after_10000: round(after10k),
      growth_percent: round((after10k / after100 - 1) * 100),
      growth_after_warmup_percent: round((after10k / after1k - 1) * 100),
      target: "growth < 10%"
    }
  } finally {
    await gateway.stop()
  }
}

// ---------------------------------------------------------------------------- 5. new conversations

/**
 * The floor for a new conversation on a reused process: one CLI driven directly, and for each
 * conversation the pool's reset (/clear, rewind onto the new session's first row), set_model, the turn.
 */
const directNewConversations = async (upstream: Upstream, conversations: number) => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-bench-direct-"))
  const workspace = path.join(home, "workspace")
  fs.mkdirSync(workspace)
  const config = Either.getOrThrow(decodeConfig({}))
  const child = spawn(CLAUDE, cliArgs(config, { model: "sonnet", systemPrompt: undefined }), {
    cwd: workspace,
    env: { ...cliEnv(home, upstream.url), CLAUDE_CODE_MAX_RETRIES: "2" },
    stdio: ["pipe", "pipe", "ignore"]
  })
  let buffer = ""
  let waiter: ((line: string) => void) | undefined
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk
    for (let i = buffer.indexOf("\n"); i >= 0; i = buffer.indexOf("\n")) {
      const line = buffer.slice(0, i)
      buffer = buffer.slice(i + 1)
      waiter?.(line)
    }
  })
  const until = (match: (line: string) => boolean) =>
    new Promise<string>((resolve) => {
      waiter = (line) => {
        if (match(line)) resolve(line)
      }
    })
  let id = 0
  const control = async (request: Record<string, unknown>) => {
    const requestId = `r${++id}`
    const done = until((line) => line.includes(`"request_id":"${requestId}"`) && line.includes("control_response"))
    child.stdin!.write(JSON.stringify({ type: "control_request", request_id: requestId, request }) + "\n")
    return done
  }
  const userLine = async (text: string, uuid: string, typed: boolean) => {
    const done = until((line) => line.includes(`"type":"result"`))
    child.stdin!.write(JSON.stringify({ type: "user", uuid, session_id: "", message: { role: "user", content: [{ type: "text", text }] }, parent_tool_use_id: null, ...(typed ? {} : { text_not_typed: true }) }) + "\n")
    return JSON.parse(await done) as { session_id: string }
  }
  const firstRow = (session: string) => {
    const projects = path.join(home, ".claude", "projects")
    for (const dir of fs.readdirSync(projects)) {
      const file = path.join(projects, dir, `${session}.jsonl`)
      if (!fs.existsSync(file)) continue
      for (const line of fs.readFileSync(file, "utf8").split("\n")) {
        if (line.includes('"type":"user"')) return (JSON.parse(line) as { uuid: string }).uuid
      }
    }
    throw new Error(`no transcript for ${session}`)
  }
  await control({ subtype: "initialize", systemPromptSnapshot: false })
  await userLine("warm up", crypto.randomUUID(), false)
  const times: Array<number> = []
  for (let i = 0; i < conversations; i++) {
    const started = now()
    const clear = crypto.randomUUID()
    const { session_id } = await userLine("/clear", clear, true)
    await control({ subtype: "rewind_conversation", target_message_uuid: firstRow(session_id), last_seen_user_message_uuid: clear })
    await control({ subtype: "set_model", model: "sonnet" })
    await userLine(`direct new ${i}`, crypto.randomUUID(), false)
    times.push(now() - started)
  }
  await stopChild(child)
  fs.rmSync(home, { recursive: true, force: true })
  return times
}

interface PoolCounts {
  readonly pool: { readonly spawned: number; readonly reused: number; readonly hits: number; readonly misses: number }
}
const poolCounts = async (url: string) => ((await (await fetch(`${url}/health`)).json()) as PoolCounts).pool

/** Back-to-back requests that each start a new conversation; CLI boots counted by the pool. */
const sequentialNew = async (url: string, label: string, warmup: number, measured: number) => {
  for (let i = 0; i < warmup; i++) {
    const r = await post(`${url}/v1/chat/completions`, chatBody(`${label} warm-up ${i}`, false))
    if (r.status !== 200) throw new Error(`${label} request failed: ${r.status} ${r.text}`)
  }
  const before = await poolCounts(url)
  const times: Array<number> = []
  for (let i = 0; i < measured; i++) {
    const r = await post(`${url}/v1/chat/completions`, chatBody(`${label} ${i}`, false))
    if (r.status !== 200) throw new Error(`${label} request failed: ${r.status} ${r.text}`)
    times.push(r.ms)
  }
  const after = await poolCounts(url)
  return {
    latency_ms: summary(times),
    boots_per_100: round(((after.spawned - before.spawned) * 100) / measured),
    reused: after.reused - before.reused
  }
}

const newConversations = async (measured = 100, offMeasured = 20) => {
  const upstream = await startUpstream()
  try {
    const direct = summary(await directNewConversations(upstream, 30))
    console.error("direct", JSON.stringify(direct))
    const run = async (label: string, set: ReadonlyArray<string>, count: number) => {
      const gateway = await startGateway({ command: CLAUDE, upstream: upstream.url, set })
      try {
        if (!set.includes("pool.enabled=false")) await standbyReady(gateway.url)
        const result = await sequentialNew(gateway.url, label, 10, count)
        console.error(label, JSON.stringify(result))
        return result
      } finally {
        await gateway.stop()
      }
    }
    // max_live=0: each conversation's process is released with its response (a one-shot client).
    const oneShot = await run("reuse", [], measured)
    // The default live set (8): each new conversation evicts the least recently used one's process.
    const liveSet = await run("live8", ["conversation.max_live=8"], measured)
    const noReuse = await run("noreuse", ["pool.reuse=false"], offMeasured)
    const off = await run("off", ["pool.enabled=false"], offMeasured)
    return {
      what: "sequential back-to-back new conversations (one user message each, non-stream), real CLI + scripted upstream, ms",
      direct_floor_reset_set_model_turn: direct,
      gateway_pool_reuse_max_live_0: oneShot,
      gateway_pool_reuse_max_live_8: liveSet,
      gateway_pool_no_reuse: noReuse,
      gateway_pool_off: off,
      reuse_over_pool_off_p50: round(oneShot.latency_ms.p50 / off.latency_ms.p50),
      reuse_over_direct_floor_p50: round(oneShot.latency_ms.p50 / direct.p50),
      live8_over_pool_off_p50: round(liveSet.latency_ms.p50 / off.latency_ms.p50),
      targets: { reuse_over_pool_off_p50: "<= 0.2", reuse_over_direct_floor_p50: "<= 1.5", boots_per_100: "<= 3" }
    }
  } finally {
    await upstream.close()
  }
}

/** `clients` workers each sending new one-turn conversations back to back for `seconds`. */
const concurrentNew = async (url: string, label: string, clients: number, seconds: number) => {
  const until = now() + seconds * 1000
  const times: Array<number> = []
  let failures = 0
  const before = await poolCounts(url)
  const started = now()
  await Promise.all(Array.from({ length: clients }, async (_, worker) => {
    for (let i = 0; now() < until; i++) {
      const r = await post(`${url}/v1/chat/completions`, chatBody(`${label} ${worker}-${i}`, false))
      if (r.status === 200) times.push(r.ms)
      else failures++
    }
  }))
  const elapsed = (now() - started) / 1000
  const after = await poolCounts(url)
  return {
    conversations_per_s: round(times.length / elapsed),
    latency_ms: summary(times),
    failures,
    boots: after.spawned - before.spawned,
    reused: after.reused - before.reused
  }
}

/** 8 concurrent clients, each sending new one-turn conversations for 30 s: pool (with reuse) vs pool off. */
const concurrentNewConversations = async (clients = 8, seconds = 30) => {
  const upstream = await startUpstream()
  try {
    const run = async (label: string, set: ReadonlyArray<string>) => {
      const gateway = await startGateway({ command: CLAUDE, upstream: upstream.url, set: [`claude.max_concurrent_sessions=${clients}`, ...set] })
      try {
        if (!set.includes("pool.enabled=false")) {
          await standbyReady(gateway.url)
          await concurrentNew(gateway.url, `${label} warm-up`, clients, 5)
        }
        const result = await concurrentNew(gateway.url, label, clients, seconds)
        console.error(label, JSON.stringify(result))
        return result
      } finally {
        await gateway.stop()
      }
    }
    // pool.prewarm is a floor of *ready* processes kept besides the leased ones: prewarm=8 here booted a process for
    // most takes (measured: 22 boots per 96 conversations). The default floor (1) with room for 8 ready processes
    // lets the 8 clients' own processes cycle (reset, then taken again).
    const pooled = await run("pool", [`pool.max_standby=${clients}`])
    const off = await run("off", ["pool.enabled=false"])
    return {
      what: `${clients} concurrent clients, each sending new one-turn conversations back to back for ${seconds} s (non-stream), real CLI + scripted upstream`,
      gateway_pool_reuse: pooled,
      gateway_pool_off: off,
      throughput_over_pool_off: round(pooled.conversations_per_s / off.conversations_per_s),
      target: "throughput >= 4x pool off"
    }
  } finally {
    await upstream.close()
  }
}

const cliPids = (gatewayPid: number) =>
  fs.readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/status`, "utf8").includes(`PPid:\t${gatewayPid}\n`)
    } catch {
      return false
    }
  })

/** Each CLI's RSS over 1 000 new conversations served by reused processes (sequential, real CLI). */
const cliRssOverReuse = async (conversations = 1000) => {
  const upstream = await startUpstream()
  const gateway = await startGateway({ command: CLAUDE, upstream: upstream.url, set: [] })
  try {
    await standbyReady(gateway.url)
    const samples: Array<{ readonly after: number; readonly max_cli_rss_mb: number; readonly clis: number }> = []
    let peak = 0
    for (let i = 1; i <= conversations; i++) {
      const r = await post(`${gateway.url}/v1/chat/completions`, chatBody(`rss reuse ${i}`, false))
      if (r.status !== 200) throw new Error(`request failed: ${r.status} ${r.text}`)
      if (i % 50 === 0 || i === 1) {
        const rss = cliPids(gateway.pid).map(rssOf).filter((mb) => !Number.isNaN(mb))
        const max = Math.max(0, ...rss)
        peak = Math.max(peak, max)
        samples.push({ after: i, max_cli_rss_mb: round(max), clis: rss.length })
      }
    }
    const counts = await (await fetch(`${gateway.url}/health`)).json() as { pool: { spawned: number; reused: number; retired: number } }
    return {
      what: `each CLI's RSS (MiB) over ${conversations} sequential new conversations on reused processes (defaults: pool.max_uses, pool.max_rss_mb)`,
      samples,
      peak_cli_rss_mb: round(peak),
      spawned: counts.pool.spawned,
      reused: counts.pool.reused,
      retired: counts.pool.retired,
      target: "every CLI under pool.max_rss_mb (default 600)"
    }
  } finally {
    await gateway.stop()
    await upstream.close()
  }
}

// ---------------------------------------------------------------------------- 6. RPC vs OpenAI

/**
 * A later turn of a conversation (on its live CLI) through the typed RPC client, over HTTP and
 * over WebSocket, vs through the official openai client (streamed, read to the end): one gateway,
 * the three interleaved turn by turn so that they share the machine's noise. 200 turns a series by
 * default: the median of 40 moved by ±1–2 ms between runs (the CLI's own time varies by ±5 ms).
 */
const rpcVsOpenai = async (turns = Number(process.env.RPC_TURNS ?? 200)) => {
  const upstream = await startUpstream()
  const gateway = await startGateway({ command: CLAUDE, upstream: upstream.url, set: ["conversation.max_live=8"] })
  const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: "unused", maxRetries: 0 })
  const viaHttp = ManagedRuntime.make(GatewayClient.layer({ url: gateway.url }))
  const viaWebsocket = ManagedRuntime.make(GatewayClient.layer({ url: gateway.url, transport: "websocket" }))
  // RPC_OLD_CLIENT=<another build's build/src/client.js>: that client too, in the same run (before/after a client change).
  const oldClient = process.env.RPC_OLD_CLIENT === undefined
    ? undefined
    : (await import(path.resolve(process.env.RPC_OLD_CLIENT)) as { GatewayClient: typeof GatewayClient }).GatewayClient
  const oldViaHttp = oldClient && ManagedRuntime.make(oldClient.layer({ url: gateway.url }))
  const oldViaWebsocket = oldClient && ManagedRuntime.make(oldClient.layer({ url: gateway.url, transport: "websocket" }))
  try {
    const openaiTurn = async (conversationId: string | undefined, content: string) => {
      const body: ChatCompletionCreateParamsStreaming & { conversation_id?: string } = {
        model: "sonnet",
        stream: true,
        messages: [{ role: "user", content }],
        ...(conversationId === undefined ? {} : { conversation_id: conversationId })
      }
      const { data, response } = await openai.chat.completions.create(body).withResponse()
      for await (const _chunk of data) {
        // read to the end
      }
      return response.headers.get("x-conversation-id") ?? ""
    }
    const rpcTurn = (runtime: typeof viaHttp, conversationId: string | undefined, input: string, tag = GatewayClient) =>
      runtime.runPromise(Effect.gen(function*() {
        const client = yield* tag
        let id = ""
        yield* Stream.runForEach(client.Chat({ model: "sonnet", conversationId, input }), (event) =>
          Effect.sync(() => {
            if (event._tag === "Accepted") id = event.conversationId
          }))
        return id
      }))
    type Series = { readonly open: (input: string) => Promise<string>; readonly next: (id: string, input: string) => Promise<string> }
    const series: Record<string, Series> = {
      openai_http_sse: { open: (input: string) => openaiTurn(undefined, input), next: openaiTurn },
      rpc_http_ndjson: { open: (input: string) => rpcTurn(viaHttp, undefined, input), next: (id: string, input: string) => rpcTurn(viaHttp, id, input) },
      rpc_websocket: {
        open: (input: string) => rpcTurn(viaWebsocket, undefined, input),
        next: (id: string, input: string) => rpcTurn(viaWebsocket, id, input)
      },
      ...(oldClient === undefined || oldViaHttp === undefined || oldViaWebsocket === undefined ? {} : {
        old_rpc_http_ndjson: {
          open: (input: string) => rpcTurn(oldViaHttp, undefined, input, oldClient),
          next: (id: string, input: string) => rpcTurn(oldViaHttp, id, input, oldClient)
        },
        old_rpc_websocket: {
          open: (input: string) => rpcTurn(oldViaWebsocket, undefined, input, oldClient),
          next: (id: string, input: string) => rpcTurn(oldViaWebsocket, id, input, oldClient)
        }
      })
    }
    const names = Object.keys(series)
    const ids = new Map<string, string>()
    for (const name of names) {
      ids.set(name, await series[name]!.open(`open ${name}`))
      await standbyReady(gateway.url, 1, ids.size) // kept CLIs count as leased; the replacement standby boots off the request path
    }
    const times = new Map<string, Array<number>>(names.map((name) => [name, []]))
    for (let i = 0; i < turns; i++) {
      // Rotate who goes first: none always follows the same neighbour.
      for (const name of names.map((_, k) => names[(k + i) % names.length]!)) {
        const started = now()
        await series[name]!.next(ids.get(name)!, `next ${i}`)
        times.get(name)!.push(now() - started)
      }
    }
    const result = Object.fromEntries(names.map((name) => [name, summary(times.get(name)!)]))
    const p50 = (name: string) => summary(times.get(name)!).p50
    // The median of the rounds' own ratios: each round's turns ran side by side, under the same load.
    const paired = (name: string) => {
      const base = times.get("openai_http_sse")!
      return round(quantile(times.get(name)!.map((ms, i) => ms / base[i]!), 0.5))
    }
    return {
      what: "later turns of a conversation on its live CLI (real CLI + scripted upstream), full turn in ms, interleaved",
      ...result,
      rpc_http_over_openai_p50: round(p50("rpc_http_ndjson") / p50("openai_http_sse")),
      rpc_websocket_over_openai_p50: round(p50("rpc_websocket") / p50("openai_http_sse")),
      rpc_http_over_openai_paired: paired("rpc_http_ndjson"),
      rpc_websocket_over_openai_paired: paired("rpc_websocket"),
      ...(oldClient === undefined ? {} : {
        old_rpc_http_over_openai_p50: round(p50("old_rpc_http_ndjson") / p50("openai_http_sse")),
        old_rpc_websocket_over_openai_p50: round(p50("old_rpc_websocket") / p50("openai_http_sse")),
        old_rpc_http_over_openai_paired: paired("old_rpc_http_ndjson"),
        old_rpc_websocket_over_openai_paired: paired("old_rpc_websocket")
      }),
      target: "RPC p50 no slower than openai (ratio <= 1)"
    }
  } finally {
    await viaHttp.dispose()
    await viaWebsocket.dispose()
    await oldViaHttp?.dispose()
    await oldViaWebsocket?.dispose()
    await gateway.stop()
    await upstream.close()
  }
}

// ---------------------------------------------------------------------------- main

const telemetry = () => telemetryOverhead({ startGateway, post, stubCli: SH_STUB })

const all = {
  latency,
  laterturns: laterTurns,
  overhead,
  delta: deltaLatency,
  rss,
  newconv: newConversations,
  concurrent: concurrentNewConversations,
  clirss: cliRssOverReuse,
  rpc: rpcVsOpenai,
  cache: cacheBench,
  telemetry
} as const
const chosen = process.argv.slice(2).filter((name): name is keyof typeof all => name in all)
const out: Record<string, unknown> = { node: process.version, cpus: os.cpus().length }
for (const name of chosen.length > 0 ? chosen : (Object.keys(all) as Array<keyof typeof all>)) {
  out[name] = await all[name]()
}
console.log(JSON.stringify(out, null, 2))
agent.destroy()
