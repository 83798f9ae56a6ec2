import OpenAI from "openai"
import { describe, expect, it } from "vitest"
import { cliChildren, waitForNoCliChildren } from "../support/gateway.js"
import type { Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// claude.timeout_seconds with the real CLI: an upstream that stalls. No pool, so every CLI
// child of this process belongs to the request under test.

const TIMEOUT_SECONDS = 5

let upstream: Upstream
let client: OpenAI

useGateway(
  { config: { claude: { timeout_seconds: TIMEOUT_SECONDS }, pool: { enabled: false } } },
  (started) => ({ upstream, client } = started)
)

/** Polls until a CLI child exists, so the test knows the request reached one. */
const sawCli = async () => {
  for (let i = 0; i < 200; i++) {
    if (cliChildren().length > 0) return true
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return false
}

describe("request timeout", () => {
  it("answers 504 timeout_error when upstream never answers, and kills the CLI", async () => {
    upstream.on("TIMEOUT-HANG", { kind: "hang" })
    const started = Date.now()
    const pending = client.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "TIMEOUT-HANG" }] })
      .catch((e: unknown) => e)
    expect(await sawCli()).toBe(true)
    const error = await pending
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_SECONDS * 1000 - 100)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    const apiError = error as InstanceType<typeof OpenAI.APIError>
    expect(apiError.status).toBe(504)
    expect(apiError.type).toBe("timeout_error")
    expect(upstream.requestsFor("TIMEOUT-HANG").length).toBeGreaterThan(0)
    expect(await waitForNoCliChildren(1500)).toEqual([])
  })

  it("ends a stream that stalls after its first delta with an SSE error event, and kills the CLI", async () => {
    upstream.on("TIMEOUT-STALL", { kind: "message", blocks: [{ type: "text", text: ["first ", "never"] }], stallAfterDeltas: 1 })
    const stream = await client.chat.completions.create({
      model: "sonnet",
      stream: true,
      messages: [{ role: "user", content: "TIMEOUT-STALL" }]
    })
    const contents: Array<string> = []
    const error = await (async () => {
      for await (const chunk of stream) contents.push(chunk.choices[0]?.delta.content ?? "")
    })().catch((e: unknown) => e)
    expect(contents.join("")).toBe("first ")
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as Error).message).toMatch(/did not finish within 5 s/)
    expect(await waitForNoCliChildren(1500)).toEqual([])
  })
})
