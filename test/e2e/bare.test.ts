import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import OpenAI from "openai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Gateway, openaiFor, startGateway, waitForNoCliChildren } from "../support/gateway.js"
import { startUpstream, type Upstream } from "../support/upstream.js"

// claude.bare: the CLI's --bare mode, with the real CLI. The same workspace (holding a CLAUDE.md)
// is served by a gateway in each mode; upstream shows what the CLI sent.

let upstream: Upstream
let workspace: string
const gateways: Array<Gateway> = []

beforeAll(async () => {
  upstream = await startUpstream()
  workspace = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-bare-"))
  fs.writeFileSync(path.join(workspace, "CLAUDE.md"), "Project rule: BARE-CLAUDE-MD-MARKER\n")
})

afterAll(async () => {
  for (const gateway of gateways) await gateway.close()
  await upstream?.close()
  fs.rmSync(workspace, { recursive: true, force: true })
  expect(await waitForNoCliChildren()).toEqual([])
})

const clientFor = async (bare: boolean) => {
  const gateway = await startGateway({ upstreamUrl: upstream.url, config: { claude: { bare, workspace }, pool: { prewarm: 0 } } })
  gateways.push(gateway)
  return openaiFor(gateway)
}

/** Everything the CLI sent upstream for a marker, as one string. */
const sent = (marker: string) => JSON.stringify(upstream.requestsFor(marker).map((r) => r.body))

describe("claude.bare", () => {
  it("off: the CLI reads the workspace's CLAUDE.md and adds its attribution reminder", async () => {
    const client = await clientFor(false)
    upstream.on("BARE-OFF", { kind: "message", blocks: [{ type: "text", text: "full" }] })
    const completion = await client.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "BARE-OFF" }] })
    expect(completion.choices[0]!.message.content).toBe("full")
    expect(sent("BARE-OFF")).toContain("BARE-CLAUDE-MD-MARKER")
    expect(sent("BARE-OFF")).toContain("Co-Authored-By")
  })

  it("on: the same turn goes upstream without either, and still streams", async () => {
    const client = await clientFor(true)
    upstream.on("BARE-ON", { kind: "message", blocks: [{ type: "text", text: ["bare ", "answer"] }] })
    const stream = await client.chat.completions.create({ model: "sonnet", stream: true, messages: [{ role: "user", content: "BARE-ON" }] })
    let text = ""
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ""
    expect(text).toBe("bare answer")
    expect(upstream.requestsFor("BARE-ON")).toHaveLength(1)
    expect(sent("BARE-ON")).not.toContain("BARE-CLAUDE-MD-MARKER")
    expect(sent("BARE-ON")).not.toContain("Co-Authored-By")
  })

  it("on: client function tools still round-trip through the in-process MCP server", async () => {
    const client = await clientFor(true)
    upstream.on("BARE-TOOL", { kind: "message", blocks: [{ type: "tool_use", name: "mcp__client__lookup", input: { q: "x" } }] })
    const tools: Array<OpenAI.ChatCompletionTool> = [
      { type: "function", function: { name: "lookup", parameters: { type: "object", properties: { q: { type: "string" } } } } }
    ]
    const messages: Array<OpenAI.ChatCompletionMessageParam> = [{ role: "user", content: "BARE-TOOL" }]
    const first = await client.chat.completions.create({ model: "sonnet", tools, messages })
    expect(first.choices[0]!.finish_reason).toBe("tool_calls")
    const call = first.choices[0]!.message.tool_calls![0]!
    expect(call.type === "function" && call.function.name).toBe("lookup")
    upstream.on("BARE-RESULT", { kind: "message", blocks: [{ type: "text", text: "looked up" }] })
    const second = await client.chat.completions.create({
      model: "sonnet",
      tools,
      messages: [...messages, first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "BARE-RESULT" }]
    })
    expect(second.choices[0]!.message.content).toBe("looked up")
    const session = (marker: string) => upstream.requestsFor(marker).map((r) => r.headers["x-claude-code-session-id"])
    expect(session("BARE-RESULT")).toEqual(session("BARE-TOOL")) // the parked turn went on
  })
})
