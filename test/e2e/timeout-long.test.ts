import OpenAI from "openai"
import { describe, expect, it } from "vitest"
import type { Upstream } from "../support/upstream.js"
import { useGateway } from "../support/e2e.js"

// A claude.timeout_seconds past what a Node timer can hold (2^31 - 1 ms, ~24.8 days) means "no
// deadline in practice", not "at once" (Node fires a longer timer after 1 ms).

let upstream: Upstream
let client: OpenAI

useGateway({ config: { claude: { timeout_seconds: 99_999_999 } } }, (started) => ({ upstream, client } = started))

describe("a very long claude.timeout_seconds", () => {
  it("answers a turn (both forms) instead of timing out at once", async () => {
    upstream.on("LONG-DEADLINE", { kind: "message", blocks: [{ type: "text", text: ["still ", "here"] }] })
    const completion = await client.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content: "LONG-DEADLINE" }] })
    expect(completion.choices[0]?.message.content).toBe("still here")
    const stream = await client.chat.completions.create({ model: "sonnet", stream: true, messages: [{ role: "user", content: "LONG-DEADLINE" }] })
    let text = ""
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ""
    expect(text).toBe("still here")
  })
})
