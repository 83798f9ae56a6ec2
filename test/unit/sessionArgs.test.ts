import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { cliArgs } from "../../src/cli/CliProcess.js"
import { decodeConfig } from "../../src/config/GatewayConfig.js"

describe("cliArgs for an interactive session", () => {
  const config = Either.getOrThrow(decodeConfig({
    claude: { allowed_tools: ["Read", "Edit"], disallowed_tools: ["WebFetch"], max_budget_usd: 2, permission_mode: "default" }
  }))

  it("asks the gateway for permissions and uses the session's own mode, tools and budget", () => {
    const args = cliArgs(config, {
      model: "sonnet",
      systemPrompt: undefined,
      permissionMode: "plan",
      permissionPrompts: true,
      allowedTools: ["Read"],
      disallowedTools: ["WebFetch", "Bash"],
      maxBudgetUsd: 0.5,
      resume: "2d2a3631-b734-45c6-93b1-58e8ba5b9f25"
    }).join(" ")
    expect(args).toContain("--permission-mode plan --permission-prompt-tool stdio")
    expect(args).toContain("--allowedTools Read ")
    expect(args).toContain("--disallowedTools WebFetch,Bash")
    expect(args).toContain("--max-budget-usd 0.5")
    expect(args).toContain("--resume 2d2a3631-b734-45c6-93b1-58e8ba5b9f25")
  })

  it("leaves chat launches as they were: config's mode, tools and budget, no permission prompts", () => {
    const args = cliArgs(config, { model: "sonnet", systemPrompt: undefined }).join(" ")
    expect(args).not.toContain("--permission-prompt-tool")
    expect(args).toContain("--permission-mode default")
    expect(args).toContain("--allowedTools Read,Edit")
    expect(args).toContain("--max-budget-usd 2")
  })
})
