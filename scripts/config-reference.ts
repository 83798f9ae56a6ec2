/**
 * Renders docs/configuration.md from the config schema: each key's type and default from the
 * schema itself, its description from the doc comment above it in src/config/GatewayConfig.ts.
 * `test/unit/configReference.test.ts` fails when the committed file differs; `npx vitest run
 * test/unit/configReference.test.ts -u` writes it anew.
 */
import { Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import ts from "typescript"
import { ConfigSchema, ENV_PREFIX } from "../src/config/GatewayConfig.js"

const SOURCE = new URL("../src/config/GatewayConfig.ts", import.meta.url)

// The schema's building blocks, as a reader would name them.
const TYPE_NAMES: Record<string, string> = {
  Int: "integer",
  PositiveInt: "integer > 0",
  NonNegativeInt: "integer ≥ 0",
  Port: "port (0–65535)",
  Ratio: "number (0–1)",
  Bool: "boolean",
  StringList: "list of strings",
  PermissionModeList: "list of permission modes",
  "Schema.String": "string"
}

interface Key {
  readonly name: string
  readonly type: string
  readonly doc: string
}

const docOf = (node: ts.Node, source: ts.SourceFile): string =>
  (ts.getLeadingCommentRanges(source.text, node.getFullStart()) ?? [])
    .map((range) => source.text.slice(range.pos, range.end))
    .filter((comment) => comment.startsWith("/**"))
    .map((comment) =>
      comment.replace(/^\/\*\*/, "").replace(/\*\/$/, "").split("\n").map((line) => line.replace(/^\s*\* ?/, "").trim()).join(" ")
        .trim()
    )
    .join(" ")

const typeOf = (expression: ts.Expression, source: ts.SourceFile, literals: ReadonlyMap<string, string>): string => {
  const text = expression.getText(source)
  const literal = /^Schema\.Literal\(([^)]*)\)$/.exec(text)
  if (literal !== null) return literal[1]!.split(",").map((s) => s.trim()).join(" | ")
  if (TYPE_NAMES[text] !== undefined) return TYPE_NAMES[text]
  if (literals.has(text)) return literals.get(text)!
  if (text.startsWith("Schema.Union(Schema.Record")) return "table of string → string"
  if (text.includes("Schema.Number")) return text.includes("positive") ? "number > 0" : "number"
  return text
}

/** `withDefault(T, …)`, `Schema.optional(T)` or `Section(…)`: the schema T of a key. */
const innerSchema = (expression: ts.Expression): ts.Expression | undefined =>
  ts.isCallExpression(expression) ? expression.arguments[0] : undefined

const sections = (): ReadonlyArray<{ readonly name: string; readonly doc: string; readonly keys: ReadonlyArray<Key> }> => {
  const source = ts.createSourceFile("GatewayConfig.ts", fs.readFileSync(SOURCE, "utf8"), ts.ScriptTarget.ES2022, true)
  const literals = new Map<string, string>()
  let root: ts.ObjectLiteralExpression | undefined
  source.forEachChild(function visit(node) {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer !== undefined) {
      const text = node.initializer.getText(source)
      const literal = /^Schema\.Literal\(([^)]*)\)$/.exec(text)
      if (literal !== null) literals.set(node.name.text, literal[1]!.split(",").map((s) => s.trim()).join(" | "))
      if (node.name.text === "ConfigSchema") {
        const struct = innerSchema(node.initializer)
        if (struct !== undefined && ts.isObjectLiteralExpression(struct)) root = struct
      }
    }
    node.forEachChild(visit)
  })
  if (root === undefined) throw new Error("ConfigSchema = Schema.Struct({...}) not found")
  const objectOf = (expression: ts.Expression): ts.ObjectLiteralExpression => {
    const section = innerSchema(expression)
    const struct = section === undefined ? undefined : innerSchema(section)
    if (struct === undefined || !ts.isObjectLiteralExpression(struct)) throw new Error(`not a Section(Schema.Struct({...})): ${expression.getText(source)}`)
    return struct
  }
  return root.properties.filter(ts.isPropertyAssignment).map((section) => ({
    name: section.name.getText(source),
    doc: docOf(section, source),
    keys: objectOf(section.initializer).properties.filter(ts.isPropertyAssignment).map((key) => {
      const schema = innerSchema(key.initializer)
      return {
        name: key.name.getText(source),
        type: schema === undefined ? "?" : typeOf(schema, source, literals),
        doc: docOf(key, source)
      }
    })
  }))
}

// Defaults that depend on the machine are shown by what they depend on.
const shown = (value: unknown): string => {
  if (value === undefined) return "unset"
  const text = JSON.stringify(value)
    .replaceAll(JSON.stringify(os.tmpdir()).slice(1, -1), "$TMPDIR")
    .replaceAll(JSON.stringify(os.homedir()).slice(1, -1), "~")
  return "`" + text + "`"
}

const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ")

export const renderConfigReference = (): string => {
  const defaults = Schema.decodeUnknownSync(ConfigSchema)({}) as Record<string, Record<string, unknown>>
  const lines = [
    "# Configuration reference",
    "",
    "<!-- Generated from src/config/GatewayConfig.ts by scripts/config-reference.ts; do not edit by hand.",
    "     Refresh: npx vitest run test/unit/configReference.test.ts -u -->",
    "",
    "Every key can be set in the TOML file (`[section]` then `key = value`), in the environment",
    `(\`${ENV_PREFIX}SECTION__KEY\`, the names claude-code-api-rs uses) or with \`--set section.key=value\`; later sources`,
    "win: defaults < TOML file < environment < flags. Lists accept a TOML array, a JSON array or a comma-separated",
    "string. How the sources are found and how errors are reported: [operations.md](operations.md#configuring-the-gateway).",
    ""
  ]
  for (const section of sections()) {
    lines.push(`## \`[${section.name}]\``, "")
    if (section.doc !== "") lines.push(section.doc, "")
    lines.push("| Key | Type | Default | Environment | What it does |", "|---|---|---|---|---|")
    for (const key of section.keys) {
      const env = `${ENV_PREFIX}${section.name.toUpperCase()}__${key.name.toUpperCase()}`
      lines.push(`| \`${key.name}\` | ${cell(key.type)} | ${cell(shown(defaults[section.name]?.[key.name]))} | \`${env}\` | ${cell(key.doc)} |`)
    }
    lines.push("")
  }
  return lines.join("\n")
}
