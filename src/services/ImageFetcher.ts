import { Effect } from "effect"
import * as dns from "node:dns"
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

/** Loopback, private, link-local, unspecified and carrier-grade NAT addresses. */
export const isPrivateAddress = (address: string): boolean => {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1]
  const ip = mapped ?? address
  if (net.isIPv4(ip)) {
    const [a = 0, b = 0] = ip.split(".").map(Number)
    return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127)
  }
  const lower = ip.toLowerCase()
  return lower === "::" || lower === "::1" || /^f[cd]/.test(lower) || /^fe[89ab]/.test(lower)
}

const refuse = (param: string, why: string, code = "invalid_image_url") =>
  new InvalidRequest({ message: `Cannot use the image at '${param}': ${why}.`, param, code })

export class ImageFetcher extends Effect.Service<ImageFetcher>()("ImageFetcher", {
  effect: Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const { max_bytes, fetch_timeout_seconds, allow_private, allowed_dirs } = config.images

    // The address check sits in the connection's own lookup, so a name cannot resolve to a public
    // address for the check and a private one for the connection.
    const lookup: net.LookupFunction = (hostname, options, callback) =>
      dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
        if (error) return callback(error, "", 4)
        const list = addresses as Array<dns.LookupAddress>
        const blocked = list.find((a) => !allow_private && isPrivateAddress(a.address))
        if (blocked) return callback(new Error(`address ${blocked.address} is private`), "", 4)
        if (options.all) return (callback as unknown as (e: null, a: Array<dns.LookupAddress>) => void)(null, list)
        const first = list[0]!
        callback(null, first.address, first.family)
      })

    const download = (url: URL, param: string, redirects: number): Promise<Uint8Array> =>
      new Promise((resolve, reject) => {
        if (!allow_private && net.isIP(url.hostname.replace(/^\[|\]$/g, "")) && isPrivateAddress(url.hostname.replace(/^\[|\]$/g, ""))) {
          return reject(refuse(param, `address ${url.hostname} is private`))
        }
        const client = url.protocol === "https:" ? https : http
        const request = client.get(url, { lookup, timeout: fetch_timeout_seconds * 1000 }, (response) => {
          const status = response.statusCode ?? 0
          const location = response.headers.location
          if (status >= 300 && status < 400 && location !== undefined) {
            response.resume()
            if (redirects >= 3) return reject(refuse(param, "too many redirects"))
            return download(new URL(location, url), param, redirects + 1).then(resolve, reject)
          }
          if (status !== 200) {
            response.resume()
            return reject(refuse(param, `the server answered ${status}`))
          }
          const chunks: Array<Buffer> = []
          let size = 0
          response.on("data", (chunk: Buffer) => {
            size += chunk.length
            if (size > max_bytes) {
              request.destroy()
              reject(refuse(param, `it is larger than ${max_bytes} bytes`, "image_too_large"))
            } else chunks.push(chunk)
          })
          response.on("end", () => resolve(Buffer.concat(chunks)))
          response.on("error", (error) => reject(refuse(param, error.message)))
        })
        request.on("timeout", () => request.destroy(new Error(`no answer within ${fetch_timeout_seconds} s`)))
        request.on("error", (error) => reject(error instanceof InvalidRequest ? error : refuse(param, error.message)))
      })

    const readLocal = async (file: string, param: string): Promise<Uint8Array> => {
      const real = await fs.realpath(file).catch(() => undefined)
      const roots = await Promise.all(allowed_dirs.map((dir) => fs.realpath(dir).catch(() => undefined)))
      const inside = real !== undefined &&
        roots.some((root) => root !== undefined && (real === root || real.startsWith(root + path.sep)))
      if (!inside) throw refuse(param, "local files are only read inside images.allowed_dirs", "image_path_not_allowed")
      const stat = await fs.stat(real)
      if (stat.size > max_bytes) throw refuse(param, `it is larger than ${max_bytes} bytes`, "image_too_large")
      return fs.readFile(real)
    }

    /** Load an image by URL (http, https, file) or absolute path into a base64 image block. */
    const load = (reference: string, param: string): Effect.Effect<InputBlock, InvalidRequest> =>
      Effect.tryPromise({
        try: async () => {
          const local = reference.startsWith("file:") ? fileURLToPath(reference) : path.isAbsolute(reference) ? reference : undefined
          let url: URL | undefined
          if (local === undefined) {
            url = URL.canParse(reference) ? new URL(reference) : undefined
            if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
              throw refuse(param, "use a data URL, an http(s) URL or an absolute path", "unsupported_image_url")
            }
          }
          const bytes = local !== undefined ? await readLocal(local, param) : await download(url!, param, 0)
          const mediaType = sniff(bytes)
          if (!mediaType) throw refuse(param, "it is not a PNG, JPEG, GIF or WebP image", "unsupported_image_type")
          return { type: "image", source: { type: "base64", media_type: mediaType, data: Buffer.from(bytes).toString("base64") } } as const
        },
        catch: (error) => (error instanceof InvalidRequest ? error : refuse(param, String(error)))
      })

    return { load } as const
  })
}) {}
