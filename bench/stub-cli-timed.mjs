#!/usr/bin/env node
// STUB of the Claude Code CLI for the delta-latency benchmark only (NOT the real CLI): each text
// delta carries the monotonic time (process.hrtime, shared by all processes) at which it was written.
import { createInterface } from "node:readline"

const DELTAS = 20
const GAP_MS = 5
const S = { session_id: "stub", parent_tool_use_id: null, uuid: "u" }
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n")
const event = (e) => out({ type: "stream_event", event: e, ...S })

createInterface({ input: process.stdin }).on("line", (line) => {
  const m = JSON.parse(line)
  if (m.type === "control_request") {
    out({ type: "control_response", response: { subtype: "success", request_id: m.request_id, response: { claude_code_version: "stub", models: [{ value: "sonnet", resolvedModel: "claude-stub" }] } } })
    return
  }
  if (m.type !== "user") return
  out({ type: "system", subtype: "init", cwd: "/", session_id: "stub", tools: [], model: "claude-stub" })
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
