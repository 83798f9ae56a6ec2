/**
 * The Anthropic dialect against chat on one gateway (real CLI, scripted upstream), printed as JSON:
 * p50 latency of chat.completions, messages.create, messages.stream (same launch signature, a pause
 * between requests so that each finds a standby), and of count_tokens (a CLI of its own per count).
 *   npx vite-node bench/anthropic.ts
 */
import Anthropic from "@anthropic-ai/sdk"
import OpenAI from "openai"
import { startGateway } from "../test/support/gateway.js"
import { startUpstream } from "../test/support/upstream.js"
const upstream = await startUpstream()
const gateway = await startGateway({ upstreamUrl: upstream.url })
const anthropic = new Anthropic({ baseURL: gateway.url, apiKey: "x", maxRetries: 0 })
const openai = new OpenAI({ baseURL: gateway.baseURL, apiKey: "x", maxRetries: 0 })
const med = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(1)
const time = async (f: () => Promise<unknown>) => {
  const t = performance.now()
  await f()
  return performance.now() - t
}
const N = 10
const chat: Array<number> = []
const msgs: Array<number> = []
const stream: Array<number> = []
const count: Array<number> = []
for (let i = 0; i < 2; i++) {
  await openai.chat.completions.create({ model: "sonnet", max_tokens: 100, messages: [{ role: "user", content: `warm ${i}` }] })
}
// Same launch signature for all (max_tokens 100), rounds in turn, a pause so the pool's standby is back each time.
const pause = () => new Promise((r) => setTimeout(r, 2500))
for (let i = 0; i < N; i++) {
  chat.push(await time(() => openai.chat.completions.create({ model: "sonnet", max_tokens: 100, messages: [{ role: "user", content: `chat ${i}` }] })))
  await pause()
  msgs.push(await time(() => anthropic.messages.create({ model: "sonnet", max_tokens: 100, messages: [{ role: "user", content: `msg ${i}` }] })))
  await pause()
  stream.push(await time(() => anthropic.messages.stream({ model: "sonnet", max_tokens: 100, messages: [{ role: "user", content: `stream ${i}` }] }).finalMessage()))
  await pause()
}
for (let i = 0; i < 8; i++) count.push(await time(() => anthropic.messages.countTokens({ model: "sonnet", messages: [{ role: "user", content: `count ${i}` }] })))
console.log(JSON.stringify({ n: N, chat_p50_ms: med(chat), messages_p50_ms: med(msgs), messages_stream_p50_ms: med(stream), count_tokens_p50_ms: med(count), count_n: count.length }))
await gateway.close()
await upstream.close()
