/**
 * Metrics and tracing off vs on: the gateway's own CPU time per request (user + system time of
 * the gateway process from /proc/<pid>/stat, not its CLI children), streaming later turns of
 * conversations on their live STUB CLIs (bench/stub-cli.sh: no spawn per request, so the figure is
 * the gateway's request path). Three gateways run side by side; rounds alternate between them so
 * that machine noise hits each alike. Linux only (/proc).
 *   npm run bench -- telemetry
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

/** What run.ts lends this benchmark (its gateway launcher and HTTP client). */
export interface BenchKit {
  readonly startGateway: (options: { readonly command: string; readonly set: ReadonlyArray<string>; readonly bin?: string }) => Promise<{
    readonly url: string
    readonly pid: number
    readonly stop: () => Promise<void>
  }>
  readonly post: (url: string, body: string) => Promise<{ readonly ms: number; readonly status: number; readonly text: string }>
  readonly stubCli: string
}

const TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100

/** CPU time (user + system) of one process, ms. */
const cpuMs = (pid: number, thread?: number) => {
  // With `thread`, one thread's time (the main thread's tid is the pid; the rest are V8's and libuv's helpers).
  const stat = fs.readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  // After "pid (comm) ": state is field 3, utime field 14, stime field 15.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS
}

const round = (n: number) => Math.round(n * 1000) / 1000
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN

/** An OTLP/HTTP receiver that only counts what it gets (its CPU is the benchmark's, not the gateway's). */
const startSink = async () => {
  let posts = 0
  let bytes = 0
  const spans: Record<string, number> = {}
  const server = http.createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => {
      bytes += chunk.length
      chunks.push(chunk)
    })
    request.on("end", () => {
      posts++
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
        resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string; status?: { code?: number } }> }> }>
      }
      for (const span of body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans))) {
        const name = `${span.name}${span.status?.code === 2 ? " (error)" : ""}`
        spans[name] = (spans[name] ?? 0) + 1
      }
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stats: () => ({ posts, bytes, spans }),
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}

