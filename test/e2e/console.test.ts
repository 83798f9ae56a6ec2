import * as fs from "node:fs"
import * as path from "node:path"
import { type Browser, chromium, type Locator, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Gateway, startGateway } from "../support/gateway.js"
import { useGateway } from "../support/e2e.js"
import { messagesOf, type Upstream } from "../support/upstream.js"

// The browser console at /console, in a real browser: Playwright driving Debian's Chromium (`.ci/run`
// installs it), against the real gateway, the real CLI and the scripted upstream. One user's flow end
// to end: key, new session, a tool use approved (the file is written), one denied (it is not).

const KEY = "console-test-key"
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"
const WAIT = 30_000

let upstream: Upstream
let gateway: Gateway
let browser: Browser

useGateway({ config: { server: { api_keys: [KEY] } } }, (started) => ({ upstream, gateway } = started))

beforeAll(async () => {
  // CI runs as root, where Chromium refuses its sandbox.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] })
})

afterAll(async () => {
  await browser?.close()
})

/** A page on the console that records every script error, console error and CSP violation. */
const openConsole = async () => {
  const context = await browser.newContext()
  const page = await context.newPage()
  const problems: Array<string> = []
  page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`))
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`)
  })
  page.on("dialog", (dialog) => void dialog.accept())
  const response = await page.goto(`${gateway.url}/console`)
  return { page, response, problems, close: () => context.close() }
}

const waitForText = (locator: Locator, text: string | RegExp) =>
  locator.filter({ hasText: text }).first().waitFor({ timeout: WAIT })

const stateIs = (page: Page, state: string) => waitForText(page.locator("#session-state"), new RegExp(`^${state}$`))

