import * as http from "node:http"
import * as https from "node:https"
import { Headers } from "@effect/platform"
import { Rpc, RpcClient, RpcSchema } from "@effect/rpc"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import { Channel, Chunk, Effect, Either, Exit, FiberRef, Option, Schema, Scope, Stream } from "effect"

/**
 * The RPC client's HTTP transport (NDJSON, one streamed POST per call) over `node:http` with a
 * keep-alive agent and a plain line splitter. It replaces `RpcClient.layerProtocolHttp` over
 * `FetchHttpClient` (undici, web streams, a TextDecoder and a Channel per chunk): with it alone a
 * later turn cost the client 6.1–6.5 ms of CPU instead of 9.5–11.5 (bench/rpccpu.mjs, load ~4).
 * Client code only (no server imports).
 */

export interface NodeHttpProtocolOptions {
  /** The full URL of the gateway's `/rpc`. */
  readonly url: string
  readonly apiKey?: string | undefined
}

/** Responses waiting for the reader past this many: stop reading the socket until it catches up. */
const HIGH_WATER = 64
/** How much of a refused call's body to keep for the error. */
const MAX_ERROR_BODY = 4096

const protocolError = (message: string, cause?: unknown) =>
  new RpcClientError({ reason: "Protocol", message, ...(cause === undefined ? {} : { cause }) })

type Pull = Effect.Effect<ReadonlyArray<FromServerEncoded> | undefined, RpcClientError>

interface Call {
  readonly pull: Pull
  readonly abort: () => void
}

/** One call's request and its NDJSON response, pulled a batch of lines at a time. */
const startCall = (
  options: { readonly url: URL; readonly agent: http.Agent; readonly headers: http.OutgoingHttpHeaders },
  body: string
): Call => {
  let pending: Array<FromServerEncoded> = []
  let partial = ""
  let ended = false
  let failure: RpcClientError | undefined
  let wake: (() => void) | undefined
  let response: http.IncomingMessage | undefined
  let paused = false

  const notify = () => {
    const resume = wake
    wake = undefined
    resume?.()
  }
  const fail = (error: RpcClientError) => {
    if (failure === undefined && !ended) failure = error
    notify()
  }

  const request = (options.url.protocol === "https:" ? https.request : http.request)(options.url, {
    method: "POST",
    agent: options.agent,
    headers: { ...options.headers, "content-length": Buffer.byteLength(body) }
  }, (res) => {
    response = res
    res.setEncoding("utf8")
    // A refused call (401, 413, …) has no NDJSON body: fail it with the gateway's answer instead of waiting.
    if (res.statusCode !== 200) {
      let text = ""
      res.on("data", (chunk: string) => {
        if (text.length < MAX_ERROR_BODY) text += chunk
      })
      res.on("end", () => fail(protocolError(`The gateway refused the call: HTTP ${res.statusCode}`, text.slice(0, MAX_ERROR_BODY))))
      res.on("error", (cause) => fail(protocolError(`The gateway refused the call: HTTP ${res.statusCode}`, cause)))
      return
    }
    res.on("data", (chunk: string) => {
      partial += chunk
      let start = 0
      let newline = partial.indexOf("\n")
      try {
        while (newline !== -1) {
          if (newline > start) pending.push(JSON.parse(partial.slice(start, newline)) as FromServerEncoded)
          start = newline + 1
          newline = partial.indexOf("\n", start)
        }
      } catch (cause) {
        request.destroy()
        return fail(protocolError("Error decoding message", cause))
      }
      partial = start === 0 ? partial : partial.slice(start)
      if (pending.length >= HIGH_WATER && !paused) {
        paused = true
        res.pause()
      }
      notify()
    })
    res.on("end", () => {
      if (partial.trim() !== "") {
        try {
          pending.push(JSON.parse(partial) as FromServerEncoded)
        } catch (cause) {
          return fail(protocolError("Error decoding message", cause))
        }
      }
      ended = true
      notify()
    })
    res.on("close", () => {
      if (!res.complete) fail(protocolError("The gateway closed the response before its end"))
    })
  })
  request.on("error", (cause) => fail(protocolError("Failed to send HTTP request", cause)))
  request.end(body)

  /** The responses read so far; undefined once the response ended; waits while there are none. */
  const poll = (): Pull | undefined => {
    if (pending.length > 0) {
      const batch = pending
      pending = []
      if (paused) {
        paused = false
        response?.resume()
      }
      return Effect.succeed(batch)
    }
    if (failure !== undefined) return Effect.fail(failure)
    if (ended) return Effect.succeed(undefined)
    return undefined
  }
  const pull: Pull = Effect.suspend(() =>
    poll() ?? Effect.async<ReadonlyArray<FromServerEncoded> | undefined, RpcClientError>((resume) => {
      wake = () => resume(poll() ?? pull)
    })
  )
  return {
    pull,
    /** Ended (interrupted, failed) before the response's end: the socket goes, so the server sees the client leave and ends the turn. */
    abort: () => {
      if (!ended) request.destroy()
    }
  }
}

