/**
 * Scripted Anthropic Messages API for end-to-end tests: the real Claude Code CLI is pointed at it
 * through ANTHROPIC_BASE_URL. Wire formats follow /work/shared/reference/claude-cli-protocol.md
 * (1.5, 1.10, 2.4).
 */
import * as http from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { setTimeout as sleep } from "node:timers/promises"

export type Block =
  | { type: "text"; text: string | ReadonlyArray<string> }
  | { type: "thinking"; thinking: string | ReadonlyArray<string>; signature?: string }
  | { type: "tool_use"; id?: string; name: string; input: unknown; chunks?: number }

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use"

export interface Usage {
  input_tokens?: number
  output_tokens?: number
  cache_read_input_tokens?: number
  cache_creation_input_tokens?: number
}

export type Reply =
  | {
    kind: "message"
    blocks: ReadonlyArray<Block>
    stopReason?: StopReason
    usage?: Usage
    model?: string
    /** sleep before the first byte */
    delayMs?: number
    /** sleep between delta events (streaming only) */
    interDeltaMs?: number
    /** after this many delta events, send nothing more and leave the response open (streaming only) */
    stallAfterDeltas?: number
  }
  | { kind: "error"; status: number; type: string; message: string; headers?: Record<string, string> }
  | { kind: "hang" }

export interface RecordedRequest {
  readonly path: string
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: unknown
  readonly reply: Reply
}

