import { Effect, RcMap, Schema } from "effect"
import { CliProtocolError, CliTimeout } from "../cli/CliErrors.js"
import { CliProcess } from "../cli/CliProcess.js"
import { GatewayConfig } from "../config/GatewayConfig.js"
import { Admission } from "./Admission.js"

const ContextUsage = Schema.Struct({
  categories: Schema.Array(Schema.Struct({ id: Schema.optional(Schema.String), tokens: Schema.Number }))
})

/** How long a model's counting CLI stays up after its last count. */
const IDLE = "2 minutes"

/**
 * count_tokens through the CLI's own counting: the text becomes the system prompt of a CLI that
 * is asked for its context usage (`get_context_usage`), which the CLI measures with the upstream's
 * count_tokens endpoint under its own credentials. One CLI per model serves the counts one at a
 * time, its system prompt replaced for each (`set_model`; the next get_context_usage counts it,
 * verified upstream with CLI 2.1.331); it never runs a turn, so it holds no messages, and it ends
 * after a quiet while. Before, each count booted a CLI of its own (~1 s of CPU).
 */
export class TokenCounter extends Effect.Service<TokenCounter>()("TokenCounter", {
  scoped: Effect.gen(function*() {
    const cli = yield* CliProcess
    const admission = yield* Admission
    const { config } = yield* GatewayConfig
    const timeoutSeconds = config.claude.timeout_seconds
    const counters = yield* RcMap.make({
      lookup: (model: string) =>
        Effect.gen(function*() {
          const handle = yield* cli.spawn({ model, systemPrompt: undefined })
          return { handle, lock: yield* Effect.makeSemaphore(1) }
        }),
      idleTimeToLive: IDLE
    })

    /**
     * The input tokens of `text` as `model`'s system prompt. A count waits for the model's counting
     * CLI first and takes a session slot only while it counts; the deadline covers the count itself.
     * A counter that failed, answered nonsense or ran out of time is not asked again: the next count
     * gets a new one.
     */
    const count = (model: string, text: string) =>
      Effect.scoped(Effect.gen(function*() {
        const { handle, lock } = yield* RcMap.get(counters, model)
        return yield* lock.withPermits(1)(Effect.scoped(Effect.gen(function*() {
          yield* admission.admit
          yield* handle.control("set_model", { model, system_prompt: text })
          const usage = yield* handle.control("get_context_usage").pipe(
            Effect.flatMap(Schema.decodeUnknown(ContextUsage)),
            Effect.catchTag("ParseError", (error) => Effect.fail(new CliProtocolError({ reason: `get_context_usage: ${error.message}` })))
          )
          const category = usage.categories.find((c) => c.id === "system_prompt")
          if (category === undefined) {
            return yield* Effect.fail(new CliProtocolError({ reason: "get_context_usage reported no system_prompt category" }))
          }
          return category.tokens
        })).pipe(
          Effect.timeoutFail({ duration: `${timeoutSeconds} seconds`, onTimeout: () => new CliTimeout({ seconds: timeoutSeconds }) })
        ))
      })).pipe(
        Effect.catchTag("ControlRequestFailed", (error) => Effect.fail(new CliProtocolError({ reason: error.message }))),
        Effect.tapError(() => RcMap.invalidate(counters, model))
      )

    return { count } as const
  }),
  dependencies: [CliProcess.Default, Admission.Default]
}) {}
