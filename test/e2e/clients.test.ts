import { createOpenAICompatible } from "@ai-sdk/openai-compatible"
import { generateText, stepCountIs, streamText, tool } from "ai"
import { z } from "zod"
import { describe, expect, it } from "vitest"
import type { Gateway } from "../support/gateway.js"
import type { Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// A second real client library against the gateway (real CLI): the Vercel AI SDK's
// OpenAI-compatible provider.

let upstream: Upstream
let gateway: Gateway

useGateway({}, (started) => ({ upstream, gateway } = started))

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

  it("tools: generateText runs the client's function and the gateway continues the parked turn", async () => {
    upstream.on("AISDK-TOOL", {
      kind: "message",
      blocks: [{ type: "tool_use", name: "mcp__client__get_weather", input: { city: "Paris" } }]
    })
    upstream.on("AISDK-WEATHER", { kind: "message", blocks: [{ type: "text", text: "Sunny, says the tool." }] })
    const seen: Array<string> = []
    const result = await generateText({
      model: provider()("sonnet"),
      prompt: "AISDK-TOOL",
      maxRetries: 0,
      stopWhen: stepCountIs(3),
      tools: {
        get_weather: tool({
          description: "Current weather for a city",
          inputSchema: z.object({ city: z.string() }),
          execute: async ({ city }) => {
            seen.push(city)
            return `AISDK-WEATHER: sunny in ${city}`
          }
        })
      }
    })
    expect(seen).toEqual(["Paris"])
    expect(result.steps.map((step) => step.finishReason)).toEqual(["tool-calls", "stop"])
    expect(result.text).toBe("Sunny, says the tool.")
    const sessions = [...upstream.requestsFor("AISDK-TOOL"), ...upstream.requestsFor("AISDK-WEATHER")]
      .map((r) => r.headers["x-claude-code-session-id"])
    expect(new Set(sessions).size).toBe(1)
  })

  it("tools: streamText streams the call and the continuation", async () => {
    upstream.on("AISDK-STOOL", {
      kind: "message",
      blocks: [{ type: "text", text: "Looking. " }, { type: "tool_use", name: "mcp__client__add", input: { a: 2, b: 3 }, chunks: 3 }]
    })
    upstream.on("AISDK-SUM", { kind: "message", blocks: [{ type: "text", text: ["It is ", "5."] }] })
    const result = streamText({
      model: provider()("sonnet"),
      prompt: "AISDK-STOOL",
      maxRetries: 0,
      stopWhen: stepCountIs(3),
      tools: {
        add: tool({
          inputSchema: z.object({ a: z.number(), b: z.number() }),
          execute: async ({ a, b }) => `AISDK-SUM: ${a + b}`
        })
      }
    })
    const steps = await result.steps
    expect(steps.map((step) => step.text)).toEqual(["Looking. ", "It is 5."])
    expect(steps[0]!.toolCalls.map((call) => [call.toolName, call.input])).toEqual([["add", { a: 2, b: 3 }]])
    expect(await result.finishReason).toBe("stop")
  })
})
