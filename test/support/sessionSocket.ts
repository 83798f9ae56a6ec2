import WebSocket from "ws"
import type { Gateway } from "./gateway.js"

// Frames are read field by field in tests (f.type, f.seq…).
export type Json = Record<string, any>

/** A session's WebSocket client that keeps every frame (and how the socket closed) and waits for the ones a test names. */
export class SessionSocket {
  readonly frames: Array<Json> = []
  closed: { code: number; reason: string } | undefined
  private wake: (() => void) | undefined
  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      this.frames.push(JSON.parse(String(data)) as Json)
      this.wake?.()
    })
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: String(reason) }
      this.wake?.()
    })
  }

  /** Connect; resolves with the client, or rejects with the HTTP status of a refused upgrade. */
  static open(gateway: Gateway, route: string, headers: Record<string, string> = {}): Promise<SessionSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${gateway.url.replace("http", "ws")}${route}`, { headers })
      const client = new SessionSocket(ws)
      ws.once("open", () => resolve(client))
      ws.once("unexpected-response", (_request, response) => reject(new Error(`status ${response.statusCode}`)))
      ws.once("error", reject)
    })
  }

  send(message: Json) {
    this.ws.send(JSON.stringify(message))
  }

  /** Resolves when `done` holds (checked after every frame and on close), or fails after `ms`. */
  async until(done: () => boolean, ms = 60_000): Promise<void> {
    const deadline = Date.now() + ms
    while (!done()) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out; closed: ${JSON.stringify(this.closed)}; last frames: ${JSON.stringify(this.frames.slice(-5)).slice(0, 2000)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200))
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  /** The first frame from `from` on that matches, waiting for it. */
  next(match: (frame: Json) => boolean, from = 0, ms = 30_000): Promise<Json> {
    return this.until(() => this.frames.slice(from).some(match) || this.closed !== undefined, ms).then(() => {
      const found = this.frames.slice(from).find(match)
      if (found === undefined) throw new Error(`socket closed (${JSON.stringify(this.closed)}) before a match; frames: ${JSON.stringify(this.frames).slice(0, 2000)}`)
      return found
    })
  }

  /** Send a user message and wait for its turn's result; the frames of the turn. */
  async turn(content: string): Promise<{ readonly frames: Array<Json>; readonly result: Json }> {
    const from = this.frames.length
    this.send({ type: "user_message", content })
    const result = await this.next((f) => f.type === "result", from)
    await this.next((f) => f.type === "state" && f.state === "idle" && f.seq > result.seq, from)
    return { frames: this.frames.slice(from), result }
  }

  async close() {
    if (this.closed !== undefined) return
    this.ws.resume()
    this.ws.close()
    await this.until(() => this.closed !== undefined, 5000).catch(() => undefined)
  }
}
