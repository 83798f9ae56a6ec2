import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { InvalidRequest } from "../domain/errors.js"

/** Linux's limits for a path and for one name in it. */
const MAX_PATH_BYTES = 4095
const MAX_NAME_BYTES = 255

const isLink = (file: string) => {
  try {
    return fs.lstatSync(file).isSymbolicLink()
  } catch {
    return false
  }
}

const realOrUndefined = (file: string) => {
  try {
    return fs.realpathSync(file)
  } catch {
    return undefined // a dangling link: it leads nowhere we can check
  }
}

const inside = (root: string, candidate: string) => candidate === root || candidate.startsWith(root + path.sep)

/**
 * A working directory inside the workspace (relative to it, or absolute within it), created if
 * missing. Everything is checked before anything is created: each existing step with its
 * symlinks resolved must stay inside (a link inside must not lead outside) and be a directory.
 * `param` names the field in a 400.
 */
export const workingDirectory = (workspaceDir: string, requested: string, param = "working_directory") =>
  Effect.gen(function*() {
    const workspace = path.resolve(workspaceDir)
    const refuse = (why: string) => new InvalidRequest({ message: `Invalid value for '${param}': ${why}.`, param, code: "invalid_value" })
    const outside = refuse(`it must lie inside the gateway's workspace (${workspace})`)
    if (requested.includes("\u0000")) return yield* Effect.fail(refuse("it must not contain NUL characters"))
    if (Buffer.byteLength(requested) > MAX_PATH_BYTES) return yield* Effect.fail(refuse(`it is limited to ${MAX_PATH_BYTES} bytes`))
    const resolved = path.resolve(workspace, requested)
    if (!inside(workspace, resolved)) return yield* Effect.fail(outside)
    const steps = path.relative(workspace, resolved).split(path.sep).filter((step) => step !== "")
    if (steps.some((step) => Buffer.byteLength(step) > MAX_NAME_BYTES)) {
      return yield* Effect.fail(refuse(`each name in the path is limited to ${MAX_NAME_BYTES} bytes`))
    }
    return yield* Effect.try({
      try: () => {
        fs.mkdirSync(workspace, { recursive: true })
        const root = fs.realpathSync(workspace)
        let current = workspace
        for (const step of steps) {
          current = path.join(current, step)
          if (!fs.existsSync(current) && !isLink(current)) break // from here on, created below
          const real = realOrUndefined(current)
          if (real === undefined || !inside(root, real)) throw outside
          if (!fs.statSync(real).isDirectory()) throw refuse(`'${path.relative(workspace, current)}' exists and is not a directory`)
        }
        fs.mkdirSync(resolved, { recursive: true })
        const real = fs.realpathSync(resolved)
        if (!inside(root, real)) throw outside
        return resolved
      },
      catch: (error) => error instanceof InvalidRequest ? error : refuse(`it cannot be created (${(error as NodeJS.ErrnoException).code ?? "error"})`)
    })
  })
