import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CLAUDE_BIN, waitForNoCliChildren } from "../support/gateway.js"
import { startUpstream, type Upstream } from "../support/upstream.js"

/**
 * The package as another project gets it: built, packed with `npm pack`, unpacked into a new
 * project's node_modules, and used through its `exports` and emitted declarations by the program
 * that docs/embedding.md shows (typechecked, then run against the real CLI and the scripted upstream).
 *
 * The new project's other dependencies are links to this checkout's installed ones: `npm install`
 * of the tarball would rebuild better-sqlite3 from source (no prebuilt binary reaches this machine),
 * about a minute and a half for nothing this test checks.
 */

const root = fileURLToPath(new URL("../..", import.meta.url))
// Asynchronous: a blocked event loop would starve the test worker's own messages for minutes.
const run = (file: string, args: ReadonlyArray<string>, options: { cwd: string; env?: NodeJS.ProcessEnv }) =>
  new Promise<string>((resolve, reject) =>
    execFile(file, [...args], { ...options, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      error === null ? resolve(stdout) : reject(new Error(`${file} ${args.join(" ")}: ${error.message}\n${stdout}\n${stderr}`))))

/** The first ```ts block of docs/embedding.md: the program the docs promise works. */
const docsProgram = () => {
  const match = /```ts\n([\s\S]*?)```/.exec(fs.readFileSync(path.join(root, "docs/embedding.md"), "utf8"))
  if (match === null) throw new Error("docs/embedding.md has no ts block")
  return match[1]!
}

describe("the packed package", () => {
  let upstream: Upstream
  let dir: string
  let files: ReadonlyArray<string>

  beforeAll(async () => {
    upstream = await startUpstream()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ccapi-pack-"))
    await run("npm", ["run", "build", "--silent"], { cwd: root })
    const [packed] = JSON.parse(await run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: root })) as Array<
      { filename: string; files: Array<{ path: string }> }
    >
    files = packed!.files.map((file) => file.path)

    const app = path.join(dir, "app")
    const modules = path.join(app, "node_modules")
    fs.mkdirSync(path.join(modules, "claude-code-api"), { recursive: true })
    await run("tar", ["-xzf", path.join(dir, packed!.filename), "-C", path.join(modules, "claude-code-api"), "--strip-components=1"], { cwd: dir })
    for (const entry of fs.readdirSync(path.join(root, "node_modules"))) {
      if (entry.startsWith(".")) continue
      fs.symlinkSync(path.join(root, "node_modules", entry), path.join(modules, entry))
    }
    fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "embedder", private: true, type: "module" }))
    fs.writeFileSync(
      path.join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          types: ["node"],
          skipLibCheck: true,
          outDir: "out"
        },
        include: ["main.ts"]
      })
    )
    fs.writeFileSync(path.join(app, "main.ts"), docsProgram())
  }, 300_000)

  afterAll(async () => {
    await upstream.close()
    fs.rmSync(dir, { recursive: true, force: true })
    expect(await waitForNoCliChildren()).toEqual([])
  })

  it("ships the build with its declarations, the docs and no sources or tests", () => {
    expect(files).toContain("dist/index.js")
    expect(files).toContain("dist/index.d.ts")
    expect(files).toContain("dist/bin.js")
    // The browser console's files, which tsc does not emit (the build copies them).
    for (const asset of ["index.html", "console.js", "console.css"]) expect(files).toContain(`dist/console/assets/${asset}`)
    expect(files).toContain("docs/embedding.md")
    expect(files.filter((file) => file.startsWith("src/") || file.startsWith("test/"))).toEqual([])
  })

  it("typechecks the embedding program against the emitted declarations and completes a turn with the real CLI", async () => {
    const app = path.join(dir, "app")
    await run(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", "."], { cwd: app })
    const home = path.join(dir, "home")
    fs.mkdirSync(home)
    upstream.on("three prime numbers", {
      kind: "message",
      blocks: [{ type: "text", text: ["Two, ", "three, five."] }]
    })
    const out = await run(process.execPath, ["out/main.js"], {
      cwd: app,
      env: {
        PATH: process.env.PATH,
        HOME: home,
        CLAUDE_COMMAND: CLAUDE_BIN,
        WORKSPACE: path.join(home, "workspace"),
        DATA_DIR: path.join(home, "data"),
        ANTHROPIC_BASE_URL: upstream.url,
        ANTHROPIC_API_KEY: "sk-test-dummy",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1"
      }
    })
    expect(out.trim()).toBe("Two, three, five.")
    expect(upstream.requestsFor("three prime numbers")).toHaveLength(1)
  }, 300_000)
})
