/**
 * Micro-benchmarks of the per-request hot path, in-process (not tests), printed as JSON:
 *   npx vite-node bench/micro.ts
 *  - CLI line decoding: the stub CLI's 16-line turn (bench/stub-cli.sh) through `decodeCliLine`;
 *  - an OpenAI later-turn request (and a 4-message one) through decodeChatRequest + toTurnRequest;
 *  - SSE frames written one `res.write` each vs a chunk's frames joined (plain node:http, process CPU).
 * Each figure is the best of 5 rounds. See bench/README.md, "Per-request CPU".
 */
import { execFileSync } from "node:child_process"
import * as http from "node:http"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Either } from "effect"
import { decodeCliLine } from "../src/cli/Protocol.js"
import { decodeChatRequest, toTurnRequest } from "../src/protocols/openai/translate.js"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const best = (rounds: number, f: () => number) => Math.round(Math.min(...Array.from({ length: rounds }, f)))
const perCall = (n: number, f: () => void) => () => {
  const started = performance.now()
  for (let i = 0; i < n; i++) f()
  return ((performance.now() - started) / n) * 1000
}

const lines = execFileSync("sh", [path.join(ROOT, "bench/stub-cli.sh")], { input: '{"type":"user"}\n', encoding: "utf8" })
  .split("\n").filter((line) => line !== "")
const decodeTurn = perCall(2000, () => {
  for (const line of lines) if (Either.isLeft(decodeCliLine(line))) throw new Error(line)
})

const translate = (body: string) =>
  perCall(5000, () => {
    const decoded = decodeChatRequest(JSON.parse(body))
    if (Either.isLeft(decoded)) throw decoded.left
    if (Either.isLeft(toTurnRequest(decoded.right, "sonnet", { maxChoices: 1, maxHistoryMessages: 200, owner: "" }))) throw new Error("translate")
  })
const later = translate(JSON.stringify({ model: "sonnet", stream: true, conversation_id: "conv_x", messages: [{ role: "user", content: "next" }] }))
const history = translate(JSON.stringify({
  model: "sonnet",
  messages: [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }, { role: "assistant", content: "hello" }, {
    role: "user",
    content: [{ type: "text", text: "next" }]
  }]
}))

const sseWrites = async () => {
  const frames = Array.from({ length: 11 }, (_, i) => `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok${i} "}}]}\n\n`)
  const encoder = new TextEncoder()
  let joined = false
  const server = http.createServer((_, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" })
    if (joined) res.write(encoder.encode(frames.join("")))
    else for (const frame of frames) res.write(encoder.encode(frame))
    res.end()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const agent = new http.Agent({ keepAlive: true })
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`
  const get = () => new Promise<void>((resolve, reject) => http.get(url, { agent }, (r) => r.resume().on("end", resolve)).on("error", reject))
  const cpuPerResponse = async (join: boolean, n: number) => {
    joined = join
    const before = process.cpuUsage()
    for (let i = 0; i < n; i++) await get()
    const used = process.cpuUsage(before)
    return (used.user + used.system) / n
  }
  await cpuPerResponse(false, 500)
  await cpuPerResponse(true, 500)
  const each: Array<number> = []
  const one: Array<number> = []
  for (let k = 0; k < 5; k++) {
    each.push(await cpuPerResponse(false, 2000))
    one.push(await cpuPerResponse(true, 2000))
  }
  server.close()
  agent.destroy()
  return { write_per_frame: Math.round(Math.min(...each)), joined_per_chunk: Math.round(Math.min(...one)) }
}

decodeTurn()
later()
history()
console.log(JSON.stringify({
  cli_16_line_turn_decode_us: best(5, decodeTurn),
  openai_later_turn_decode_translate_us: best(5, later),
  openai_4_message_decode_translate_us: best(5, history),
  sse_11_frames_cpu_us_per_response_client_and_server: await sseWrites()
}, null, 2))
