import { Effect } from "effect"
import ipaddr from "ipaddr.js"
import * as dns from "node:dns"
import { constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as https from "node:https"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { InputBlock } from "../domain/Turn.js"
import { InvalidRequest } from "../domain/errors.js"
import { GatewayConfig } from "../config/GatewayConfig.js"

/**
 * Images given by reference: http(s) URLs fetched by the gateway (time and size limits, checked
 * content, no private addresses unless allowed) and local files inside the allowed directories.
 * Both become base64 image blocks for the CLI.
 */

type MediaType = "image/png" | "image/jpeg" | "image/gif" | "image/webp"

/** The media type by magic bytes: a declared content type is not trusted. */
export const sniff = (bytes: Uint8Array): MediaType | undefined => {
  const at = (i: number, ...values: Array<number>) => values.every((v, j) => bytes[i + j] === v)
  if (at(0, 0x89, 0x50, 0x4e, 0x47)) return "image/png"
  if (at(0, 0xff, 0xd8, 0xff)) return "image/jpeg"
  if (at(0, 0x47, 0x49, 0x46, 0x38)) return "image/gif"
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return "image/webp"
  return undefined
}

/**
 * Only globally routable unicast addresses are fetched. Classified by ipaddr.js, IPv4-mapped IPv6
 * (`::ffff:7f00:1`) unwrapped first; every other range is refused: loopback, private, link-local,
 * carrier-grade NAT, benchmarking (198.18.0.0/15), reserved, multicast, and the IPv6 ranges that
 * embed IPv4 addresses (NAT64 64:ff9b::/96, 6to4, Teredo).
 */
export const isPrivateAddress = (address: string): boolean => {
  const literal = address.replace(/^\[|\]$/g, "")
  if (!ipaddr.isValid(literal)) return true
  return ipaddr.process(literal).range() !== "unicast"
}

/** What a client learns of a failed fetch: never a status, an error code or a port's state. */
const UNFETCHABLE = "it could not be fetched"
const NOT_PUBLIC = "its address is private or reserved"

const refuse = (param: string, why: string, code = "invalid_image_url") =>
  new InvalidRequest({ message: `Cannot use the image at '${param}': ${why}.`, param, code })

class Blocked extends Error {}

/** What the images of one request may still use together (images.max_total_bytes). */
export interface ImageBudget {
  remaining: number
}

export class ImageFetcher extends Effect.Service<ImageFetcher>()("ImageFetcher", {
  effect: Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const { max_bytes, fetch_timeout_seconds, allow_private, allowed_dirs, max_per_request, max_total_bytes, request_timeout_seconds } =
      config.images

    // The address check sits in the connection's own lookup, so a name cannot resolve to a public
    // address for the check and a private one for the connection. IP literals skip the lookup: they
    // are checked in `download`, on every hop.
    const lookup: net.LookupFunction = (hostname, options, callback) =>
      dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
        if (error) return callback(error, "", 4)
        const list = addresses as Array<dns.LookupAddress>
        if (!allow_private && list.some((a) => isPrivateAddress(a.address))) return callback(new Blocked(), "", 4)
        if (options.all) return (callback as unknown as (e: null, a: Array<dns.LookupAddress>) => void)(null, list)
        const first = list[0]!
        callback(null, first.address, first.family)
      })

    const tooLarge = (param: string) => refuse(param, `it is larger than ${max_bytes} bytes`, "image_too_large")
    const overBudget = (param: string) =>
      refuse(param, `the images of this request exceed ${max_total_bytes} bytes together (images.max_total_bytes)`, "images_too_large")

    /** Take `size` more bytes from the image's and the request's limits, or say which is exceeded. */
    const spend = (budget: ImageBudget, size: number, total: number, param: string) => {
      if (total > max_bytes) return tooLarge(param)
      budget.remaining -= size
      return budget.remaining < 0 ? overBudget(param) : undefined
    }

    const download = (url: URL, param: string, redirects: number, budget: ImageBudget, signal: AbortSignal): Promise<Uint8Array> =>
      new Promise((resolve, reject) => {
        const host = url.hostname.replace(/^\[|\]$/g, "")
        if (!allow_private && net.isIP(host) !== 0 && isPrivateAddress(host)) return reject(refuse(param, NOT_PUBLIC))
        const client = url.protocol === "https:" ? https : http
        const options: http.RequestOptions = { lookup, timeout: fetch_timeout_seconds * 1000, signal }
        const request = client.get(url, options, (response) => {
          const status = response.statusCode ?? 0
          const location = response.headers.location
          if (status >= 300 && status < 400 && location !== undefined) {
            response.destroy()
            if (redirects >= 3) return reject(refuse(param, "too many redirects"))
            const next = URL.canParse(location, url.href) ? new URL(location, url) : undefined
            if (next === undefined || (next.protocol !== "http:" && next.protocol !== "https:")) return reject(refuse(param, UNFETCHABLE))
            return download(next, param, redirects + 1, budget, signal).then(resolve, reject)
          }
          if (status !== 200) {
            response.destroy()
            return reject(refuse(param, UNFETCHABLE))
          }
          const chunks: Array<Buffer> = []
          let size = 0
          response.on("data", (chunk: Buffer) => {
            size += chunk.length
            const exceeded = spend(budget, chunk.length, size, param)
            if (exceeded !== undefined) {
              request.destroy()
              reject(exceeded)
            } else chunks.push(chunk)
          })
          response.on("end", () => resolve(Buffer.concat(chunks)))
          response.on("error", () => reject(refuse(param, UNFETCHABLE)))
        })
        request.on("timeout", () => request.destroy())
        request.on("error", (error) => reject(error instanceof Blocked ? refuse(param, NOT_PUBLIC) : refuse(param, UNFETCHABLE)))
      })

    const readLocal = async (file: string, param: string, budget: ImageBudget): Promise<Uint8Array> => {
      const real = await fs.realpath(file).catch(() => undefined)
      const roots = await Promise.all(allowed_dirs.map((dir) => fs.realpath(dir).catch(() => undefined)))
      const inside = real !== undefined &&
        roots.some((root) => root !== undefined && (real === root || real.startsWith(root + path.sep)))
      if (!inside) throw refuse(param, "local files are only read inside images.allowed_dirs", "image_path_not_allowed")
      // Non-blocking open: a FIFO (or device) must not hold the request; only regular files are read.
      const handle = await fs.open(real, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
      try {
        const stat = await handle.stat()
        if (!stat.isFile()) throw refuse(param, "only regular files are read", "image_path_not_allowed")
        const exceeded = spend(budget, stat.size, stat.size, param)
        if (exceeded !== undefined) throw exceeded
        return await handle.readFile()
      } finally {
        await handle.close()
      }
    }

    /** Load an image by URL (http, https, file) or absolute path into a base64 image block, within `images.fetch_timeout_seconds`. */
    const load = (reference: string, param: string, budget: ImageBudget = { remaining: max_total_bytes }): Effect.Effect<InputBlock, InvalidRequest> =>
      Effect.tryPromise({
        try: async (signal) => {
          const local = reference.startsWith("file:") ? fileURLToPath(reference) : path.isAbsolute(reference) ? reference : undefined
          let url: URL | undefined
          if (local === undefined) {
            url = URL.canParse(reference) ? new URL(reference) : undefined
            if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
              throw refuse(param, "use a data URL, an http(s) URL or an absolute path", "unsupported_image_url")
            }
          }
          const bytes = local !== undefined ? await readLocal(local, param, budget) : await download(url!, param, 0, budget, signal)
          const mediaType = sniff(bytes)
          if (!mediaType) throw refuse(param, "it is not a PNG, JPEG, GIF or WebP image", "unsupported_image_type")
          return { type: "image", source: { type: "base64", media_type: mediaType, data: Buffer.from(bytes).toString("base64") } } as const
        },
        catch: (error) => (error instanceof InvalidRequest ? error : refuse(param, local(reference) ? "it could not be read" : UNFETCHABLE))
      }).pipe(
        // A total deadline per image (the socket timeout above only bounds silence between bytes).
        Effect.timeoutFail({
          duration: `${fetch_timeout_seconds} seconds`,
          onTimeout: () => refuse(param, `${UNFETCHABLE} within images.fetch_timeout_seconds (${fetch_timeout_seconds} s)`, "image_fetch_timeout")
        }),
        // Not the URL itself (it may carry a token): where in the request the image was.
        Effect.withSpan("gateway.image.fetch", { attributes: { "gateway.image.param": param } })
      )

    /**
     * The images of one request, resolved in `blocks`: at most images.max_per_request of them (checked
     * before any is fetched), images.max_total_bytes together, all within images.request_timeout_seconds.
     * Interrupting it (client gone) aborts every fetch.
     */
    const resolveAll = (blocks: ReadonlyArray<InputBlock | ImageReference>): Effect.Effect<Array<InputBlock>, InvalidRequest> =>
      Effect.suspend(() => {
        const references = blocks.filter((block): block is ImageReference => block.type === "image_ref")
        // Most requests bring none: no fibers, no timer.
        if (references.length === 0) return Effect.succeed(blocks.filter((block): block is InputBlock => block.type !== "image_ref"))
        if (references.length > max_per_request) {
          const param = references[max_per_request]!.param
          return Effect.fail(refuse(param, `at most ${max_per_request} images by URL or path per request (images.max_per_request)`, "too_many_images"))
        }
        const budget: ImageBudget = { remaining: max_total_bytes }
        return Effect.forEach(blocks, (block) => (block.type === "image_ref" ? load(block.url, block.param, budget) : Effect.succeed(block)), {
          concurrency: 4
        }).pipe(
          Effect.timeoutFail({
            duration: `${request_timeout_seconds} seconds`,
            onTimeout: () =>
              refuse(references[0]?.param ?? "messages", `the images of this request could not be fetched within images.request_timeout_seconds (${request_timeout_seconds} s)`, "image_fetch_timeout")
          })
        )
      })

    return { load, resolveAll } as const
  })
}) {}

/** An image given by URL or path, and the field it came from. */
export interface ImageReference {
  readonly type: "image_ref"
  readonly url: string
  readonly param: string
}

const local = (reference: string) => reference.startsWith("file:") || path.isAbsolute(reference)
