import { Validator } from "@seriousme/openapi-schema-validator"
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
        const ok = record(responses["200"] ?? responses["201"])
        expect(Object.keys(record(ok.content)), `${method} ${path}`).toContain("application/json")
        // A session ticket is asked for with an empty POST.
        if (method === "post" && !path.endsWith("/ticket")) expect(operation.requestBody, `${method} ${path}`).toBeDefined()
        if (path === "/health") {
          expect(operation.security).toEqual([])
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
})
