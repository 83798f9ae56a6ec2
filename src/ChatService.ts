import { Effect, type Scope, Stream } from "effect"
import { CliTimeout } from "./cli/CliErrors.js"
import { CliProcess } from "./cli/CliProcess.js"
import { toTurnEvents, type TurnError } from "./cli/TurnEvents.js"
import { GatewayConfig } from "./GatewayConfig.js"
import type { TurnEvent, TurnRequest } from "./Turn.js"

/**
 * Orchestrates one turn: a CLI process for the request, the user input written to it, and the
 * CLI's output as TurnEvents. The process belongs to the caller's scope, so it dies with the
 * request (client gone, timeout, end of stream).
 */
export class ChatService extends Effect.Service<ChatService>()("ChatService", {
  effect: Effect.gen(function*() {
    const cli = yield* CliProcess
    const { config } = yield* GatewayConfig
    const timeoutSeconds = config.claude.timeout_seconds

    const turn = (request: TurnRequest): Effect.Effect<Stream.Stream<TurnEvent, TurnError>, TurnError, Scope.Scope> =>
      Effect.gen(function*() {
        const deadline = Effect.sleep(`${timeoutSeconds} seconds`).pipe(
          Effect.zipRight(Effect.fail(new CliTimeout({ seconds: timeoutSeconds })))
        )
        const process = yield* cli.spawn(request.launch).pipe(
          Effect.timeoutFail({ duration: `${timeoutSeconds} seconds`, onTimeout: () => new CliTimeout({ seconds: timeoutSeconds }) })
        )
        yield* Effect.annotateCurrentSpan("cli.pid", process.pid)
        return toTurnEvents(process.turn(request.input)).pipe(Stream.interruptWhen(deadline))
      })

    return { turn } as const
  }),
  dependencies: [CliProcess.Default]
}) {}
