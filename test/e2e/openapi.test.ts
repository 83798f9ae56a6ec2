import { Validator } from "@seriousme/openapi-schema-validator"
import { chromium } from "playwright-core"
import { describe, expect, it } from "vitest"
import type { Gateway } from "../support/gateway.js"
import { useGateway } from "../support/e2e.js"

// The served OpenAPI document, checked by a maintained validator (OpenAPI 3.x JSON Schemas), and
// the browsable docs at /docs.

let gateway: Gateway

useGateway({}, (started) => ({ gateway } = started))

type Json = Record<string, unknown>
const record = (u: unknown): Json => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) throw new Error(`expected an object, got ${JSON.stringify(u)}`)
  return u as Json
}

const fetchSpec = async () => {
  const response = await fetch(`${gateway.url}/openapi.json`)
  expect(response.status).toBe(200)
  return record(await response.json())
}

describe("/openapi.json", () => {
  it("is a valid OpenAPI document", async () => {
    const validator = new Validator()
    const result = await validator.validate(await fetchSpec())
    expect(result.errors).toBeUndefined()
    expect(result.valid).toBe(true)
    expect(validator.version).toMatch(/^3\./)
  })

  it("describes every route with its schemas, the SSE body, the error envelope and the API key", async () => {
    const spec = await fetchSpec()
    const paths = record(spec.paths)
    expect(Object.keys(paths).sort()).toEqual(expect.arrayContaining([
      "/health",
      "/v1/chat/completions",
      "/v1/conversations",
      "/v1/conversations/{id}",
      "/v1/models",
      "/v1/models/{id}"
    ]))
    for (const [path, operations] of Object.entries(paths)) {
      for (const [method, raw] of Object.entries(record(operations))) {
        const operation = record(raw)
        const responses = record(operation.responses)
        // Creating a conversation or a session answers 201, as the handlers do.
        const creates = method === "post" && (path === "/v1/conversations" || path === "/v1/sessions" || path.endsWith("/ticket"))
        const success = creates ? "201" : "200"
        expect(responses, `${method} ${path}`).not.toHaveProperty(creates ? "200" : "201")
        const ok = record(responses[success])
        // /metrics is Prometheus text; every other route answers JSON (SSE besides on some).
        expect(Object.keys(record(ok.content)), `${method} ${path}`).toContain(path === "/metrics" ? "text/plain; version=0.0.4" : "application/json")
        // A session ticket is asked for with an empty POST.
        if (method === "post" && !path.endsWith("/ticket")) expect(operation.requestBody, `${method} ${path}`).toBeDefined()
        if (path === "/health") {
          expect(operation.security).toEqual([])
          // The same report while the gateway cannot serve turns.
          expect(record(responses["503"]).content).toEqual(ok.content)
          continue
        }
        // No per-operation override: the document-wide key requirement applies.
        expect(operation.security).toBeUndefined()
        // The envelope of the route's dialect (http/errors.ts): Anthropic's on /v1/messages, OpenAI's elsewhere.
        const envelope = path.startsWith("/v1/messages") ? "AnthropicError" : "OpenAIError"
        for (const status of ["400", "401", "default"]) {
          expect(JSON.stringify(responses[status]), `${method} ${path} ${status}`).toContain(`#/components/schemas/${envelope}`)
        }
      }
    }
    const chat = record(record(record(paths["/v1/chat/completions"]).post).responses)
    expect(Object.keys(record(record(chat["200"]).content))).toEqual(["application/json", "text/event-stream"])
    expect(record(chat["429"]).headers).toHaveProperty("retry-after")
    const components = record(spec.components)
    expect(record(components.securitySchemes)).toMatchObject({
      bearer: { type: "http", scheme: "bearer" },
      apiKey: { type: "apiKey", in: "header", name: "x-api-key" }
    })
    expect(spec.security).toEqual([{ bearer: [] }, { apiKey: [] }])
    expect(record(components.schemas)).toHaveProperty("OpenAIError")
    expect(record(components.schemas)).toHaveProperty("AnthropicError")
  })
})

describe("/docs", () => {
  it("serves the API reference page for browsers, built from the same document", async () => {
    const response = await fetch(`${gateway.url}/docs`)
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toContain("text/html")
    const html = await response.text()
    expect(html).toContain("<html")
    // Scalar embeds the document: the page names the gateway's routes.
    expect(html).toContain("/v1/chat/completions")
    expect(html).toContain("claude-code-api")
  })

  it("renders in a real browser (Chromium): the reference lists the routes, with no script errors", async () => {
    const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: ["--no-sandbox"] })
    try {
      const page = await browser.newPage()
      const errors: Array<string> = []
      page.on("pageerror", (error) => errors.push(error.message))
      // Scalar is embedded in the page: no request may leave the gateway.
      const outside: Array<string> = []
      page.on("request", (request) => {
        if (!request.url().startsWith(gateway.url) && !request.url().startsWith("data:")) outside.push(request.url())
      })
      await page.goto(`${gateway.url}/docs`)
      // Rendered by Scalar's script from the embedded document, not present in the served HTML as text.
      await page.getByText("/v1/chat/completions").first().waitFor({ timeout: 30_000 })
      await page.getByText("/v1/messages").first().waitFor()
      expect(await page.locator("body").innerText()).toContain("/v1/conversations")
      expect(errors).toEqual([])
      expect(outside).toEqual([])
    } finally {
      await browser.close()
    }
  }, 60_000)
})
