import { Chunk, Duration, Effect, Exit, Option, Scope, Stream } from "effect"
import { CliTimeout } from "./cli/CliErrors.js"
import { TOOL_PREFIX } from "./cli/McpBridge.js"
import { toTurnEvents, type TurnError } from "./cli/TurnEvents.js"
import { Admission, type Overloaded } from "./Admission.js"
import { GatewayConfig } from "./GatewayConfig.js"
import { Pool } from "./Pool.js"
import { applyStop } from "./StopSequences.js"
import { structuredOnly } from "./StructuredOutput.js"
import { type LiveTurn, ToolBridge } from "./ToolBridge.js"
import type { TurnEvent, TurnRequest } from "./Turn.js"

/**
 * Orchestrates one turn: a session slot (Admission), a CLI process for the request (Pool), the
 * user input written to it, and the CLI's output as TurnEvents. Slot and process belong to the
 * caller's scope, so they end with the request (client gone, timeout, end of stream) — except a
 * turn that stops for the client's tool calls: its process is parked (ToolBridge) for the request
 * that brings the results.
 */

const isToolStop = (event: TurnEvent) => event._tag === "Finished" && event.reason === "tool_calls"

/** The next events of a live turn, up to and including the end of this request's part. */
const nextPart = (turn: LiveTurn, ended: { done: boolean }) =>
  Effect.suspend((): Effect.Effect<Chunk.Chunk<TurnEvent>, Option.Option<TurnError>> => {
    if (ended.done) return Effect.fail(Option.none())
    const buffered = turn.buffer
    turn.buffer = Chunk.empty()
    return (Chunk.isEmpty(buffered) ? turn.pull : Effect.succeed(buffered)).pipe(
      Effect.map((chunk) => {
        const end = Chunk.findFirstIndex(chunk, (event) => event._tag === "Finished")
        if (Option.isNone(end)) return chunk
        ended.done = true
        turn.buffer = Chunk.drop(chunk, end.value + 1)
        return Chunk.take(chunk, end.value + 1)
      })
    )
  })

export class ChatService extends Effect.Service<ChatService>()("ChatService", {
  effect: Effect.gen(function*() {
    const pool = yield* Pool
    const admission = yield* Admission
    const bridge = yield* ToolBridge
    const { config } = yield* GatewayConfig
    const timeoutSeconds = config.claude.timeout_seconds

    /** This request's part of a live turn; a stop for tool calls parks the turn, anything else ends it. */
    const readPart = (turn: LiveTurn, request: TurnRequest) =>
      Effect.gen(function*() {
        let parked = false
        yield* Effect.addFinalizer(() => (parked ? Effect.void : Scope.close(turn.scope, Exit.void)))
        const ended = { done: false }
        const events = Stream.repeatEffectChunkOption(nextPart(turn, ended))
        return applyStop(events, request.stop).pipe(
          // Parked as soon as the calls are known: the client may answer before this response closes.
          Stream.tap((event) =>
            isToolStop(event) && event._tag === "Finished"
              ? Effect.zipRight(Effect.sync(() => (parked = true)), bridge.park(turn, (event.toolCalls ?? []).map((call) => call.id)))
              : Effect.void
          )
        )
      })

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
        const withDeadline = <A, E, R>(stream: Stream.Stream<A, E, R>) =>
          stream.pipe(
            Stream.interruptWhen(Effect.suspend(() => Effect.sleep(remaining())).pipe(Effect.zipRight(Effect.fail(timedOut))))
          )
        const takeProcess = pool.take(request.launch).pipe(
          Effect.timeoutFail({ duration: remaining(), onTimeout: () => timedOut })
        )

        // The results of tool calls a parked turn waits for: that turn reads on.
        if (request.toolResults !== undefined) {
          const parked = yield* bridge.claim(request.toolResults.map((result) => result.id))
          if (Option.isSome(parked)) {
            yield* parked.value.bridge.supply(request.toolResults)
            return withDeadline(yield* readPart(parked.value, request))
          }
        }

        const tools = request.launch.tools ?? []
        if (tools.length === 0) {
          const process = yield* takeProcess
          const events = toTurnEvents(process.turn(request.input))
          const answer = request.launch.jsonSchema === undefined ? applyStop(events, request.stop) : structuredOnly(events)
          return withDeadline(answer)
        }

        const scope = yield* Scope.make()
        const live = yield* Effect.gen(function*() {
          const process = yield* Scope.extend(takeProcess, scope)
          if (process.tools === undefined) return yield* Effect.dieMessage("a CLI launched with client tools has no tool bridge")
          const names = new Map(tools.map((tool) => [TOOL_PREFIX + tool.name, tool.clientName]))
          const pull = yield* Scope.extend(Stream.toPull(toTurnEvents(process.turn(request.input), names)), scope)
          return { scope, bridge: process.tools, pull, buffer: Chunk.empty() } satisfies LiveTurn
        }).pipe(Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))))
        return withDeadline(yield* readPart(live, request))
      })

    return { turn } as const
  }),
  dependencies: [Pool.Default, Admission.Default, ToolBridge.Default]
}) {}
