/**
 * The spans of one later turn (request, admission, CLI turn, store write, with the gateway's
 * attributes) made N times in one process under Effect's native tracer (what a gateway without
 * an OTLP endpoint uses), @effect/opentelemetry's OtlpTracer and the gateway's OtlpJsonTracer, both
 * posting to a collector in a child process. Process CPU (all threads: GC included) per request,
 * best of rounds, modes alternating. In-process: no HTTP server, no CLI; only the tracing.
 *   npx vite-node bench/tracer-micro.ts [requests per round = 20000] [rounds = 5]
 */
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import { NodeHttpClient } from "@effect/platform-node"
import { Duration, Effect, Exit, Layer, ManagedRuntime, Tracer } from "effect"
import { fork } from "node:child_process"
import * as OtlpJsonTracer from "../src/services/OtlpJsonTracer.js"

const requests = Number(process.argv[2] ?? 20_000)
const rounds = Number(process.argv[3] ?? 5)

// The collector: a child process that reads and drops every post.
const sinkSource = `
const http = require("node:http")
const server = http.createServer((q, s) => { q.resume(); q.on("end", () => s.writeHead(200).end("{}")) })
server.listen(0, "127.0.0.1", () => process.send(server.address().port))
`
const sink = fork("-e", [sinkSource], { execArgv: [] })
sink.unref()
const port = await new Promise<number>((resolve) => sink.once("message", (m) => resolve(m as number)))
const url = `http://127.0.0.1:${port}/v1/traces`

const external = Tracer.externalSpan({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7" })

/** One later turn's spans, as the gateway makes them. */
const request = (joined: boolean) =>
  Effect.gen(function*() {
    const root = yield* Effect.makeSpan("http.server POST", {
      kind: "server",
      ...(joined ? { parent: external } : {}),
      attributes: { "http.request.method": "POST", "http.route": "/v1/chat/completions", "url.path": "/v1/chat/completions" },
      captureStackTrace: false
    })
    yield* Effect.gen(function*() {
      yield* Effect.void.pipe(Effect.withSpan("gateway.admission", { attributes: { "gateway.sessions.requested": 1 }, captureStackTrace: false }))
      const turn = yield* Effect.makeSpan("gateway.cli.turn", { kind: "client", captureStackTrace: false })
      turn.attribute("gateway.model", "sonnet")
      turn.attribute("gateway.cli_session_id", "0b5e1c1e-6a3b-4a53-9d0e-6f1f0c4b7a11")
      turn.attribute("gateway.time_to_first_token_ms", 12.3)
      turn.attribute("gateway.cli_session_id", "0b5e1c1e-6a3b-4a53-9d0e-6f1f0c4b7a11")
      turn.attribute("gateway.finish_reason", "stop")
      turn.attribute("gen_ai.usage.input_tokens", 13)
      turn.attribute("gen_ai.usage.output_tokens", 6)
      turn.attribute("gateway.usage.cache_read_tokens", 200)
      turn.attribute("gateway.usage.cache_write_tokens", 30)
      turn.attribute("gateway.cost_usd", 0.00123)
      yield* Effect.void.pipe(
        Effect.withSpan("gateway.store.record_turn", { attributes: { "gateway.conversation_id": "conv_0123456789abcdef" }, captureStackTrace: false }),
        Effect.withParentSpan(turn)
      )
      turn.end(yield* Effect.clockWith((c) => c.currentTimeNanos), Exit.void)
    }).pipe(Effect.withParentSpan(root))
    root.attribute("http.response.status_code", 200)
    root.end(yield* Effect.clockWith((c) => c.currentTimeNanos), Exit.void)
  })

const modes: Record<string, Layer.Layer<never>> = {
  native: Layer.empty,
  OtlpTracer: OtlpTracer.layer({ url, resource: { serviceName: "bench" }, exportInterval: Duration.seconds(1) }).pipe(
    Layer.provide([OtlpSerialization.layerJson, NodeHttpClient.layer])
  ),
  OtlpJsonTracer: Layer.unwrapScoped(Effect.map(OtlpJsonTracer.make({ url, serviceName: "bench", exportIntervalMs: 1000 }), Layer.setTracer))
}

const runtimes = Object.fromEntries(Object.entries(modes).map(([name, layer]) => [name, ManagedRuntime.make(layer)]))
const best: Record<string, number> = {}
for (let round = -1; round < rounds; round++) {
  for (const [name, runtime] of Object.entries(runtimes)) {
    const before = process.cpuUsage()
    for (let i = 0; i < requests; i += 100) {
      // 100 at a time, then back to the event loop (the exporter's timer and sockets run).
      await runtime.runPromise(Effect.forEach(Array.from({ length: 100 }, (_, k) => k), (k) => request(k % 4 === 0), { discard: true }))
      await new Promise((resolve) => setImmediate(resolve))
    }
    // What the export of this round's spans costs is counted in it.
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const used = process.cpuUsage(before)
    const us = (used.user + used.system) / requests
    if (round >= 0) best[name] = Math.min(best[name] ?? Number.POSITIVE_INFINITY, us)
  }
}
for (const runtime of Object.values(runtimes)) await runtime.dispose()
sink.kill()
console.log(JSON.stringify({ requests, rounds, cpu_us_per_request_best: Object.fromEntries(Object.entries(best).map(([k, v]) => [k, Math.round(v * 10) / 10])) }))
