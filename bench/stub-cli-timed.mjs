#!/usr/bin/env node
// STUB of the Claude Code CLI for the delta-latency benchmark only (NOT the real CLI): each text
// delta carries the monotonic time (process.hrtime, shared by all processes) at which it was written.
import { event, out, serveStub } from "./stub-cli-common.mjs"

const DELTAS = 20
const GAP_MS = 5

serveStub(() => {
  event({ type: "message_start", message: { id: "msg_stub", model: "claude-stub", usage: { input_tokens: 1, output_tokens: 1 } } })
  let i = 0
  const tick = () => {
    if (i++ < DELTAS) {
      event({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: `t=${process.hrtime.bigint()};` } })
      setTimeout(tick, GAP_MS)
      return
    }
    event({ type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null } })
    out({ type: "result", subtype: "success", is_error: false, session_id: "stub", result: "", stop_reason: "end_turn", usage: { input_tokens: 1, output_tokens: DELTAS } })
  }
  tick()
})
