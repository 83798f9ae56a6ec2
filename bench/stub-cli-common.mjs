// The part the node STUBs of the Claude Code CLI share (NOT the real CLI; benchmarks only): stream-json
// lines out, the control handshake answered, and each user line handed to the stub's turn.
import { createInterface } from "node:readline"

const S = { session_id: "stub", parent_tool_use_id: null, uuid: "u" }
export const out = (o) => process.stdout.write(JSON.stringify(o) + "\n")
export const event = (e) => out({ type: "stream_event", event: e, ...S })

/** Answers control requests, and runs `turn` for each user line after the turn's init line. */
export const serveStub = (turn) =>
  createInterface({ input: process.stdin }).on("line", (line) => {
    const m = JSON.parse(line)
    if (m.type === "control_request") {
      out({ type: "control_response", response: { subtype: "success", request_id: m.request_id, response: { claude_code_version: "stub", models: [{ value: "sonnet", resolvedModel: "claude-stub" }] } } })
      return
    }
    if (m.type !== "user") return
    out({ type: "system", subtype: "init", cwd: "/", session_id: "stub", tools: [], model: "claude-stub" })
    turn()
  })
