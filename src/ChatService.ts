import { Duration, Effect, type Scope, Stream } from "effect"
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
        yield* admission.admit
        // One deadline for the whole turn, from the moment it has a session slot: getting the
        // process and the answer share it.
        const timedOut = new CliTimeout({ seconds: timeoutSeconds })
        const deadline = Date.now() + timeoutSeconds * 1000
        const remaining = () => Duration.millis(Math.max(0, deadline - Date.now()))
        const process = yield* pool.take(request.launch).pipe(
          Effect.timeoutFail({ duration: remaining(), onTimeout: () => timedOut })
        )
        const events = toTurnEvents(process.turn(request.input))
        const answer = request.launch.jsonSchema === undefined ? applyStop(events, request.stop) : structuredOnly(events)
        return answer.pipe(
          Stream.interruptWhen(Effect.suspend(() => Effect.sleep(remaining())).pipe(Effect.zipRight(Effect.fail(timedOut))))
        )
      })

    return { turn } as const
  }),
  dependencies: [Pool.Default, Admission.Default]
}) {}