export interface Upstream {
  readonly url: string
  /** every POST /v1/messages (not count_tokens), in arrival order */
  readonly requests: ReadonlyArray<RecordedRequest>
  /**
   * Register replies for requests whose last user message contains `marker` (substring of
   * JSON.stringify of that message's content). Replies are consumed in order; the last one is
   * reused. Registering the same marker again replaces its queue; markers are tried in
   * registration order.
   */
  on(marker: string, ...replies: ReadonlyArray<Reply>): void
  requestsFor(marker: string): ReadonlyArray<RecordedRequest>
  /** every POST /v1/messages/count_tokens body, in arrival order */
  readonly countRequests: ReadonlyArray<unknown>
  /** How count_tokens answers (default: 10 tokens for any body). */
  countWith(count: (body: unknown) => number): void
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------
// body helpers

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const textsOf = (blocks: unknown): ReadonlyArray<string> =>
  Array.isArray(blocks)
    ? blocks.flatMap((b: unknown) => isRecord(b) && b.type === "text" && typeof b.text === "string" ? [b.text] : [])
    : []

/** All `system` text, blocks joined with "\n" (`system` may be a string or text blocks). */
export const systemText = (body: unknown): string => {
  const system = isRecord(body) ? body.system : undefined
  return typeof system === "string" ? system : textsOf(system).join("\n")
}

export const messagesOf = (body: unknown): ReadonlyArray<{ role: string; content: unknown }> => {
  const messages = isRecord(body) ? body.messages : undefined
  if (!Array.isArray(messages)) return []
  return messages.flatMap((m: unknown) =>
    isRecord(m) && typeof m.role === "string" ? [{ role: m.role, content: m.content }] : []
  )
}

/** String content as is, or the concatenated text of its text blocks. */
export const textOf = (content: unknown): string => typeof content === "string" ? content : textsOf(content).join("")

const lastUserContent = (body: unknown): string | undefined => {
  const user = messagesOf(body).filter((m) => m.role === "user").at(-1)
  return user === undefined ? undefined : JSON.stringify(user.content) ?? ""
}

const matches = (body: unknown, marker: string): boolean => lastUserContent(body)?.includes(marker) ?? false

// ---------------------------------------------------------------------------------------------
// rendering

const joined = (t: string | ReadonlyArray<string>): string => typeof t === "string" ? t : t.join("")
const pieces = (t: string | ReadonlyArray<string>): ReadonlyArray<string> => typeof t === "string" ? [t] : t

const splitJson = (json: string, chunks: number): ReadonlyArray<string> => {
  const n = Math.max(1, Math.min(Math.floor(chunks), json.length))
  const size = Math.ceil(json.length / n)
  const out: Array<string> = []
  for (let i = 0; i < json.length; i += size) out.push(json.slice(i, i + size))
  return out.length > 0 ? out : [json]
}

type MessageReply = Extract<Reply, { kind: "message" }>

const fullUsage = (reply: MessageReply) => ({
  input_tokens: reply.usage?.input_tokens ?? 12,
  output_tokens: reply.usage?.output_tokens ?? 5,
  cache_creation_input_tokens: reply.usage?.cache_creation_input_tokens ?? 0,
  cache_read_input_tokens: reply.usage?.cache_read_input_tokens ?? 0
})

const stopReasonOf = (reply: MessageReply): StopReason =>
  reply.stopReason ?? (reply.blocks.some((b) => b.type === "tool_use") ? "tool_use" : "end_turn")

const toolId = (block: Extract<Block, { type: "tool_use" }>, n: number, i: number) => block.id ?? `toolu_up_${n}_${i}`

/** The SSE events (name + data) of a streamed message, as in reference section 2.4. */
const sseEvents = (reply: MessageReply, id: string, model: string, n: number): ReadonlyArray<readonly [string, unknown]> => {
  const usage = fullUsage(reply)
  const events: Array<readonly [string, unknown]> = [[
    "message_start",
    {
      type: "message_start",
      message: {
        id,
        type: "message",
        role: "assistant",
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...usage, output_tokens: 1 }
      }
    }
  ]]
  const delta = (index: number, d: unknown) =>
    events.push(["content_block_delta", { type: "content_block_delta", index, delta: d }])
  reply.blocks.forEach((block, index) => {
    const start = (content_block: unknown) =>
      events.push(["content_block_start", { type: "content_block_start", index, content_block }])
    switch (block.type) {
      case "text":
        start({ type: "text", text: "" })
        for (const text of pieces(block.text)) delta(index, { type: "text_delta", text })
        break
      case "thinking":
        start({ type: "thinking", thinking: "", signature: "" })
        for (const thinking of pieces(block.thinking)) delta(index, { type: "thinking_delta", thinking })
        delta(index, { type: "signature_delta", signature: block.signature ?? "sig" })
        break
      case "tool_use":
        start({ type: "tool_use", id: toolId(block, n, index), name: block.name, input: {} })
        for (const partial_json of splitJson(JSON.stringify(block.input ?? {}), block.chunks ?? 2)) {
          delta(index, { type: "input_json_delta", partial_json })
        }
        break
    }
    events.push(["content_block_stop", { type: "content_block_stop", index }])
  })
  events.push([
    "message_delta",
    {
      type: "message_delta",
      delta: { stop_reason: stopReasonOf(reply), stop_sequence: null },
      usage: { output_tokens: usage.output_tokens }
    }
  ])
  events.push(["message_stop", { type: "message_stop" }])
  return events
}

const messageJson = (reply: MessageReply, id: string, model: string, n: number) => ({
  id,
  type: "message",
  role: "assistant",
  model,
  content: reply.blocks.map((block, i) => {
    switch (block.type) {
      case "text":
        return { type: "text", text: joined(block.text) }
      case "thinking":
        return { type: "thinking", thinking: joined(block.thinking), signature: block.signature ?? "sig" }
      case "tool_use":
        return { type: "tool_use", id: toolId(block, n, i), name: block.name, input: block.input ?? {} }
    }
  }),
  stop_reason: stopReasonOf(reply),
  stop_sequence: null,
  usage: fullUsage(reply)
})

const errorBody = (type: string, message: string) => JSON.stringify({ type: "error", error: { type, message } })

// ---------------------------------------------------------------------------------------------
// server

const DEFAULT_REPLY: Reply = { kind: "message", blocks: [{ type: "text", text: ["OK"] }] }

