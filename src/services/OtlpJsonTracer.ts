import * as OtlpResource from "@effect/opentelemetry/OtlpResource"
import { Cause, type Context, Effect, type Exit, Inspectable, type Option, Runtime, Tracer } from "effect"
import { randomFillSync } from "node:crypto"
import * as http from "node:http"
import * as https from "node:https"

/**
 * An Effect `Tracer` that exports spans over OTLP/HTTP as JSON, in place of @effect/opentelemetry's
 * OtlpTracer (same wire format and span tree; test/unit/OtlpJsonTracer.test.ts compares the two).
 * Each span is written as OTLP/JSON into the batch buffer the moment it ends: OtlpTracer kept a Map
 * per span, then an OTLP object tree per span (~25 objects) until the batch was serialized, and
 * made its ids from 48 `Math.random()` calls. Measured: the spans of a later turn, in process
 * (`npx vite-node bench/tracer-micro.ts`, process CPU with GC, six runs), cost over Effect's built-in
 * tracer +53 to +85 µs per request with OtlpTracer, +13 to +22 µs with this; whole gateway, streamed
 * later turns with tracing (`bench/turncpu.mjs`, old and new build at once, four pairs): 0.2–5.6 %
 * less CPU per turn, ~10 fewer run-loop steps.
 */

/** Ids from a pooled random buffer: one native hex slice per id. */
const POOL = Buffer.alloc(4096)
let poolAt = POOL.length
const randomHex = (bytes: number): string => {
  if (poolAt + bytes > POOL.length) {
    randomFillSync(POOL)
    poolAt = 0
  }
  const id = POOL.toString("hex", poolAt, poolAt + bytes)
  poolAt += bytes
  return id
}

/** An OTLP/JSON AnyValue (what OtlpResource.unknownToAttributeValue makes, as text). */
const anyValue = (value: unknown): string => {
  switch (typeof value) {
    case "string":
      return `{"stringValue":${JSON.stringify(value)}}`
    case "number":
      if (Number.isInteger(value)) return `{"intValue":${value}}`
      // Proto3 JSON spells the non-finite doubles as strings.
      return Number.isFinite(value) ? `{"doubleValue":${value}}` : `{"doubleValue":"${value}"}`
    case "boolean":
      return `{"boolValue":${value}}`
    case "bigint":
      return `{"intValue":"${value}"}`
    default:
      return Array.isArray(value)
        ? `{"arrayValue":{"values":[${value.map(anyValue).join(",")}]}}`
        : `{"stringValue":${JSON.stringify(Inspectable.toStringUnknown(value))}}`
  }
}

const keyValue = (key: string, value: unknown) => `{"key":${JSON.stringify(key)},"value":${anyValue(value)}}`
const keyValues = (record: Readonly<Record<string, unknown>>) =>
  Object.entries(record).map(([key, value]) => keyValue(key, value)).join(",")

const KIND: Record<Tracer.SpanKind, number> = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 }

/** Status and extra events of an ended span, as OtlpTracer reports them (an error adds an `exception` event). */
const statusOf = (exit: Exit.Exit<unknown, unknown>, endTime: bigint): { status: string; event: string; attributes: string } => {
  if (exit._tag === "Success") return { status: `{"code":1}`, event: "", attributes: "" }
  if (Cause.isInterruptedOnly(exit.cause)) {
    return { status: `{"code":1,"message":${JSON.stringify(Cause.pretty(exit.cause))}}`, event: "", attributes: "" }
  }
  const first = Cause.prettyErrors(exit.cause)[0]
  const attributes = Cause.isInterrupted(exit.cause) ? `,${keyValue("status.interrupted", true)}` : ""
  if (first === undefined) return { status: `{"code":2}`, event: "", attributes }
  const event = `{"name":"exception","timeUnixNano":"${endTime}","attributes":[${
    keyValue("exception.type", first.name)
  },${keyValue("exception.message", first.message)},${
    keyValue("exception.stacktrace", Cause.pretty(exit.cause, { renderErrorCause: true }))
  }],"droppedAttributesCount":0}`
  return { status: `{"code":2,"message":${JSON.stringify(first.message)}}`, event, attributes }
}

class JsonSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly spanId: string
  readonly traceId: string
  status: Tracer.SpanStatus
  /** Keys and values alternating: no Map per span. */
  private attrs: Array<unknown> = []
  private events: Array<string> | undefined
  links: Array<Tracer.SpanLink>

  constructor(
    private readonly sink: (json: string) => void,
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Context.Context<never>,
    links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind,
    readonly sampled: boolean
  ) {
    this.traceId = parent._tag === "Some" ? parent.value.traceId : randomHex(16)
    this.spanId = randomHex(8)
    this.status = { _tag: "Started", startTime }
    this.links = links.length === 0 ? [] : [...links]
  }

  get attributes(): ReadonlyMap<string, unknown> {
    const map = new Map<string, unknown>()
    for (let i = 0; i < this.attrs.length; i += 2) map.set(this.attrs[i] as string, this.attrs[i + 1])
    return map
  }

  attribute(key: string, value: unknown): void {
    if (!this.sampled) return
    const attrs = this.attrs
    for (let i = 0; i < attrs.length; i += 2) {
      if (attrs[i] === key) {
        attrs[i + 1] = value
        return
      }
    }
    attrs.push(key, value)
  }

  event(name: string, startTime: bigint, attributes?: Record<string, unknown>): void {
    if (!this.sampled) return
    ;(this.events ??= []).push(
      `{"name":${JSON.stringify(name)},"timeUnixNano":"${startTime}","attributes":[${
        attributes === undefined ? "" : keyValues(attributes)
      }],"droppedAttributesCount":0}`
    )
  }

  addLinks(links: ReadonlyArray<Tracer.SpanLink>): void {
    this.links.push(...links)
  }

  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    const startTime = this.status.startTime
    this.status = { _tag: "Ended", startTime, endTime, exit }
    if (this.sampled) this.sink(this.toJson(startTime, endTime, exit))
  }

  private toJson(startTime: bigint, endTime: bigint, exit: Exit.Exit<unknown, unknown>): string {
    const { attributes: extra, event, status } = statusOf(exit, endTime)
    let attributes = ""
    for (let i = 0; i < this.attrs.length; i += 2) {
      attributes += `${i === 0 ? "" : ","}${keyValue(this.attrs[i] as string, this.attrs[i + 1])}`
    }
    if (extra !== "") attributes = attributes === "" ? extra.slice(1) : attributes + extra
    const events = this.events === undefined ? event : event === "" ? this.events.join(",") : `${this.events.join(",")},${event}`
    const links = this.links.map((link) =>
      `{"traceId":"${link.span.traceId}","spanId":"${link.span.spanId}","attributes":[${
        keyValues(link.attributes)
      }],"droppedAttributesCount":0}`
    ).join(",")
    const parent = this.parent._tag === "Some" ? `"parentSpanId":"${this.parent.value.spanId}",` : ""
    return `{"traceId":"${this.traceId}","spanId":"${this.spanId}",${parent}"name":${
      JSON.stringify(this.name)
    },"kind":${KIND[this.kind]},"startTimeUnixNano":"${startTime}","endTimeUnixNano":"${endTime}","attributes":[${attributes}],"droppedAttributesCount":0,"events":[${events}],"droppedEventsCount":0,"status":${status},"links":[${links}],"droppedLinksCount":0}`
  }
}

export interface OtlpJsonTracerOptions {
  /** The full URL spans are posted to (…/v1/traces). */
  readonly url: string
  readonly serviceName: string
  readonly exportIntervalMs: number
  /** Share of new traces exported (parent-based: a span with a parent follows its sampled flag). Default 1. */
  readonly sampleRatio?: number
  /** A batch this large is posted at once, without waiting for the interval. */
  readonly maxBatchSize?: number
  /** How long the flush at shutdown may take. */
  readonly shutdownTimeoutMs?: number
}

/** After a batch failed (with its retries), spans are dropped for this long (as OtlpTracer does). */
const PAUSE_MS = 60_000
const RETRIES = 3
const RETRY_DELAY_MS = 1_000

