/**
 * The answer cache (`npm run bench -- cache`), printed as JSON:
 *  - a hit's latency, non-stream, on the stub setup (bench/stub-cli.sh: the gateway alone is measured);
 *  - hit vs miss on the real CLI against the scripted upstream (ratio of p50s, one run);
 *  - 64 concurrent identical requests on the real CLI: how many CLI turns they cost (upstream requests).
 * The gateway runs as a child process (`node build/src/bin.js`, bench/support.ts startGateway), as in bench/run.ts.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import { startUpstream } from "../test/support/upstream.js"
import { CLAUDE, round, SH_STUB, sleep, startGateway, summary } from "./support.js"

/** User + system CPU time of a process so far, in ms (Linux /proc). */
const cpuMs = (pid: number) => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  // utime and stime are fields 14 and 15 of stat; here counted from field 3 (state) on.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}

interface Health {
  readonly pool: { readonly leased: number; readonly signatures: ReadonlyArray<{ readonly standby: number }> }
}
const standbyReady = async (url: string) => {
  for (;;) {
    const h = await (await fetch(`${url}/health`)).json() as Health
    if (h.pool.leased === 0 && h.pool.signatures.reduce((n, s) => n + s.standby, 0) >= 1) return
    await sleep(20)
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })

/** POST a non-stream chat request; the latency to the end of the body and the x-cache header. */
const ask = (url: string, content: string) =>
  new Promise<{ readonly ms: number; readonly status: number; readonly cache: string }>((resolve, reject) => {
    const started = performance.now()
    const body = JSON.stringify({ model: "sonnet", messages: [{ role: "user", content }] })
    const request = http.request(`${url}/v1/chat/completions`, { method: "POST", agent, headers: { "content-type": "application/json" } }, (response) => {
      response.resume()
      response.on("end", () =>
        resolve({ ms: performance.now() - started, status: response.statusCode ?? 0, cache: String(response.headers["x-cache"]) }))
      response.on("error", reject)
    })
    request.on("error", reject)
    request.end(body)
  })

/** GET, latency to the end of the body. */
const get = (url: string) =>
  new Promise<number>((resolve, reject) => {
    const started = performance.now()
    http.get(url, { agent }, (response) => {
      response.resume()
      response.on("end", () => resolve(performance.now() - started))
      response.on("error", reject)
    }).on("error", reject)
  })

const expectCache = (result: { readonly status: number; readonly cache: string }, cache: string) => {
  if (result.status !== 200 || result.cache !== cache) throw new Error(`expected a 200 ${cache}, got ${result.status} ${result.cache}`)
}

/** Hit latency on the stub setup: the gateway's own cost of a cached answer. */
const stubHits = async (requests: number) => {
  const gateway = await startGateway({ command: SH_STUB, set: ["cache.enabled=true"] })
  try {
    expectCache(await ask(gateway.url, "bench cached"), "miss")
    for (let i = 0; i < 50; i++) expectCache(await ask(gateway.url, "bench cached"), "hit") // warm-up (JIT)
    const hits: Array<number> = []
    const cpuBefore = cpuMs(gateway.pid)
    for (let i = 0; i < requests; i++) {
      const result = await ask(gateway.url, "bench cached")
      expectCache(result, "hit")
      hits.push(result.ms)
    }
    // CPU time of the gateway per hit: less sensitive than latency to other load on the machine.
    const cpuPerHit = round((cpuMs(gateway.pid) - cpuBefore) / requests)
    // The floor in the same run: GET /v1/models (same server, middleware and keep-alive connection, no turn).
    const floor: Array<number> = []
    for (let i = 0; i < requests; i++) floor.push(await get(`${gateway.url}/v1/models`))
    const hit = summary(hits)
    const models = summary(floor)
    return { hit, models_floor: models, hit_minus_floor_p50_ms: round(hit.p50 - models.p50), gateway_cpu_ms_per_hit: cpuPerHit }
  } finally {
    await gateway.stop()
  }
}

/** Hit vs miss on the real CLI; then 64 identical requests at once. */
const realCli = async (prompts: number) => {
  const upstream = await startUpstream()
  const gateway = await startGateway({ command: CLAUDE, upstream: upstream.url, set: ["cache.enabled=true", "claude.max_retries=0"] })
  try {
    await standbyReady(gateway.url)
    expectCache(await ask(gateway.url, "warm-up"), "miss")
    const misses: Array<number> = []
    const hits: Array<number> = []
    for (let i = 0; i < prompts; i++) {
      await standbyReady(gateway.url)
      const miss = await ask(gateway.url, `bench prompt ${i}`)
      expectCache(miss, "miss")
      misses.push(miss.ms)
    }
    // Hits once the pool is idle again (a released CLI's reset would compete for the CPU).
    await standbyReady(gateway.url)
    await sleep(1000)
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < prompts; i++) {
        const hit = await ask(gateway.url, `bench prompt ${i}`)
        expectCache(hit, "hit")
        hits.push(hit.ms)
      }
    }
    // 64 at once: a slow answer (1 s), so that all of them arrive while its one turn runs.
    upstream.on("BENCH-FLIGHT", { kind: "message", blocks: [{ type: "text", text: "shared answer" }], delayMs: 1000 })
    await standbyReady(gateway.url)
    const started = performance.now()
    const all = await Promise.all(Array.from({ length: 64 }, () => ask(gateway.url, "BENCH-FLIGHT once")))
    const wall = performance.now() - started
    const statuses = all.reduce<Record<string, number>>((n, r) => ({ ...n, [`${r.status} ${r.cache}`]: (n[`${r.status} ${r.cache}`] ?? 0) + 1 }), {})
    const miss = summary(misses)
    const hit = summary(hits)
    return {
      miss_ms: miss,
      hit_ms: hit,
      miss_over_hit_p50: round(miss.p50 / hit.p50),
      concurrent_64: { cli_turns: upstream.requestsFor("BENCH-FLIGHT").length, responses: statuses, wall_ms: round(wall) }
    }
  } finally {
    await gateway.stop()
    await upstream.close()
  }
}

export const cacheBench = async (stubRequests = 500, prompts = 10) => {
  const stub = await stubHits(stubRequests)
  const real = await realCli(prompts)
  return {
    what: "answer cache (cache.enabled=true): non-stream hits on the STUB CLI setup; hit vs miss and 64 identical concurrent requests on the real CLI + scripted upstream",
    stub_hit_ms: stub,
    real_cli: real,
    targets: { stub_hit_p50_ms: "<= 2", miss_over_hit_p50: ">= 20", concurrent_64_cli_turns: "== 1" }
  }
}
