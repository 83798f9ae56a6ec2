import OpenAI from "openai"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cliChildren, type Gateway, startGateway, waitForNoCliChildren, postChat } from "../support/gateway.js"

// Fault injection through a STUB CLI (test/support/stub-cli.mjs), not the real one: crashes,
// garbage output and hangs cannot be produced on demand by the real CLI.

const STUB = fileURLToPath(new URL("../support/stub-cli.mjs", import.meta.url))

let gateway: Gateway
let client: OpenAI

beforeAll(async () => {
  gateway = await startGateway({ upstreamUrl: "http://127.0.0.1:9", config: { claude: { command: STUB, timeout_seconds: 2 } } })
  client = new OpenAI({ baseURL: gateway.baseURL, apiKey: "unused", maxRetries: 0 })
})

afterAll(async () => {
  await gateway?.close()
  expect(await waitForNoCliChildren()).toEqual([])
})

const ask = (content: string) => client.chat.completions.create({ model: "sonnet", messages: [{ role: "user", content }] })

describe("faults injected with a stub CLI", () => {
  it("skips garbage and unknown lines and still answers", async () => {
    const completion = await ask("STUB-GARBAGE")
    expect(completion.choices[0]!.message.content).toBe("tok0 tok1 tok2 ")
  })

  it("answers 502 cli_exited with the stderr tail when the CLI crashes mid-turn", async () => {
    const error = await ask("STUB-CRASH").catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    const apiError = error as InstanceType<typeof OpenAI.APIError>
    expect(apiError.status).toBe(502)
    expect(apiError.code).toBe("cli_exited")
    expect(apiError.message).toContain("simulated crash")
  })

  it("turns a crash after the first streamed byte into an SSE error event", async () => {
    const stream = await client.chat.completions.create({
      model: "sonnet",
      messages: [{ role: "user", content: "STUB-CRASH" }],
      stream: true
    })
    const contents: Array<string> = []
    const error = await (async () => {
      for await (const chunk of stream) contents.push(chunk.choices[0]?.delta.content ?? "")
    })().catch((e: unknown) => e)
    expect(contents.join("")).toBe("tok0 tok1 tok2 ")
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as Error).message).toContain("exited early")
  })

  it("answers 504 after claude.timeout_seconds and kills a CLI that ignores SIGTERM", async () => {
    const started = Date.now()
    const error = await ask("STUB-HANG").catch((e: unknown) => e)
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(504)
    expect(await waitForNoCliChildren(1500)).toEqual([])
  })
})

describe("a missing CLI", () => {
  let missing: Gateway
  beforeAll(async () => {
    missing = await startGateway({ upstreamUrl: "http://127.0.0.1:9", config: { claude: { command: "/nonexistent/claude" } } })
  })
  afterAll(() => missing?.close())

  it("answers 503 cli_unavailable naming the command", async () => {
    const response = await postChat(missing, { model: "sonnet", messages: [{ role: "user", content: "hi" }] })
    expect(response.status).toBe(503)
    const body = await response.json() as { error: { code: string; message: string } }
    expect(body.error.code).toBe("cli_unavailable")
    expect(body.error.message).toContain("/nonexistent/claude")
    expect(cliChildren()).toEqual([])
  })

  it("reports degraded health with the reason", async () => {
    const response = await fetch(`${missing.url}/health`)
    expect(response.status).toBe(503)
    expect(await response.json()).toMatchObject({ status: "degraded", cli: { version: null } })
  })
})
