import { createOpenAICompatible } from "@ai-sdk/openai-compatible"
import { generateText, streamText } from "ai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Gateway, startGateway, waitForNoCliChildren } from "../support/gateway.js"
import { startUpstream, type Upstream } from "../support/upstream.js"

// A second real client library against the gateway (real CLI): the Vercel AI SDK's
// OpenAI-compatible provider.

let upstream: Upstream
let gateway: Gateway

beforeAll(async () => {
  upstream = await startUpstream()
  gateway = await startGateway({ upstreamUrl: upstream.url })
})

afterAll(async () => {
  await gateway?.close()
  await upstream?.close()
  expect(await waitForNoCliChildren()).toEqual([])
})

const provider = () => createOpenAICompatible({ name: "claude-code-api", baseURL: gateway.baseURL, apiKey: "unused", includeUsage: true })

describe("Vercel AI SDK (openai-compatible provider)", () => {
  it("generateText gets the answer, finish reason and usage", async () => {
    upstream.on("AISDK-1", {
      kind: "message",
      blocks: [{ type: "text", text: ["Hello ", "from ", "the SDK"] }],
      usage: { input_tokens: 11, output_tokens: 4 }
    })
    const result = await generateText({
      model: provider()("sonnet"),
      system: "Be brief.",
      prompt: "AISDK-1",
      maxRetries: 0
    })
    expect(result.text).toBe("Hello from the SDK")
    expect(result.finishReason).toBe("stop")
    expect(result.usage.inputTokens).toBe(11)
    expect(result.usage.outputTokens).toBe(4)
  })

  it("streamText streams the same deltas and finishes", async () => {
    upstream.on("AISDK-2", { kind: "message", blocks: [{ type: "text", text: ["one ", "two ", "three"] }] })
    const result = streamText({ model: provider()("sonnet"), prompt: "AISDK-2", maxRetries: 0 })
    const parts: Array<string> = []
    for await (const part of result.textStream) parts.push(part)
    expect(parts.join("")).toBe("one two three")
    expect(parts.length).toBeGreaterThanOrEqual(3)
    expect(await result.finishReason).toBe("stop")
  })

  it("surfaces a gateway error as an APICallError with the status", async () => {
    upstream.on("AISDK-3", { kind: "error", status: 429, type: "rate_limit_error", message: "slow down" })
    const error = await generateText({ model: provider()("sonnet"), prompt: "AISDK-3", maxRetries: 0 }).catch((e: unknown) => e)
    expect(String(error)).toMatch(/rate limit|429|slow down/i)
    expect((error as { statusCode?: number }).statusCode).toBe(429)
  })
})