export const startUpstream = async (options?: { defaultReply?: Reply }): Promise<Upstream> => {
  const defaultReply = options?.defaultReply ?? DEFAULT_REPLY
  const scripts = new Map<string, Array<Reply>>()
  const requests: Array<RecordedRequest> = []
  const sockets = new Set<Socket>()
  // aborts pending delays so close() does not wait for (or get kept alive by) timers
  const closing = new AbortController()
  let messageCount = 0
  const countRequests: Array<unknown> = []
  let count: (body: unknown) => number = () => 10

  const pickReply = (body: unknown): Reply => {
    for (const [marker, queue] of scripts) {
      if (!matches(body, marker)) continue
      const next = queue.length > 1 ? queue.shift() : queue[0]
      if (next !== undefined) return next
    }
    return defaultReply
  }

  const sendError = (res: http.ServerResponse, status: number, type: string, message: string, headers?: Record<string, string>) => {
    res.statusCode = status
    res.setHeader("content-type", "application/json")
    res.setHeader("request-id", `req_up_${requests.length}`)
    res.setHeader("x-should-retry", "false")
    for (const [k, v] of Object.entries(headers ?? {})) res.setHeader(k, v)
    res.end(errorBody(type, message))
  }

  const gone = (res: http.ServerResponse) => closing.signal.aborted || res.destroyed || res.writableEnded

  /** false when the wait was cut short by close() */
  const wait = async (ms: number | undefined): Promise<boolean> => {
    if (ms === undefined || ms <= 0) return true
    try {
      await sleep(ms, undefined, { signal: closing.signal })
      return true
    } catch {
      return false
    }
  }

  const sendMessage = async (res: http.ServerResponse, reply: MessageReply, body: unknown) => {
    const n = ++messageCount
    const id = `msg_up_${n}`
    const requestModel = isRecord(body) && typeof body.model === "string" ? body.model : "claude-up"
    const model = reply.model ?? requestModel
    if (!(await wait(reply.delayMs)) || gone(res)) return
    if (!(isRecord(body) && body.stream === true)) {
      res.writeHead(200, { "content-type": "application/json", "request-id": `req_up_${n}` })
      res.end(JSON.stringify(messageJson(reply, id, model, n)))
      return
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "request-id": `req_up_${n}` })
    res.flushHeaders()
    let deltas = 0
    for (const [event, data] of sseEvents(reply, id, model, n)) {
      if (event === "content_block_delta" && deltas++ === reply.stallAfterDeltas) return // left open; close() destroys the socket
      if (event === "content_block_delta" && !(await wait(reply.interDeltaMs))) return
      if (gone(res)) return
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    }
    res.end()
  }

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Array<Buffer> = []
    for await (const chunk of req) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)))
    const path = req.url ?? "/"
    const route = path.split("?")[0]
    if (req.method !== "POST" || (route !== "/v1/messages" && route !== "/v1/messages/count_tokens")) {
      return sendError(res, 404, "not_found_error", `Not found: ${req.method} ${path}`)
    }
    let body: unknown
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
    } catch {
      return sendError(res, 400, "invalid_request_error", "request body is not valid JSON")
    }
    if (route === "/v1/messages/count_tokens") {
      res.writeHead(200, { "content-type": "application/json" })
      countRequests.push(body)
      return res.end(JSON.stringify({ input_tokens: count(body) }))
    }
    const reply = pickReply(body)
    requests.push({ path, headers: { ...req.headers }, body, reply })
    switch (reply.kind) {
      case "error":
        return sendError(res, reply.status, reply.type, reply.message, reply.headers)
      case "hang":
        return // left open; close() destroys the socket
      case "message":
        return sendMessage(res, reply, body)
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent && !gone(res)) sendError(res, 500, "api_error", String(e))
      else res.destroy()
    })
  })
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject)
      resolve()
    })
  })
  const { port } = server.address() as AddressInfo

  let closed: Promise<void> | undefined
  const close = (): Promise<void> =>
    closed ??= new Promise<void>((resolve) => {
      closing.abort()
      server.close(() => resolve())
      server.closeAllConnections()
      for (const socket of sockets) socket.destroy()
    })

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    on: (marker, ...replies) => {
      scripts.delete(marker) // re-registration moves the marker to the end of the match order
      scripts.set(marker, [...replies])
    },
    requestsFor: (marker) => requests.filter((r) => matches(r.body, marker)),
    countRequests,
    countWith: (f) => {
      count = f
    },
    close
  }
}
