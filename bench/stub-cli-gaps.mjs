#!/usr/bin/env node
// STUB of the Claude Code CLI for bench/rpccpu.mjs only (NOT the real CLI): a turn's lines come
// spread out like the real CLI's (init, then the upstream's message start, DELTAS text deltas GAP_MS
// apart, the stops and the result), so that every event is its own line, frame or SSE write.
import { event, out, serveStub } from "./stub-cli-common.mjs"

const DELTAS = Number(process.env.STUB_DELTAS ?? 4)
const GAP_MS = Number(process.env.STUB_GAP_MS ?? 2)
const later = (f) => setTimeout(f, GAP_MS)

serveStub(() => {
  later(() => {
    event({ type: "message_start", message: { id: "msg_stub", model: "claude-stub", usage: { input_tokens: 10, output_tokens: 1 } } })
    event({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } })
    let i = 0
    const tick = () => {
      if (i < DELTAS) {
        event({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: `tok${i++} ` } })
        return later(tick)
      }
      event({ type: "content_block_stop", index: 0 })
      event({ type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: DELTAS } })
      event({ type: "message_stop" })
      out({ type: "result", subtype: "success", is_error: false, session_id: "stub", result: "", stop_reason: "end_turn", total_cost_usd: 0.0001, num_turns: 1, usage: { input_tokens: 10, output_tokens: DELTAS, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 } })
    }
    later(tick)
  })
})
