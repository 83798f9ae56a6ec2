import * as http from "node:http"
import * as https from "node:https"
import { RpcClient } from "@effect/rpc"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import { Effect, Layer } from "effect"

/**
 * The RPC client's HTTP transport (NDJSON, one streamed POST per call) over `node:http` with a
 * keep-alive agent and a plain line splitter. It replaces `RpcClient.layerProtocolHttp` over
 * `FetchHttpClient`: undici, web streams, a TextDecoder and a Channel per chunk cost the client
 * ~8 ms of CPU per streamed turn, this ~1 ms (bench/rpccpu.mjs). Client code only (no server imports).
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

/** One call's request and its NDJSON response, pulled a batch of lines at a time. */
const startCall = (
  options: { readonly url: URL; readonly agent: http.Agent; readonly headers: http.OutgoingHttpHeaders },
  body: string
) => {
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

export const make = (options: NodeHttpProtocolOptions) =>
  RpcClient.Protocol.make((writeResponse) =>
    Effect.gen(function*() {
      const url = new URL(options.url)
      const agent = url.protocol === "https:" ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true })
      yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
      const headers: http.OutgoingHttpHeaders = {
        "content-type": "application/ndjson",
        ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` })
      }
      const writeAll = (batch: ReadonlyArray<FromServerEncoded>) =>
        batch.length === 1 ? writeResponse(batch[0]!) : Effect.forEach(batch, writeResponse, { discard: true })

      // Acks and interrupts have no HTTP form: a call is interrupted by aborting its request.
      const send = (message: FromClientEncoded): Effect.Effect<void, RpcClientError> =>
        message._tag !== "Request" ? Effect.void : Effect.suspend(() => {
          const call = startCall({ url, agent, headers }, JSON.stringify(message) + "\n")
          const pump: Effect.Effect<void, RpcClientError> = Effect.flatMap(
            call.pull,
            (batch) => batch === undefined ? Effect.void : Effect.zipRight(writeAll(batch), pump)
          )
          return Effect.onExit(pump, () => Effect.sync(call.abort))
        })

      return { send, supportsAck: false, supportsTransferables: false } as const
    })
  )

export const layer = (options: NodeHttpProtocolOptions): Layer.Layer<RpcClient.Protocol> =>
  Layer.scoped(RpcClient.Protocol, make(options))
