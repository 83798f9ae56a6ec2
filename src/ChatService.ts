import { Effect, type Scope, Stream } from "effect"
import { CliTimeout } from "./cli/CliErrors.js"
import { toTurnEvents, type TurnError } from "./cli/TurnEvents.js"
import { Admission, type Overloaded } from "./Admission.js"
import { GatewayConfig } from "./GatewayConfig.js"
import { Pool } from "./Pool.js"
import { applyStop } from "./StopSequences.js"
import { structuredOnly } from "./StructuredOutput.js"
import type { TurnEvent, TurnRequest } from "./Turn.js"

/**
 * Orchestrates one turn: a session slot (Admission), a CLI process for the request (Pool), the
 * user input written to it, and the CLI's output as TurnEvents. Slot and process belong to the
 * caller's scope, so they end with the request (client gone, timeout, end of stream).
 */
export class ChatService extends Effect.Service<ChatService>()("ChatService", {
  effect: Effect.gen(function*() {
    const pool = yield* Pool
    const admission = yield* Admission
    const { config } = yield* GatewayConfig
    const timeoutSeconds = config.claude.timeout_seconds

    const turn = (
      request: TurnRequest
    ): Effect.Effect<Stream.Stream<TurnEvent, TurnError>, TurnError | Overloaded, Scope.Scope> =>
      Effect.gen(function*() {
        const deadline = Effect.sleep(`${timeoutSeconds} seconds`).pipe(
          Effect.zipRight(Effect.fail(new CliTimeout({ seconds: timeoutSeconds })))
        )
        yield* admission.admit
        const process = yield* pool.take(request.launch).pipe(
          Effect.timeoutFail({ duration: `${timeoutSeconds} seconds`, onTimeout: () => new CliTimeout({ seconds: timeoutSeconds }) })
        )
        yield* Effect.annotateCurrentSpan("cli.pid", process.pid)
        const events = toTurnEvents(process.turn(request.input))
        const answer = request.launch.jsonSchema === undefined ? applyStop(events, request.stop) : structuredOnly(events)
        return answer.pipe(Stream.interruptWhen(deadline))
      })

    return { turn } as const
  }),
  dependencies: [Pool.Default, Admission.Default]
}) {}