export const telemetryOverhead = async (kit: BenchKit, options = { rounds: Number(process.env.BENCH_ROUNDS ?? 9), requests: Number(process.env.BENCH_REQUESTS ?? 600), concurrency: 8 }) => {
  const sink = await startSink()
  const common = ["conversation.max_live=64", "claude.max_concurrent_sessions=64", "queue.max_waiting=1024", "pool.max_processes=128"]
  const modes: Record<string, ReadonlyArray<string>> = {
    off: ["telemetry.metrics_enabled=false"],
    metrics: ["telemetry.metrics_enabled=true"],
    metrics_and_tracing: ["telemetry.metrics_enabled=true", `telemetry.otlp_endpoint=${sink.url}`, "telemetry.export_interval_ms=1000"],
    // BENCH_EXTRA_MODES='{"name":["key=value",…]}' adds modes to compare (OTLP_SINK in a value is the sink's URL).
    ...Object.fromEntries(Object.entries(JSON.parse(process.env.BENCH_EXTRA_MODES ?? "{}") as Record<string, Array<string>>)
      .map(([name, set]) => [name, set.map((s) => s.replace("OTLP_SINK", sink.url))]))
  }
  type Mode = string
  // BENCH_PARALLEL=1: the modes' loads run at the same time in each round (instead of one after another).
  const parallel = process.env.BENCH_PARALLEL === "1"
  const names = Object.keys(modes)
  const gateways = {} as Record<Mode, Awaited<ReturnType<BenchKit["startGateway"]>>>
  try {
    for (const mode of names) {
      // "bin=<path>" in a mode's settings runs another build's gateway (old vs new side by side).
      const bin = modes[mode]!.find((s) => s.startsWith("bin="))?.slice(4)
      const set = modes[mode]!.filter((s) => !s.startsWith("bin="))
      gateways[mode] = await kit.startGateway({ command: kit.stubCli, set: [...common, ...set], ...(bin === undefined ? {} : { bin }) })
    }
    // One conversation per worker, opened before measuring: later turns run on its live CLI.
    const bodies = {} as Record<Mode, Array<string>>
    for (const mode of names) {
      bodies[mode] = await Promise.all(Array.from({ length: options.concurrency }, async () => {
        const opened = await kit.post(`${gateways[mode].url}/v1/chat/completions`, JSON.stringify({ model: "sonnet", messages: [{ role: "user", content: "open" }] }))
        const id = (JSON.parse(opened.text) as { conversation_id: string }).conversation_id
        return JSON.stringify({ model: "sonnet", stream: true, conversation_id: id, messages: [{ role: "user", content: "next" }] })
      }))
    }
    const load = async (mode: Mode, total: number) => {
      let next = 0
      let failures = 0
      await Promise.all(bodies[mode].map(async (body) => {
        while (next++ < total) {
          const url = `${gateways[mode].url}/v1/chat/completions`
          // A kept-alive socket the server closed while idle (other modes' rounds) resets: sent again, once.
          const r = await kit.post(url, body).catch((error: { code?: string }) => error.code === "ECONNRESET" ? kit.post(url, body) : Promise.reject(error))
          if (r.status !== 200 || !r.text.endsWith("data: [DONE]\n\n")) failures++
        }
      }))
      return failures
    }
    // Warm-up, not measured: a gateway's CPU per request keeps falling for its first ~2 000 requests (the JIT); with
    // 100 the rounds drifted from 5 to 2 ms within a run and the drift, not telemetry, decided the ratios.
    await Promise.all(names.map((mode) => load(mode, Number(process.env.BENCH_WARMUP ?? 2000))))
    const perRequest: Record<Mode, Array<number>> = Object.fromEntries(names.map((mode) => [mode, []]))
    // The main thread's part (JavaScript, and the GC work it does itself); the rest is helper threads (GC, compiler).
    const mainThread: Record<Mode, Array<number>> = Object.fromEntries(names.map((mode) => [mode, []]))
    let failures = 0
      for (let r = 0; r < options.rounds; r++) {
      if (parallel) {
        // Every mode loaded at once: each round's figures share the machine's state exactly.
        const before = Object.fromEntries(names.map((mode) => [mode, cpuMs(gateways[mode].pid)]))
        const beforeMain = Object.fromEntries(names.map((mode) => [mode, cpuMs(gateways[mode].pid, gateways[mode].pid)]))
        for (const n of await Promise.all(names.map((mode) => load(mode, options.requests)))) failures += n
        await new Promise((resolve) => setTimeout(resolve, 1200))
        for (const mode of names) {
          perRequest[mode]!.push((cpuMs(gateways[mode].pid) - before[mode]!) / options.requests)
          mainThread[mode]!.push((cpuMs(gateways[mode].pid, gateways[mode].pid) - beforeMain[mode]!) / options.requests)
        }
        continue
      }
      // Rotate the order each round: no mode always runs first or last.
      for (const mode of names.map((_, i) => names[(i + r) % names.length]!)) {
        const before = cpuMs(gateways[mode].pid)
        const beforeMain = cpuMs(gateways[mode].pid, gateways[mode].pid)
        failures += await load(mode, options.requests)
        // Spans are batched: the export they cause is the requests' cost too. Every mode waits as long before
        // its CPU is read: the work V8 finishes after a burst (concurrent GC, compilation) is counted alike.
        await new Promise((resolve) => setTimeout(resolve, 1200))
        perRequest[mode]!.push((cpuMs(gateways[mode].pid) - before) / options.requests)
        mainThread[mode]!.push((cpuMs(gateways[mode].pid, gateways[mode].pid) - beforeMain) / options.requests)
      }
    }
    const p50 = (mode: Mode) => median(perRequest[mode]!)
    return {
      what: "gateway CPU ms per streaming request (later turns on live STUB CLIs), median over rounds",
      modes_in_parallel: parallel,
      rounds: options.rounds,
      requests_per_round: options.requests,
      concurrency: options.concurrency,
      cpu_ms_per_request: Object.fromEntries(names.map((mode) => [mode, round(p50(mode))])),
      per_round: Object.fromEntries(names.map((mode) => [mode, perRequest[mode]!.map(round)])),
      main_thread_per_round: Object.fromEntries(names.map((mode) => [mode, mainThread[mode]!.map(round)])),
      // By medians, and each round's ratio against the same round's "off" (neighbours in time share the machine's load).
      over_off: Object.fromEntries(names.filter((mode) => mode !== "off").map((mode) => [mode, {
        medians: round(p50(mode) / p50("off")),
        paired: round(median(perRequest[mode]!.map((x, i) => x / perRequest.off![i]!)))
      }])),
      otlp_received: sink.stats(),
      failures,
      target: "on / off <= 1.10"
    }
  } finally {
    for (const mode of names) await gateways[mode]?.stop()
    await sink.stop()
  }
}