/**
 * The tracer, and the exporter behind it: ended spans' JSON joined in one buffer, posted
 * every `exportIntervalMs` (and when `maxBatchSize` spans are waiting, and at the end of the scope)
 * with plain node:http, outside the Effect run loop.
 */
export const make = (options: OtlpJsonTracerOptions) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const resource = yield* OtlpResource.fromConfig({ serviceName: options.serviceName })
    const scopeName = OtlpResource.unsafeServiceName(resource)
    const head = `{"resourceSpans":[{"resource":${JSON.stringify(resource)},"scopeSpans":[{"scope":{"name":${
      JSON.stringify(scopeName)
    }},"spans":[`
    const tail = "]}]}]}"
    const maxBatchSize = options.maxBatchSize ?? 1000
    const url = new URL(options.url)
    const client = url.protocol === "https:" ? https : http
    const agent = new client.Agent({ keepAlive: true })

    // Ended spans' JSON is written into this buffer (off the JS heap) at once: no span outlives its
    // end as objects or strings until the post, which would make the GC copy and promote them.
    let batch = Buffer.allocUnsafe(256 * 1024)
    let used = 0
    let count = 0
    let pausedUntil = 0
    let closed = false
    const inFlight = new Set<Promise<void>>()
    const HEAD = Buffer.from(head)
    const TAIL = Buffer.from(tail)

    const send = (body: Buffer): Promise<boolean> =>
      new Promise((resolve) => {
        const request = client.request(url, {
          method: "POST",
          agent,
          headers: {
            "content-type": "application/json",
            "content-length": body.length,
            "user-agent": "claude-code-api-otlp/1"
          },
          timeout: 10_000
        }, (response) => {
          response.resume()
          response.once("end", () => resolve(response.statusCode !== undefined && response.statusCode < 300))
          response.once("error", () => resolve(false))
        })
        request.once("timeout", () => request.destroy(new Error("OTLP export timed out")))
        request.once("error", () => resolve(false))
        request.end(body)
      })

    const post = async (body: Buffer) => {
      for (let attempt = 0;; attempt++) {
        if (await send(body)) return
        if (attempt >= RETRIES || closed) break
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS).unref())
      }
      pausedUntil = Date.now() + PAUSE_MS
      Runtime.runFork(runtime)(Effect.logDebug(`OTLP export to ${options.url} failed; spans dropped for ${PAUSE_MS / 1000} s`))
    }

    const flush = () => {
      if (count === 0) return
      const body = Buffer.concat([HEAD, batch.subarray(0, used), TAIL])
      used = 0
      count = 0
      const posted = post(body)
      inFlight.add(posted)
      void posted.finally(() => inFlight.delete(posted))
    }

    const sink = (json: string) => {
      if (closed || (pausedUntil !== 0 && Date.now() < pausedUntil)) return
      // At most 3 bytes per UTF-16 unit, and a comma.
      const room = json.length * 3 + 1
      if (used + room > batch.length) {
        const grown = Buffer.allocUnsafe(Math.max(batch.length * 2, used + room))
        batch.copy(grown, 0, 0, used)
        batch = grown
      }
      if (count > 0) batch[used++] = 0x2c
      used += batch.write(json, used)
      if (++count >= maxBatchSize) flush()
    }

    const timer = setInterval(flush, options.exportIntervalMs)
    timer.unref()
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => {
        clearInterval(timer)
        flush()
        closed = true
        return Promise.all(inFlight)
      }).pipe(
        Effect.interruptible,
        Effect.timeoutOption(options.shutdownTimeoutMs ?? 3_000),
        Effect.ensuring(Effect.sync(() => agent.destroy()))
      )
    )

    const ratio = options.sampleRatio ?? 1
    return Tracer.make({
      span: (name, parent, context, links, startTime, kind) =>
        new JsonSpan(
          sink,
          name,
          parent,
          context,
          links,
          startTime,
          kind,
          parent._tag === "Some" ? parent.value.sampled : ratio >= 1 || Math.random() < ratio
        ),
      context: (f) => f()
    })
  })
