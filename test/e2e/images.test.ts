import OpenAI from "openai"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Gateway, openaiFor, startGateway, waitForNoCliChildren } from "../support/gateway.js"
import { messagesOf, startUpstream, type Upstream } from "../support/upstream.js"

// Images by reference: fetched http URLs, allowed local paths, and the refusals (real CLI).

const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==",
  "base64"
)

let upstream: Upstream
let open: Gateway // may fetch from loopback (the test's own image server)
let strict: Gateway // defaults: private addresses refused
let images: http.Server
let imageUrl: string
let dir: string

beforeAll(async () => {
  upstream = await startUpstream()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-images-"))
  fs.writeFileSync(path.join(dir, "pixel.png"), PNG)
  images = http.createServer((request, response) => {
    if (request.url === "/pixel.png") {
      response.writeHead(200, { "content-type": "image/png" }).end(PNG)
    } else if (request.url === "/moved") {
      response.writeHead(302, { location: "/pixel.png" }).end()
    } else if (request.url === "/big.png") {
      response.writeHead(200, { "content-type": "image/png" }).end(Buffer.concat([PNG, Buffer.alloc(4096)]))
    } else {
      response.writeHead(200, { "content-type": "image/png" }).end("<html>not an image</html>")
    }
  })
  await new Promise<void>((resolve) => images.listen(0, "127.0.0.1", resolve))
  imageUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`
  open = await startGateway({
    upstreamUrl: upstream.url,
    config: { images: { allow_private: true, allowed_dirs: [dir], max_bytes: 2048 } }
  })
  strict = await startGateway({ upstreamUrl: upstream.url })
})

afterAll(async () => {
  await open?.close()
  await strict?.close()
  await upstream?.close()
  images?.closeAllConnections()
  await new Promise((resolve) => images?.close(resolve))
  fs.rmSync(dir, { recursive: true, force: true })
  expect(await waitForNoCliChildren()).toEqual([])
})

const ask = (gateway: Gateway, marker: string, url: string) =>
  openaiFor(gateway).chat.completions.create({
    model: "sonnet",
    messages: [{ role: "user", content: [{ type: "text", text: marker }, { type: "image_url", image_url: { url } }] }]
  })

const imageSent = (marker: string) => {
  const [request] = upstream.requestsFor(marker)
  const last = messagesOf(request?.body).filter((m) => m.role === "user").at(-1)
  return JSON.stringify(last?.content)
}

const refusal = async (promise: Promise<unknown>) => {
  const error = await promise.catch((e: unknown) => e)
  expect(error).toBeInstanceOf(OpenAI.BadRequestError)
  return error as InstanceType<typeof OpenAI.BadRequestError>
}

describe("images by reference", () => {
  it("fetches an http URL (following a redirect) and sends it as a base64 image block", async () => {
    upstream.on("IMG-HTTP", { kind: "message", blocks: [{ type: "text", text: "a pixel" }] })
    await ask(open, "IMG-HTTP", `${imageUrl}/moved`)
    expect(imageSent("IMG-HTTP")).toContain(`"media_type":"image/png","data":"${PNG.toString("base64")}"`)
  })

  it("reads a local path inside images.allowed_dirs", async () => {
    upstream.on("IMG-PATH", { kind: "message", blocks: [{ type: "text", text: "a pixel" }] })
    await ask(open, "IMG-PATH", path.join(dir, "pixel.png"))
    expect(imageSent("IMG-PATH")).toContain(PNG.toString("base64"))
  })

  it("refuses a path outside the allowed directories, also through ..", async () => {
    for (const file of ["/etc/hostname", path.join(dir, "..", "..", "etc", "hostname")]) {
      const error = await refusal(ask(open, "IMG-NO", file))
      expect(error.code).toBe("image_path_not_allowed")
      expect(error.param).toBe("messages[0].content[1].image_url.url")
    }
  })

  it("refuses a FIFO (or anything but a regular file) inside the allowed directories at once", async () => {
    const fifo = path.join(dir, "pipe.png")
    execFileSync("mkfifo", [fifo])
    const started = Date.now()
    const error = await refusal(ask(open, "IMG-NO", fifo))
    expect(error.code).toBe("image_path_not_allowed")
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it("refuses content that is not an image, and images over images.max_bytes", async () => {
    expect((await refusal(ask(open, "IMG-NO", `${imageUrl}/page.html`))).code).toBe("unsupported_image_type")
    expect((await refusal(ask(open, "IMG-NO", `${imageUrl}/big.png`))).code).toBe("image_too_large")
  })

  it("refuses loopback and private addresses unless images.allow_private", async () => {
    for (const url of [`${imageUrl}/pixel.png`, "http://localhost:9/x.png", "http://169.254.169.254/latest"]) {
      const error = await refusal(ask(strict, "IMG-NO", url))
      expect(error.message).toContain("private")
    }
    expect(upstream.requestsFor("IMG-NO")).toHaveLength(0)
  })
})
