import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { cliArgs, cliEnv, launchEnv, launchSignature } from "../../src/cli/CliProcess.js"
import { decodeConfig } from "../../src/config/GatewayConfig.js"

const config = (claude: Record<string, unknown> = {}, tools: Record<string, unknown> = {}) =>
  Either.getOrThrow(decodeConfig({ claude, tools }))
const launch = { model: "sonnet", systemPrompt: undefined }

describe("cliArgs", () => {
  it("runs the CLI kept alive in stream-json mode with partial messages", () => {
    expect(cliArgs(config(), launch)).toEqual([
      "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
      "--include-partial-messages", "--model", "sonnet", "--permission-mode", "default"
    ])
  })

  it("passes the CLI controls from config", () => {
    const args = cliArgs(config({
      tools: [],
      allowed_tools: ["Read", "Bash(git log:*)"],
      disallowed_tools: ["WebFetch"],
      add_dirs: ["/a", "/b"],
      mcp_config: "/etc/mcp.json",
      mcp_strict: true,
      fallback_model: "haiku",
      max_budget_usd: 0.5,
      permission_mode: "acceptEdits"
    }), { ...launch, effort: "low", systemPrompt: "Be brief." })
    expect(args.join(" ")).toContain(
      "--permission-mode acceptEdits --tools  --allowedTools Read,Bash(git log:*) --disallowedTools WebFetch --add-dir /a --add-dir /b"
    )
    expect(args).toEqual(expect.arrayContaining(["--mcp-config", "/etc/mcp.json", "--strict-mcp-config", "--fallback-model", "haiku", "--max-budget-usd", "0.5", "--effort", "low"]))
    expect(args.slice(-2)).toEqual(["--system-prompt", "Be brief."])
    expect(args).not.toContain("--bare")
    expect(cliArgs(config({ bare: true }), launch)).toContain("--bare")
  })

  it("offers client functions as the only tools, unless config keeps the CLI's own too", () => {
    const withTools = {
      ...launch,
      tools: [{ name: "f", clientName: "f", description: undefined, parameters: { type: "object" } }],
      toolInstruction: "Call f."
    }
    const controls = { allowed_tools: ["Read"], mcp_config: "/etc/mcp.json", disallowed_tools: ["WebFetch"] }
    const only = cliArgs(config(controls), withTools).join(" ")
    expect(only).toContain(`--tools  --allowedTools mcp__client__f --mcp-config {"mcpServers":{"client":{"type":"sdk","name":"client"}}} --strict-mcp-config`)
    expect(only).not.toContain("/etc/mcp.json")
    expect(only).not.toContain("WebFetch")
    expect(only.endsWith("--append-system-prompt Call f.")).toBe(true)
    const both = cliArgs(config(controls, { with_builtin: true }), withTools).join(" ")
    expect(both).toContain("--allowedTools Read,mcp__client__f --disallowedTools WebFetch")
    expect(both).toContain(`"name":"client"}}} /etc/mcp.json`)
    expect(both).not.toContain("--strict-mcp-config")
    // Same argv, other function definitions: other standbys.
    const c = config()
    const changed = { ...withTools, tools: [{ ...withTools.tools[0]!, description: "new" }] }
    expect(launchSignature(c, withTools)).not.toBe(launchSignature(c, changed))
  })

  it("keys standbys by everything that changes argv or environment", () => {
    const c = config()
    expect(launchSignature(c, launch)).toBe(launchSignature(c, { ...launch }))
    expect(launchSignature(c, launch)).not.toBe(launchSignature(c, { ...launch, maxOutputTokens: 10 }))
    expect(launchSignature(c, launch)).not.toBe(launchSignature(c, { ...launch, systemPrompt: "x" }))
    expect(launchEnv(c, { ...launch, maxOutputTokens: 10 })).toEqual({ CLAUDE_CODE_MAX_OUTPUT_TOKENS: "10" })
  })
})

describe("cliEnv", () => {
  it("builds the child environment from an allow-list", () => {
    const env = cliEnv({
      PATH: "/bin",
      HOME: "/home/u",
      ANTHROPIC_API_KEY: "k",
      CLAUDE_CODE_USE_BEDROCK: "1",
      CLAUDE_CODE__SERVER__PORT: "9",
      AWS_REGION: "eu",
      SECRET_TOKEN: "s",
      NODE_OPTIONS: "--inspect"
    }, config({ max_retries: 3 }))
    expect(env).toEqual({
      PATH: "/bin",
      HOME: "/home/u",
      ANTHROPIC_API_KEY: "k",
      CLAUDE_CODE_USE_BEDROCK: "1",
      AWS_REGION: "eu",
      CLAUDE_CODE_MAX_RETRIES: "3",
      BUN_ENABLE_CRASH_REPORTING: "0"
    })
  })
})
