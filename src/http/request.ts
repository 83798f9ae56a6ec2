import { HttpIncomingMessage } from "@effect/platform"
import type { HttpServerRequest } from "@effect/platform"
import { Effect, Either, Option, ParseResult, Schema } from "effect"
import * as crypto from "node:crypto"
import { InvalidRequest } from "../domain/errors.js"

/** Reading request bodies, with errors that name the offending field. */

const pathToParam = (prefix: string, path: ReadonlyArray<PropertyKey>) =>
  path.reduce<string>(
    (acc, key) => (typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`),
    prefix
  )

/** Decode with Schema; the first problem becomes a 400 naming its field (prefixed by `prefix`). */
export const decodeOrFail = <A, I>(schema: Schema.Schema<A, I>, input: unknown, prefix: string): Either.Either<A, InvalidRequest> =>
  Schema.decodeUnknownEither(schema, { errors: "first" })(input).pipe(
    Either.mapLeft((error) => {
      const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
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

/** The body as JSON (at most `maxBytes`); anything else is a 400 `invalid_json`. */
export const readJson = (request: HttpServerRequest.HttpServerRequest, maxBytes: number) =>
  request.json.pipe(
    HttpIncomingMessage.withMaxBodySize(Option.some(maxBytes)),
    Effect.mapError(() =>
      new InvalidRequest({
        message: `We could not parse the JSON body of your request: it must be a JSON object of at most ${maxBytes} bytes.`,
        param: null,
        code: "invalid_json"
      })
    )
  )

/** The API key a request offers (`Authorization: Bearer <key>` or `x-api-key`). */
export const offeredKey = (headers: Readonly<Record<string, string | undefined>>): string | undefined =>
  /^Bearer\s+(.+)$/i.exec(headers["authorization"] ?? "")?.[1] ?? headers["x-api-key"]

/**
 * Whose conversations a request may see: a hash of its API key when keys are configured (the key
 * has been checked by then), else everyone's ("").
 */
export const ownerOf = (request: HttpServerRequest.HttpServerRequest, keysConfigured: boolean): string =>
  ownerOfKey(offeredKey(request.headers), keysConfigured)

/** The owner of what a checked API key creates (see `ownerOf`). */
export const ownerOfKey = (key: string | undefined, keysConfigured: boolean): string =>
  keysConfigured ? crypto.createHash("sha256").update(key ?? "").digest("hex").slice(0, 32) : ""

/** A JSON object body decoded with `schema`. */
export const decodeBody = <A, I>(schema: Schema.Schema<A, I>, body: unknown): Either.Either<A, InvalidRequest> =>
  typeof body === "object" && body !== null && !Array.isArray(body)
    ? decodeOrFail(schema, body, "")
    : Either.left(new InvalidRequest({ message: "The request body must be a JSON object.", param: null, code: "invalid_json" }))
