#!/usr/bin/env node
// STUB of the Claude Code CLI — NOT the real CLI. Prints canned stream-json so that tests can inject
// faults (crash mid-stream, garbage lines, hang) and the overhead benchmark can measure the gateway
// alone. The user text picks the behaviour: STUB-CRASH, STUB-GARBAGE, STUB-HANG, otherwise a reply
// of STUB_DELTAS (default 3) text deltas.
import { createInterface } from "node:readline"

const session = `stub-${process.pid}`
const deltas = Number(process.env.STUB_DELTAS ?? 3)
const model = process.argv[process.argv.indexOf("--model") + 1] ?? "stub-model"
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n")
const event = (e) => out({ type: "stream_event", event: e, session_id: session, parent_tool_use_id: null, uuid: "u" })
let turn = 0

const answer = (text) => {
  const id = `msg_stub_${turn++}`
  out({ type: "system", subtype: "init", cwd: process.cwd(), session_id: session, tools: [], mcp_servers: [], model, permissionMode: "default", claude_code_version: "0.0.0-stub" })
  event({ type: "message_start", message: { id, type: "message", role: "assistant", model, content: [], usage: { input_tokens: 10, output_tokens: 1 } } })
  event({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } })
  let full = ""
  for (let i = 0; i < deltas; i++) {
    const piece = `tok${i} `
    full += piece
    event({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: piece } })
  }
  if (text.includes("STUB-CRASH")) {
    process.stderr.write("stub: simulated crash\n")
    process.exit(3)
  }
  out({ type: "assistant", message: { id, model, role: "assistant", content: [{ type: "text", text: full }] }, parent_tool_use_id: null, session_id: session })
  event({ type: "content_block_stop", index: 0 })
  event({ type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: deltas } })
  event({ type: "message_stop" })
  out({ type: "result", subtype: "success", is_error: false, session_id: session, result: full, stop_reason: "end_turn", total_cost_usd: 0.0001, num_turns: 1, usage: { input_tokens: 10, output_tokens: deltas, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 } })
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const message = JSON.parse(line)
  if (message.type === "control_request") {
    const response = message.request.subtype === "initialize"
      ? { claude_code_version: "0.0.0-stub", models: [{ value: "sonnet", resolvedModel: "claude-sonnet-stub" }, { value: "opus", resolvedModel: "claude-opus-stub" }] }
      : {}
    out({ type: "control_response", response: { subtype: "success", request_id: message.request_id, response } })
    return
  }
  if (message.type !== "user") return
  const text = JSON.stringify(message.message.content)
  // A hung CLI that also ignores SIGTERM: the gateway must escalate to SIGKILL.
  if (text.includes("STUB-HANG")) {
    process.on("SIGTERM", () => {})
    return
  }
  if (text.includes("STUB-GARBAGE")) {
    process.stdout.write("this is not json\n{\"no_type\":true}\n{\"type\":\"brand_new_kind\",\"x\":1}\n")
  }
  answer(text)
})
