import { Effect } from "effect"
import type { GatewayConfig } from "../../config/GatewayConfig.js"
import { InvalidRequest } from "../../domain/errors.js"
import type { ModelCatalog } from "../../services/ModelCatalog.js"
import { workingDirectory } from "../../services/Workspace.js"
import type { SessionSettings } from "../../store/SessionStore.js"
import { checkSystemPrompt } from "../openai/translate.js"
import type { CreateSession } from "./Messages.js"

/**
 * A session's settings from a create request, checked against config: mode, tools, budget and
 * directory stay within what config allows. Shared by POST /v1/sessions and the CreateSession RPC.
 */

/** When a client may retry a create refused by `sessions.max_total` (a per-key cap is the caller's to lift). */
export const SESSION_RETRY_AFTER_SECONDS = 30

const invalid = (message: string, param: string) => new InvalidRequest({ message, param, code: "invalid_value" })

export const sessionSettings = (
  body: CreateSession,
  config: GatewayConfig["config"],
  catalog: ModelCatalog
) =>
  Effect.gen(function*() {
    const limits = config.sessions
    const model = yield* catalog.resolve(body.model ?? config.claude.default_model)
    if (body.system_prompt != null) yield* checkSystemPrompt(body.system_prompt, "system_prompt")
    const permissionMode = body.permission_mode ?? limits.permission_modes[0]!
    if (!limits.permission_modes.includes(permissionMode)) {
      return yield* Effect.fail(invalid(
        `Invalid value for 'permission_mode': '${permissionMode}' is not allowed here (sessions.permission_modes: ${limits.permission_modes.join(", ")}).`,
        "permission_mode"
      ))
    }
    const allowed = body.allowed_tools ?? config.claude.allowed_tools
    const wider = allowed.find((tool) => !config.claude.allowed_tools.includes(tool))
    if (wider !== undefined) {
      return yield* Effect.fail(invalid(
        `Invalid value for 'allowed_tools': '${wider}' is not one of the gateway's claude.allowed_tools (${config.claude.allowed_tools.join(", ") || "none"}).`,
        "allowed_tools"
      ))
    }
    const disallowed = [...new Set([...config.claude.disallowed_tools, ...(body.disallowed_tools ?? [])])]
    const ceiling = config.claude.max_budget_usd
    const budget = body.max_budget_usd ?? ceiling ?? null
    if (budget !== null && (!(budget > 0) || (ceiling !== undefined && budget > ceiling))) {
      return yield* Effect.fail(invalid(
        `Invalid value for 'max_budget_usd': expected a positive number${ceiling === undefined ? "" : ` of at most ${ceiling} (claude.max_budget_usd)`}.`,
        "max_budget_usd"
      ))
    }
    const directory = yield* workingDirectory(config.claude.workspace, body.working_directory ?? ".")
    return {
      model,
      systemPrompt: body.system_prompt ?? null,
      workingDirectory: directory,
      permissionMode,
      allowedTools: allowed,
      disallowedTools: disallowed,
      maxBudgetUsd: budget
    } satisfies SessionSettings
  })
