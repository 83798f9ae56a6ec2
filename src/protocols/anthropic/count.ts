import { Effect, Schema } from "effect"
import { CliProtocolError, CliTimeout } from "../../cli/CliErrors.js"
import type { CliProcess } from "../../cli/CliProcess.js"
import type { Admission } from "../../services/Admission.js"

/**
 * count_tokens through the CLI's own counting: a CLI launched with the text as its whole system
 * prompt is asked for its context usage (`get_context_usage`), which it measures with the
 * upstream's count_tokens endpoint, under the CLI's own credentials. The process is the count's
 * alone (its system prompt is the text) and dies with it; it takes a session slot meanwhile.
 */

const ContextUsage = Schema.Struct({
  categories: Schema.Array(Schema.Struct({ id: Schema.optional(Schema.String), tokens: Schema.Number }))
})

export const countThroughCli = (
  cli: CliProcess,
  admission: Admission,
  model: string,
  text: string,
  timeoutSeconds: number
) =>
  Effect.scoped(Effect.gen(function*() {
    yield* admission.admit
    const process = yield* cli.spawn({ model, systemPrompt: text })
    const usage = yield* process.control("get_context_usage").pipe(
      Effect.flatMap(Schema.decodeUnknown(ContextUsage)),
      Effect.catchTag("ParseError", (error) => Effect.fail(new CliProtocolError({ reason: `get_context_usage: ${error.message}` })))
    )
    const category = usage.categories.find((c) => c.id === "system_prompt")
    if (category === undefined) {
      return yield* Effect.fail(new CliProtocolError({ reason: "get_context_usage reported no system_prompt category" }))
    }
    return category.tokens
  })).pipe(Effect.timeoutFail({ duration: `${timeoutSeconds} seconds`, onTimeout: () => new CliTimeout({ seconds: timeoutSeconds }) }))