describe("/console", () => {
  it("loads without an API key, under a CSP, while the data routes need the key", async () => {
    const page = await fetch(`${gateway.url}/console`)
    expect(page.status).toBe(200)
    expect(page.headers.get("content-type")).toMatch(/^text\/html/)
    const csp = page.headers.get("content-security-policy") ?? ""
    expect(csp).toContain("default-src 'none'")
    expect(csp).toContain("script-src 'self'")
    expect(page.headers.get("x-content-type-options")).toBe("nosniff")
    const html = await page.text()
    // No inline script: everything the page runs comes from its one module.
    expect(html.match(/<script[^>]*>/g)).toEqual(['<script type="module" src="console/console.js">'])
    const script = await fetch(`${gateway.url}/console/console.js`)
    expect(script.status).toBe(200)
    expect(script.headers.get("content-type")).toMatch(/^text\/javascript/)
    expect(await script.text()).not.toContain("innerHTML")
    expect((await fetch(`${gateway.url}/console/console.css`)).status).toBe(200)
    // Only the console's own files are open; the sessions API is not.
    expect((await fetch(`${gateway.url}/console/other.js`)).status).toBe(401)
    expect((await fetch(`${gateway.url}/v1/sessions`)).status).toBe(401)
  })

  it("is not served when sessions are off", async () => {
    const off = await startGateway({ upstreamUrl: upstream.url, config: { sessions: { enabled: false } } })
    try {
      expect((await fetch(`${off.url}/console`)).status).toBe(404)
      expect((await fetch(`${off.url}/console/console.js`)).status).toBe(404)
    } finally {
      await off.close()
    }
  })

  it("creates a session, approves one tool use and denies another", async () => {
    const workspace = path.join(gateway.home, "workspace")
    const approved = path.join(workspace, "approved.txt")
    const denied = path.join(workspace, "denied.txt")
    upstream.on("CONSOLE-WRITE", {
      kind: "message",
      blocks: [
        { type: "text", text: "I will write the file." },
        { type: "tool_use", id: "toolu_console_write", name: "Write", input: { file_path: approved, content: "written from the console\n" } }
      ]
    })
    // After the tool: the last user message is the tool_result, which names the tool use's id.
    // The answer carries markup, which the page must show as text.
    upstream.on("toolu_console_write", {
      kind: "message",
      blocks: [{ type: "text", text: ["The file ", "is written. ", "<b id=\"injected\">bold</b>"] }]
    })
    upstream.on("CONSOLE-DENY", {
      kind: "message",
      blocks: [{
        type: "tool_use",
        id: "toolu_console_deny",
        name: "Bash",
        input: { command: `node -e "require('fs').writeFileSync('${denied}', 'x')"`, description: "write denied.txt" }
      }]
    })
    upstream.on("toolu_console_deny", { kind: "message", blocks: [{ type: "text", text: "Understood, I did not write it." }] })

    const { page, response, problems, close } = await openConsole()
    try {
      expect(response?.status()).toBe(200)
      await page.fill("#api-key", KEY)
      await page.click("#key-save")
      await waitForText(page.locator("#key-status"), "key set")
      // The key is kept for the tab only, and the field is cleared.
      expect(await page.evaluate("Object.values(sessionStorage)")).toEqual([KEY])
      expect(await page.inputValue("#api-key")).toBe("")

      await page.fill("#create-disallowed", "WebFetch, WebSearch")
      await page.click("#create-session")
      await waitForText(page.locator("#session-id"), /^sess_/)
      await waitForText(page.locator("#connection"), "open")
      await stateIs(page, "idle")
      const sessionId = await page.textContent("#session-id")
      const created = await fetch(`${gateway.url}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${KEY}` } })
      expect(((await created.json()) as { disallowed_tools: Array<string> }).disallowed_tools).toEqual(expect.arrayContaining(["WebFetch", "WebSearch"]))

      // 1. A tool use that needs permission, approved.
      await page.fill("#message", "CONSOLE-WRITE: please write approved.txt")
      await page.click("#send")
      const write = page.locator(".permission", { hasText: "Write" })
      await write.waitFor({ timeout: WAIT })
      await stateIs(page, "waiting_for_permission")
      expect(await write.locator("textarea").inputValue()).toContain(approved)
      expect(fs.existsSync(approved)).toBe(false)
      await write.getByRole("button", { name: "Allow" }).click()
      await waitForText(write.locator(".permission-status"), /Allowed/)
      const writeCard = page.locator('.tool[data-tool-use-id="toolu_console_write"]')
      await waitForText(writeCard.locator(".tool-result"), "approved.txt")
      expect(await writeCard.locator(".tool-input").textContent()).toContain(approved)
      await waitForText(page.locator(".assistant .text"), "The file is written.")
      await page.locator(".turn-end").first().waitFor({ timeout: WAIT })
      await stateIs(page, "idle")
      expect(fs.readFileSync(approved, "utf8")).toBe("written from the console\n")
      // The model's markup is text on the page, never elements.
      expect(await page.locator(".assistant .text", { hasText: "is written" }).textContent()).toContain('<b id="injected">bold</b>')
      expect(await page.locator("#injected").count()).toBe(0)
      // The cost so far is shown.
      expect(await page.textContent("#session-cost")).toMatch(/^\$\d+\.\d{4}$/)
      expect(await page.textContent("#session-cost")).not.toBe("$0.0000")

      // 2. Another tool use, denied with a message: the model is told, and nothing is written.
      await page.fill("#message", "CONSOLE-DENY: write denied.txt")
      await page.click("#send")
      const bash = page.locator(".permission", { hasText: "Bash" })
      await bash.waitFor({ timeout: WAIT })
      await bash.locator(".deny-message").fill("Not in this workspace")
      await bash.getByRole("button", { name: "Deny" }).click()
      await waitForText(bash.locator(".permission-status"), "Denied (client): Not in this workspace")
      const bashCard = page.locator('.tool[data-tool-use-id="toolu_console_deny"]')
      await waitForText(bashCard.locator(".tool-result.error"), "Not in this workspace")
      await waitForText(page.locator(".assistant .text"), "Understood, I did not write it.")
      await page.locator(".turn-end").nth(1).waitFor({ timeout: WAIT })
      await stateIs(page, "idle")
      expect(fs.existsSync(denied)).toBe(false)
      const told = upstream.requestsFor("toolu_console_deny")
      expect(told.length).toBeGreaterThan(0)
      expect(JSON.stringify(messagesOf(told[0]!.body).at(-1)?.content)).toContain("Not in this workspace")

      // 3. A reload keeps the key (sessionStorage) and the session (the #id link): attaching replays the
      // transcript the gateway still buffers.
      await page.reload()
      await waitForText(page.locator("#connection"), "open")
      expect(await page.textContent("#session-id")).toBe(sessionId)
      await waitForText(page.locator('.tool[data-tool-use-id="toolu_console_write"] .tool-result'), "approved.txt")
      await waitForText(page.locator(".assistant .text"), "Understood, I did not write it.")
      await stateIs(page, "idle")

      // A second tab (its own sessionStorage) attaches by id and watches too.
      const watcher = await openConsole()
      await watcher.page.fill("#api-key", KEY)
      await watcher.page.click("#key-save")
      await watcher.page.fill("#attach-id", sessionId!)
      await watcher.page.click("#attach-session")
      await waitForText(watcher.page.locator("#connection"), "open")
      await waitForText(watcher.page.locator(".permission-status"), "Denied (client): Not in this workspace")
      await stateIs(watcher.page, "idle")

      // 4. Interrupt stops a turn mid-stream (a reply long enough that it cannot end first).
      upstream.on("CONSOLE-SLOW", {
        kind: "message",
        blocks: [{ type: "text", text: Array.from({ length: 600 }, (_, i) => `word${i} `) }],
        interDeltaMs: 100
      })
      await page.fill("#message", "CONSOLE-SLOW: tell me a long story")
      await page.click("#send")
      await waitForText(page.locator(".assistant .text"), "word0")
      await page.click("#interrupt")
      await waitForText(page.locator(".turn-end"), /^interrupted/)
      await stateIs(page, "idle")
      expect(await page.locator(".assistant .text", { hasText: "word0" }).textContent()).not.toContain("word599")
      // The watcher saw the turn live: the message, the streamed text, its end.
      await waitForText(watcher.page.locator(".user"), "CONSOLE-SLOW")
      await waitForText(watcher.page.locator(".assistant .text"), "word0")
      await waitForText(watcher.page.locator(".turn-end"), /^interrupted/)
      expect(watcher.problems).toEqual([])
      await watcher.close()

      // 5. The session ends from the page (End session: DELETE, which stops its CLI).
      const deleted = page.waitForResponse((r) => r.request().method() === "DELETE", { timeout: WAIT })
      await page.click("#end-session")
      expect((await deleted).status()).toBe(200)
      await stateIs(page, "ended")
      // Deleted: the gateway no longer knows it.
      const ended = await fetch(`${gateway.url}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${KEY}` } })
      expect(ended.status).toBe(404)
      expect(problems).toEqual([])
    } catch (error) {
      // What the page showed tells more than a timed-out locator.
      const shown = await page.locator("body").innerText().catch(() => "(page gone)")
      throw new Error(`${String(error)}\n--- page ---\n${shown}\n--- problems ---\n${problems.join("\n")}`)
    } finally {
      await close()
    }
  })
})