/** The keep-alive agent and request settings of one client (closed with its scope). */
export const makeTransport = (options: NodeHttpProtocolOptions) =>
  Effect.gen(function*() {
    const url = new URL(options.url)
    const agent = url.protocol === "https:" ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true })
    yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
    const headers: http.OutgoingHttpHeaders = {
      "content-type": "application/ndjson",
      ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` })
    }
    return {
      call: (body: string): Call => {
        try {
          return startCall({ url, agent, headers }, body)
        } catch (cause) {
          // node:http throws at once for what it cannot send (an API key with a line break, …).
          return { pull: Effect.fail(protocolError("Failed to send HTTP request", cause)), abort: () => {} }
        }
      }
    }
  })
export type Transport = Effect.Effect.Success<ReturnType<typeof makeTransport>>

export const make = (transport: Transport) =>
  RpcClient.Protocol.make((writeResponse) =>
    Effect.sync(() => {
      const writeAll = (batch: ReadonlyArray<FromServerEncoded>) =>
        batch.length === 1 ? writeResponse(batch[0]!) : Effect.forEach(batch, writeResponse, { discard: true })

      // Acks and interrupts have no HTTP form: a call is interrupted by aborting its request.
      const send = (message: FromClientEncoded): Effect.Effect<void, RpcClientError> =>
        message._tag !== "Request" ? Effect.void : Effect.suspend(() => {
          const call = transport.call(JSON.stringify(message) + "\n")
          const pump: Effect.Effect<void, RpcClientError> = Effect.flatMap(
            call.pull,
            (batch) => batch === undefined ? Effect.void : Effect.zipRight(writeAll(batch), pump)
          )
          return Effect.onExit(pump, () => Effect.sync(call.abort))
        })

      return { send, supportsAck: false, supportsTransferables: false } as const
    })
  )

// ---------------------------------------------------------------------------------------- direct streams

let requestIds = 0
const decodeDefect = Schema.decodeSync(Schema.Defect)

interface DirectOptions {
  readonly headers?: Headers.Input | undefined
}

/**
 * A streaming RPC over HTTP read straight into its Stream: the call's NDJSON response is pulled,
 * decoded with the RPC's own schemas and written as one channel, without RpcClient's per-call
 * mailbox, forked sender fiber and message routing (~300 run-loop steps of ~870 for a later
 * turn; bench/rpccpu.mjs STEPS=1). Same wire messages, span, headers (`RpcClient.withHeaders` and
 * the call's own) and failures (typed errors, defects, RpcClientError) as RpcClient's. Ending the
 * stream early aborts the request: the server sees the client leave and ends the turn.
 */
export const directStream = (transport: Transport, found: Rpc.Any) => {
  const rpc = found as unknown as Rpc.AnyWithProps
  const schemas = Option.getOrThrow(RpcSchema.getStreamSchemas(rpc.successSchema.ast))
  // Synchronous (Either) parsers, not the run loop's: the gateway's schemas need no services and
  // have no effectful parts (R is only unknown in the generic Rpc types).
  const pure = <A>(schema: unknown) => schema as Schema.Schema<A, unknown>
  const decodeChunk = Schema.decodeUnknownEither(pure<ReadonlyArray<unknown>>(Schema.NonEmptyArray(schemas.success)))
  const decodeExit = Schema.decodeUnknownEither(pure<Exit.Exit<unknown, unknown>>(Rpc.exitSchema(found)))
  const encodePayload = Schema.encodeEither(pure<unknown>(rpc.payloadSchema))
  const make = (payload: unknown) => rpc.payloadSchema.make !== undefined ? rpc.payloadSchema.make(payload) : payload
  const spanName = `RpcClient.${rpc._tag}`

  const start = (payload: unknown, options: DirectOptions | undefined) =>
    Effect.gen(function*() {
      const span = yield* Effect.makeSpanScoped(spanName, { captureStackTrace: false })
      const headers = Headers.merge(yield* FiberRef.get(RpcClient.currentHeaders), options?.headers ? Headers.fromInput(options.headers) : Headers.empty)
      const encoded = yield* Effect.orDie(encodePayload(make(payload)))
      const call = transport.call(JSON.stringify({
        _tag: "Request",
        id: String(requestIds++),
        tag: rpc._tag,
        payload: encoded,
        headers: Object.entries(headers),
        traceId: span.traceId,
        spanId: span.spanId,
        sampled: span.sampled
      }) + "\n")
      yield* Effect.addFinalizer(() => Effect.sync(call.abort))
      return call
    })

  const read = (call: Call) => {
    let exit: Exit.Exit<unknown, unknown> | undefined
    /** The next events (empty: none in this batch); undefined at the end; fails with the call's failure. */
    const step: Effect.Effect<Chunk.Chunk<unknown> | undefined, unknown> = Effect.flatMap(call.pull, (batch) => {
      if (batch === undefined) {
        if (exit === undefined) return Effect.fail(protocolError("The gateway ended the response without the call's exit"))
        return Exit.isSuccess(exit) ? Effect.succeed(undefined) : Effect.failCause(exit.cause)
      }
      let values: Array<unknown> | undefined
      let decodeExitOf: unknown
      for (const message of batch) {
        if (exit !== undefined || decodeExitOf !== undefined) continue
        switch (message._tag) {
          case "Chunk":
            values = values === undefined ? [...message.values] : values.concat(message.values)
            break
          case "Exit":
            decodeExitOf = message.exit
            break
          case "Defect":
            exit = Exit.die(decodeDefect(message.defect))
            break
        }
      }
      const decoded = values === undefined ? Either.right([]) : decodeChunk(values)
      if (Either.isLeft(decoded)) return Effect.die(decoded.left)
      if (decodeExitOf !== undefined) {
        const decodedExit = decodeExit(decodeExitOf)
        if (Either.isLeft(decodedExit)) return Effect.die(decodedExit.left)
        exit = decodedExit.right
      }
      return Effect.succeed(Chunk.unsafeFromArray(decoded.right))
    })
    const loop: Channel.Channel<Chunk.Chunk<unknown>, unknown, unknown, unknown, void, unknown> = Channel.flatMap(
      Channel.fromEffect(step),
      (chunk) => chunk === undefined ? Channel.void : Chunk.isEmpty(chunk) ? loop : Channel.zipRight(Channel.write(chunk), loop)
    )
    return loop
  }

  return (payload: unknown, options?: DirectOptions): Stream.Stream<unknown, unknown> =>
    Stream.fromChannel(Channel.flatMap(Channel.fromEffect(Scope.make()), (scope) =>
      Channel.ensuringWith(
        Channel.flatMap(Channel.fromEffect(Scope.extend(start(payload, options), scope)), read),
        (exit) => Scope.close(scope, exit)
      )))
}
