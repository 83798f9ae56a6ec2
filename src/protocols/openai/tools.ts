import { Ajv } from "ajv"
import { Either, Schema } from "effect"
import * as crypto from "node:crypto"
import { InvalidRequest } from "../../domain/errors.js"
import { type ClientTool, TOOL_PREFIX } from "../../domain/Turn.js"
import type { ChatRequest } from "./Schema.js"

/** OpenAI `tools`, `tool_choice` and `parallel_tool_calls` → the client tools of a launch. */

const FunctionTool = Schema.Struct({
  type: Schema.Literal("function"),
  function: Schema.Struct({
    name: Schema.String,
    description: Schema.optional(Schema.NullOr(Schema.String)),
    parameters: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))),
    strict: Schema.optional(Schema.NullOr(Schema.Boolean))
  })
})

const ToolChoice = Schema.Union(
  Schema.Literal("none", "auto", "required"),
  Schema.Struct({ type: Schema.Literal("function"), function: Schema.Struct({ name: Schema.String }) })
)

/** OpenAI's rule for function names. */
const NAME = /^[a-zA-Z0-9_-]{1,64}$/
/** The CLI's tool names are `mcp__client__<name>`, and the whole must stay within 64 characters. */
const MAX_MCP_NAME = 64 - TOOL_PREFIX.length

/** The client's name when MCP can carry it; else a shortened one with a hash, unique per name. */
export const mcpName = (name: string): string =>
  name.length <= MAX_MCP_NAME && !name.includes("__")
    ? name
    : `${name.slice(0, MAX_MCP_NAME - 9).replaceAll("__", "_")}_${crypto.createHash("sha256").update(name).digest("hex").slice(0, 8)}`

const ajv = new Ajv({ strict: false, validateSchema: false })
// The CLI compiles --json-schema with Ajv's default strict mode (an unknown keyword exits it: "strict
// mode: unknown keyword", seen by the fuzz test): response schemas are compiled the same way here.
const strictAjv = new Ajv({ logger: false })

const invalid = (message: string, param: string, code = "invalid_value") => new InvalidRequest({ message, param, code })

/** At most this many functions per request (OpenAI's own limit); their names also travel in the CLI's argv. */
export const MAX_TOOLS = 128

/** A function's `parameters` must be a valid JSON Schema for an object. */
const checkParameters = (parameters: Readonly<Record<string, unknown>>, param: string, code = "invalid_function_parameters") => {
  if (parameters.type !== undefined && parameters.type !== "object") {
    return Either.left(invalid(
      `Invalid schema at '${param}': it must be a JSON Schema of type "object" (got ${JSON.stringify(parameters.type)}).`,
      param,
      code
    ))
  }
  // Checked against draft-07 (what tool schemas are written in); a `$schema` naming another draft is not followed.
  const { $schema: _declared, ...body } = parameters
  if (!ajv.validateSchema(body)) {
    const [error] = ajv.errors ?? []
    const where = error?.instancePath ? ` at ${error.instancePath}` : ""
    return Either.left(invalid(
      `Invalid schema at '${param}': not a valid JSON Schema${where}: ${error?.message ?? "unknown problem"}.`,
      param,
      code
    ))
  }
  return Either.right({ type: "object", ...parameters })
}

/**
 * `response_format.json_schema.schema` for the CLI's `--json-schema`: an object schema, its `$schema`
 * dropped (zod 4 and LangChain add one; the CLI fails on drafts it does not know), and compiled
 * here so that a schema the CLI could not compile is a 400 before any CLI starts.
 */
export const checkResponseSchema = (schema: Readonly<Record<string, unknown>>, param: string) =>
  Either.flatMap(checkParameters(schema, param, "invalid_json_schema"), (checked: Readonly<Record<string, unknown>>) => {
    const { $schema: _declared, ...body } = checked
    try {
      strictAjv.compile(body)
      return Either.right(body)
    } catch (error) {
      return Either.left(invalid(
        `Invalid schema at '${param}': ${error instanceof Error ? error.message : String(error)}.`,
        param,
        "invalid_json_schema"
      ))
    } finally {
      // Compiled schemas are cached by object: each request's would stay forever.
      strictAjv.removeSchema(body)
    }
  })

export interface ToolSetup {
  /** Offered to the model; empty with tool_choice "none". */
  readonly tools: ReadonlyArray<ClientTool>
  readonly instruction: string | undefined
}

export const decodeTools = (
  request: ChatRequest,
  decode: <A, I>(schema: Schema.Schema<A, I>, input: unknown, prefix: string) => Either.Either<A, InvalidRequest>
): Either.Either<ToolSetup, InvalidRequest> =>
  Either.gen(function*() {
    const raw = request.tools ?? []
    if (raw.length > MAX_TOOLS) {
      return yield* Either.left(invalid(`Invalid value for 'tools': at most ${MAX_TOOLS} functions per request (got ${raw.length}).`, "tools", "too_many_tools"))
    }
    const tools: Array<ClientTool> = []
    const names = new Set<string>()
    for (const [i, entry] of raw.entries()) {
      const { function: fn } = yield* decode(FunctionTool, entry, `tools[${i}]`)
      const param = `tools[${i}].function.name`
      if (!NAME.test(fn.name)) {
        return yield* Either.left(invalid(
          `Invalid value for '${param}': '${fn.name}' must be 1 to 64 letters, digits, underscores or dashes.`,
          param
        ))
      }
      if (names.has(fn.name)) {
        return yield* Either.left(invalid(`Invalid value for '${param}': the function '${fn.name}' is defined twice.`, param))
      }
      names.add(fn.name)
      const parameters = yield* checkParameters(fn.parameters ?? { type: "object", properties: {} }, `tools[${i}].function.parameters`)
      tools.push({ name: mcpName(fn.name), clientName: fn.name, description: fn.description ?? undefined, parameters })
    }
    const choice = request.tool_choice == null ? "auto" : yield* decode(ToolChoice, request.tool_choice, "tool_choice")
    if (choice !== "auto" && choice !== "none" && tools.length === 0) {
      return yield* Either.left(invalid("Invalid value for 'tool_choice': it needs 'tools'.", "tool_choice"))
    }
    if (choice === "none") return { tools: [], instruction: undefined }
    const rules: Array<string> = []
    if (typeof choice === "object") {
      const tool = tools.find((t) => t.clientName === choice.function.name)
      if (tool === undefined) {
        return yield* Either.left(invalid(
          `Invalid value for 'tool_choice.function.name': no function named '${choice.function.name}' in 'tools'.`,
          "tool_choice.function.name"
        ))
      }
      rules.push(`In your next reply you must call the tool ${TOOL_PREFIX}${tool.name}.`)
    } else if (choice === "required") {
      rules.push("In your next reply you must call at least one of the tools whose names start with " + TOOL_PREFIX + ".")
    }
    if (request.parallel_tool_calls === false && tools.length > 0) rules.push("Call at most one tool per reply.")
    return { tools, instruction: rules.length > 0 ? rules.join(" ") : undefined }
  })
