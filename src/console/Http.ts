import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import * as fs from "node:fs"
import { GatewayConfig } from "../config/GatewayConfig.js"

/**
 * The browser console at /console: a static page (HTML, one JS module, CSS) that drives a session
 * over /v1/sessions and its WebSocket. The page carries no data, so it loads without an API key
 * (the server's middleware lets these paths through); every call it makes sends the key the user
 * typed. The files ship as they are: `npm run build` copies src/console/assets to dist/console/assets.
 */

/** The paths this module serves, all without an API key. */
export const CONSOLE_PATHS: ReadonlySet<string> = new Set(["/console", "/console/console.js", "/console/console.css"])

/**
 * Only the page's own script and style; no inline code, no framework, nothing from elsewhere.
 * `connect-src 'self'` covers the same-origin WebSocket (ws/wss) in CSP level 3 browsers.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data: blob:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join("; ")

const headers = {
  "content-security-policy": CONSOLE_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-cache"
}

/**
 * Next to this module (src/ under vite-node, dist/ after `npm run build`), else the sources' copy
 * (a tsc build elsewhere, e.g. the benchmarks' build/src/console/).
 */
const assetDirs = [new URL("./assets/", import.meta.url), new URL("../../../src/console/assets/", import.meta.url)]
const asset = (name: string) => {
  const dir = assetDirs.find((candidate) => fs.existsSync(new URL(name, candidate))) ?? assetDirs[0]!
  return fs.readFileSync(new URL(name, dir), "utf8")
}

/** GET /console and its two assets, read once when the server starts; not served when sessions are off. */
export const ConsoleRoutes = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    if (!config.sessions.enabled) return
    const files = yield* Effect.try({
      try: () => ({ html: asset("index.html"), js: asset("console.js"), css: asset("console.css") }),
      catch: (cause) => new Error(`the console's files are missing (src/console/assets, dist/console/assets): ${String(cause)}`)
    }).pipe(Effect.orDie)
    const serve = (body: string, contentType: string) =>
      Effect.succeed(HttpServerResponse.text(body, { contentType, headers }))
    yield* router.get("/console", serve(files.html, "text/html; charset=utf-8"))
    yield* router.get("/console/console.js", serve(files.js, "text/javascript; charset=utf-8"))
    yield* router.get("/console/console.css", serve(files.css, "text/css; charset=utf-8"))
  })
)
