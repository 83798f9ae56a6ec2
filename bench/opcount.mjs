/**
 * Counts the steps of Effect's run loop (one per primitive: flatMap, sync, async…), by the span
 * they ran in, and dumps them when the process exits. Not a test; a preload for the gateway:
 *   NODE_FLAGS="--import ./bench/opcount.mjs" OPCOUNT_OUT=/tmp/ops.txt ONLY=turns PHASE=nonstream node bench/turncpu.mjs 1000
 * Run it twice (N turns and 0 turns) and subtract: what is left is the steps per turn. Steps are
 * what a request's CPU goes to in this gateway (~1.5–2.5 µs each with GC), and unlike wall or CPU
 * time they do not depend on the machine's load. `OPCOUNT_DETAIL=<span name>` (`(none)`: outside any span; `*`: everywhere) also counts the
 * steps run directly in that span by the function they carry.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const { FiberRuntime } = await import(path.join(root, "node_modules/effect/dist/esm/internal/fiberRuntime.js"))
const detail = process.env.OPCOUNT_DETAIL
const ops = ["Tag", "Left", "Right", "Some", "None", "Sync", "Success", "Failure", "Async", "Commit", "OnFailure", "OnSuccess",
  "OnSuccessAndFailure", "WithRuntime", "Yield", "While", "Iterator", "RevertFlags", "UpdateRuntimeFlags"]
const bySpan = new Map()
const bySource = new Map()
let steps = 0
const add = (map, key) => map.set(key, (map.get(key) ?? 0) + 1)
const spanPath = (span) => {
  let out = ""
  for (let s = span, depth = 0; s !== undefined && depth < 4; s = s.parent?._tag === "Some" ? s.parent.value : undefined, depth++) {
    out = (s.name ?? s._tag) + (out === "" ? "" : " > " + out)
  }
  return out
}
for (const op of ops) {
  const original = FiberRuntime.prototype[op]
  if (typeof original !== "function") continue
  FiberRuntime.prototype[op] = function (cur) {
    steps++
    const where = spanPath(this.currentSpan)
    add(bySpan, where)
    if (detail !== undefined && (detail === "*" || (detail === "(none)" ? where === "" : where.endsWith(detail)))) {
      const f = op.startsWith("On") ? cur.effect_instruction_i1 : op === "Commit" ? cur.commit : cur.effect_instruction_i0
      add(bySource, `${op} | ${typeof f === "function" ? String(f).replace(/\s+/g, " ").slice(0, 140) : typeof f}`)
    }
    return original.call(this, cur)
  }
}
process.on("exit", () => {
  const sorted = (map) => [...map].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} ${k || "(no span)"}`)
  fs.writeFileSync(process.env.OPCOUNT_OUT ?? "opcount.txt", [`${steps} steps`, "", ...sorted(bySpan), "", ...sorted(bySource)].join("\n") + "\n")
})
