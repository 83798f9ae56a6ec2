import type { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Either, ParseResult, Schema } from "effect"
import * as crypto from "node:crypto"
import { InvalidRequest, PayloadTooLarge } from "../domain/errors.js"

/** Reading request bodies, with errors that name the offending field. */

const pathToParam = (prefix: string, path: ReadonlyArray<PropertyKey>) =>
  path.reduce<string>(
    (acc, key) => (typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`),
    prefix
  )

/**
 * Decode with Schema; the problem becomes a 400 naming its field (prefixed by `prefix`). Of all
 * problems the deepest is named: a union such as `string | parts[]` would otherwise blame the whole
 * `content` for one bad part (`messages[2].content[0].refusal`).
 */
export const decodeOrFail = <A, I>(schema: Schema.Schema<A, I>, input: unknown, prefix: string): Either.Either<A, InvalidRequest> =>
  Schema.decodeUnknownEither(schema, { errors: "all" })(input).pipe(
    Either.mapLeft((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)
        .reduce<ParseResult.ArrayFormatterIssue | undefined>((deepest, next) =>
          deepest === undefined || next.path.length > deepest.path.length ? next : deepest, undefined)
      const param = pathToParam(prefix, issue?.path ?? [])
      const missing = issue?.message === "is missing"
      return new InvalidRequest({
        message: missing
          ? `Missing required parameter: '${param}'.`
          : `Invalid value for '${param || "body"}': ${issue?.message ?? String(error)}`,
        param: param === "" ? null : param,
        code: missing ? "missing_required_parameter" : "invalid_value"
      })
    })
  )

/** Objects and arrays nested deeper than this are refused (validators and the CLI recurse on them). */
export const MAX_JSON_DEPTH = 64

/**
 * The body's bytes, at most `maxBytes`: a larger one (declared or sent) fails with PayloadTooLarge
 * at the limit, and the rest is never read (the 413 closes the connection).
 */
export const readBody = (request: HttpServerRequest.HttpServerRequest, maxBytes: number) =>
  Effect.async<Buffer, PayloadTooLarge | InvalidRequest>((resume) => {
    const incoming = NodeHttpServerRequest.toIncomingMessage(request)
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      incoming.off("data", onData)
      incoming.off("end", onEnd)
      incoming.off("error", onError)
      incoming.off("aborted", onError)
      incoming.pause()
      chunks.length = 0
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBytes) return void chunks.push(chunk)
      cleanup()
      resume(Effect.fail(new PayloadTooLarge({ limit: maxBytes })))
    }
    const onEnd = () => {
      const body = Buffer.concat(chunks, size)
      cleanup()
      resume(Effect.succeed(body))
    }
    const onError = () => {
      cleanup()
      resume(Effect.fail(new InvalidRequest({ message: "The request body could not be read.", param: null, code: "invalid_body" })))
    }
    if (Number(incoming.headers["content-length"] ?? 0) > maxBytes) {
      incoming.pause()
      return resume(Effect.fail(new PayloadTooLarge({ limit: maxBytes })))
    }
    incoming.on("data", onData)
    incoming.once("end", onEnd)
    incoming.once("error", onError)
    incoming.once("aborted", onError)
    return Effect.sync(cleanup)
  })

/** Where `value` nests deeper than `max` (a path of at most four steps), else undefined. Iterative: no recursion on input. */
export const tooDeep = (value: unknown, max: number): string | undefined => {
  interface Node { readonly value: unknown; readonly depth: number; readonly key: PropertyKey | undefined; readonly parent: Node | undefined }
  const stack: Array<Node> = [{ value, depth: 0, key: undefined, parent: undefined }]
  while (stack.length > 0) {
    const node = stack.pop()!
    if (typeof node.value !== "object" || node.value === null) continue
    if (node.depth >= max) {
      const keys: Array<PropertyKey> = []
      for (let at: Node | undefined = node; at?.key !== undefined; at = at.parent) keys.unshift(at.key)
      return pathToParam("", keys.slice(0, 4))
    }
    const entries: Array<readonly [PropertyKey, unknown]> = Array.isArray(node.value) ? node.value.map((v, i) => [i, v] as const) : Object.entries(node.value)
    for (const [key, child] of entries) {
      if (typeof child === "object" && child !== null) stack.push({ value: child, depth: node.depth + 1, key, parent: node })
    }
  }
  return undefined
}

/**
 * The body as JSON: at most `maxBytes` (else 413), valid JSON (else 400 `invalid_json`), nested at
 * most MAX_JSON_DEPTH deep (else 400 naming the field).
 */
export const readJson = (request: HttpServerRequest.HttpServerRequest, maxBytes: number) =>
  Effect.flatMap(readBody(request, maxBytes), (bytes) => {
    let body: unknown
    try {
      body = JSON.parse(bytes.toString("utf8"))
    } catch {
      return Effect.fail(new InvalidRequest({
        message: "We could not parse the JSON body of your request: it must be a JSON object.",
        param: null,
        code: "invalid_json"
      }))
    }
    const deep = tooDeep(body, MAX_JSON_DEPTH)
    return deep === undefined
      ? Effect.succeed(body)
      : Effect.fail(new InvalidRequest({
        message: `Invalid value for '${deep || "body"}': JSON nested more than ${MAX_JSON_DEPTH} levels deep is not accepted.`,
        param: deep || null,
        code: "nesting_too_deep"
      }))
  })

/** The API key a request offers (`Authorization: Bearer <key>` or `x-api-key`). */
export const offeredKey = (headers: Readonly<Record<string, string | undefined>>): string | undefined =>
  /^Bearer\s+(.+)$/i.exec(headers["authorization"] ?? "")?.[1] ?? headers["x-api-key"]

/**
 * Whose conversations a request may see: a hash of its checked API key when keys are configured,
 * else everyone's ("").
 */
export const ownerOfKey = (key: string | undefined, keysConfigured: boolean): string =>
  keysConfigured ? crypto.createHash("sha256").update(key ?? "").digest("hex").slice(0, 32) : ""

/** A JSON object body decoded with `schema`. */
export const decodeBody = <A, I>(schema: Schema.Schema<A, I>, body: unknown): Either.Either<A, InvalidRequest> =>
  typeof body === "object" && body !== null && !Array.isArray(body)
    ? decodeOrFail(schema, body, "")
    : Either.left(new InvalidRequest({ message: "The request body must be a JSON object.", param: null, code: "invalid_json" }))
