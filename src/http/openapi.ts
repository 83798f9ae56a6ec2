/**
 * Completes the OpenAPI document HttpApi derives (an `OpenApi.Transform` on GatewayApi) with what
 * the handlers do outside the declared schemas: API keys, the error envelopes of the one error
 * mapping per dialect, and SSE bodies. The result is checked by a maintained validator in
 * test/e2e/openapi.test.ts.
 */

type Json = Record<string, unknown>

const isRecord = (u: unknown): u is Json => typeof u === "object" && u !== null && !Array.isArray(u)

/** Effect marks `Schema.Unknown` and friends with a fixed `$id`; repeated, it makes the document invalid. */
const withoutBuiltinIds = (node: unknown): unknown => {
  if (Array.isArray(node)) return node.map(withoutBuiltinIds)
  if (!isRecord(node)) return node
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => !(key === "$id" && typeof value === "string" && value.startsWith("/schemas/")))
      .map(([key, value]) => [key, withoutBuiltinIds(value)])
  )
}

const OpenAIError = {
  type: "object",
  description: "OpenAI error envelope (every route but the Anthropic ones).",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["message", "type", "param", "code"],
      properties: {
        message: { type: "string" },
        type: { type: "string", description: "invalid_request_error, rate_limit_error, upstream_error, timeout_error, …" },
        param: { type: ["string", "null"], description: "The offending field, e.g. messages[2].content[0].type" },
        code: { type: ["string", "null"] }
      }
    }
  }
}

const AnthropicError = {
  type: "object",
  description: "Anthropic error envelope (/v1/messages routes).",
  required: ["type", "error"],
  properties: {
    type: { type: "string", enum: ["error"] },
    error: {
      type: "object",
      required: ["type", "message"],
      properties: { type: { type: "string" }, message: { type: "string" } }
    }
  }
}

const retryAfter = {
  "retry-after": { description: "Seconds to wait before retrying.", schema: { type: "string" } }
}

const errorResponses = (envelope: string, streams: boolean): Json => {
  const content = { "application/json": { schema: { $ref: `#/components/schemas/${envelope}` } } }
  return {
    "400": { description: "Invalid request; `param` names the field.", content },
    "401": { description: "Missing or unknown API key (when the gateway has API keys).", content },
    ...(streams
      ? {
        "429": { description: "Every session is busy and the queue is full, or upstream rate limits.", headers: retryAfter, content },
        "503": { description: "Upstream overloaded, the CLI unavailable, or the gateway shutting down.", headers: retryAfter, content }
      }
      : {}),
    default: { description: "Any other failure, in the same envelope.", content }
  }
}

/**
 * A streaming endpoint declares its SSE body as a plain string beside its JSON success; HttpApi
 * merges both into one JSON `anyOf`. Split it back out as `text/event-stream`.
 */
const splitEventStream = (ok: Json): boolean => {
  const content = ok.content
  if (!isRecord(content)) return false
  const json = content["application/json"]
  const schema = isRecord(json) ? json.schema : undefined
  const variants = isRecord(schema) && Array.isArray(schema.anyOf) ? schema.anyOf : []
  const isText = (variant: unknown) => isRecord(variant) && variant.type === "string" && Object.keys(variant).length === 1
  if (!variants.some(isText)) return false
  const rest = variants.filter((variant) => !isText(variant))
  ok.content = {
    "application/json": { schema: rest.length === 1 ? rest[0] : { anyOf: rest } },
    "text/event-stream": {
      schema: { type: "string", description: "Server-sent events (with `stream: true`); an error after the first byte is an error event." }
    }
  }
  ok.description = "The response, or its stream of server-sent events."
  return true
}

export const completeOpenApi = (spec: Record<string, unknown>): Record<string, unknown> => {
  const doc = withoutBuiltinIds(spec) as Json
  const components = isRecord(doc.components) ? doc.components : {}
  const schemas = isRecord(components.schemas) ? components.schemas : {}
  // Decoding errors never reach a client in HttpApi's shape: the handlers answer in the dialect's envelope.
  delete schemas.HttpApiDecodeError
  delete schemas.Issue
  delete schemas.PropertyKey
  doc.components = {
    ...components,
    schemas: { ...schemas, OpenAIError, AnthropicError },
    securitySchemes: {
      ...(isRecord(components.securitySchemes) ? components.securitySchemes : {}),
      bearer: { type: "http", scheme: "bearer", description: "A key of server.api_keys (only when some are configured)." },
      apiKey: { type: "apiKey", in: "header", name: "x-api-key", description: "The same key, Anthropic style." }
    }
  }
  doc.security = [{ bearer: [] }, { apiKey: [] }]
  const paths = isRecord(doc.paths) ? doc.paths : {}
  for (const [path, operations] of Object.entries(paths)) {
    if (!isRecord(operations)) continue
    for (const operation of Object.values(operations)) {
      if (!isRecord(operation)) continue
      const responses = isRecord(operation.responses) ? operation.responses : {}
      const ok = responses["200"]
      const streams = isRecord(ok) && splitEventStream(ok)
      // /health answers without a key; an empty list elsewhere would switch the global security off.
      if (path === "/health") {
        operation.security = []
        delete responses["400"]
        continue
      }
      delete operation.security
      Object.assign(responses, errorResponses(path.startsWith("/v1/messages") ? "AnthropicError" : "OpenAIError", streams))
    }
  }
  return doc
}
