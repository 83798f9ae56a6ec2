import * as http from "node:http"
import * as https from "node:https"
import { RpcClient } from "@effect/rpc"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import { Effect } from "effect"
import { type Call, makeInbox } from "./DirectStream.js"

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

/** One call's request and its NDJSON response, pulled a batch of lines at a time. */
const startCall = (
  options: { readonly url: URL; readonly agent: http.Agent; readonly headers: http.OutgoingHttpHeaders },
  body: string
): Call => {
  let response: http.IncomingMessage | undefined
  let paused = false
  let settled = false
  const resume = () => {
    if (!paused) return
    paused = false
    response?.resume()
  }
  const inbox = makeInbox({ onDrained: resume })
  let partial = ""

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
      res.on("end", () => inbox.fail(protocolError(`The gateway refused the call: HTTP ${res.statusCode}`, text.slice(0, MAX_ERROR_BODY))))
      res.on("error", (cause) => inbox.fail(protocolError(`The gateway refused the call: HTTP ${res.statusCode}`, cause)))
      return
    }
    res.on("data", (chunk: string) => {
      // After the call's Exit the rest is read only to free the connection for the next call.
      if (settled) return
      partial += chunk
      let start = 0
      let newline = partial.indexOf("\n")
      try {
        while (newline !== -1) {
          if (newline > start) inbox.offer(JSON.parse(partial.slice(start, newline)) as FromServerEncoded)
          start = newline + 1
          newline = partial.indexOf("\n", start)
        }
      } catch (cause) {
        request.destroy()
        return inbox.fail(protocolError("Error decoding message", cause))
      }
      partial = start === 0 ? partial : partial.slice(start)
      if (inbox.size() >= HIGH_WATER && !paused) {
        paused = true
        res.pause()
      }
    })
    res.on("end", () => {
      if (partial.trim() !== "" && !settled) {
        try {
          inbox.offer(JSON.parse(partial) as FromServerEncoded)
        } catch (cause) {
          return inbox.fail(protocolError("Error decoding message", cause))
        }
      }
      inbox.end()
    })
    res.on("close", () => {
      if (!res.complete) inbox.fail(protocolError("The gateway closed the response before its end"))
    })
  })
  request.on("error", (cause) => inbox.fail(protocolError("Failed to send HTTP request", cause)))
  request.end(body)

  return {
    pull: inbox.pull,
    settle: () => {
      settled = true
      inbox.clear()
      resume()
    },
    /** Ended (interrupted, failed) before its Exit: the socket goes, so the server sees the client leave and ends the turn. */
    abort: Effect.sync(() => {
      if (!inbox.isEnded() && !settled) request.destroy()
    })
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
      call: (request: FromClientEncoded): Call => {
        try {
          return startCall({ url, agent, headers }, JSON.stringify(request) + "\n")
        } catch (cause) {
          // node:http throws at once for what it cannot send (an API key with a line break, …).
          return { pull: Effect.fail(protocolError("Failed to send HTTP request", cause)), settle: () => {}, abort: Effect.void }
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
          const call = transport.call(message)
          const pump: Effect.Effect<void, RpcClientError> = Effect.flatMap(
            call.pull,
            (batch) => batch === undefined ? Effect.void : Effect.zipRight(writeAll(batch), pump)
          )
          return Effect.onExit(pump, () => call.abort)
        })

      return { send, supportsAck: false, supportsTransferables: false } as const
    })
  )
