import { Stream } from "effect"
import { TurnEvent, type TurnUsage } from "./Turn.js"

/**
 * Stop sequences over a turn's events: text is held back just long enough to see a sequence that
 * spans deltas; at the first match the text before it is emitted, the turn finishes with reason
 * "stop" (usage so far), and the stream ends, which ends the CLI turn with the request.
 */
export const applyStop = <E, R>(
  events: Stream.Stream<TurnEvent, E, R>,
  stops: ReadonlyArray<string> | undefined
): Stream.Stream<TurnEvent, E, R> => {
  const sequences = (stops ?? []).filter((s) => s.length > 0)
  if (sequences.length === 0) return events
  const hold = Math.max(...sequences.map((s) => s.length)) - 1
  return Stream.suspend(() => {
    let pending = ""
    let usage: TurnUsage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 }
    let sessionId = ""
    return events.pipe(
      Stream.mapConcat((event): Array<TurnEvent> => {
        switch (event._tag) {
          case "Started":
            sessionId = event.sessionId
            return [event]
          case "Usage":
            usage = event.usage
            return [event]
          case "TextDelta": {
            pending += event.text
            let cut = -1
            let matched = ""
            for (const stop of sequences) {
              const at = pending.indexOf(stop)
              if (at >= 0 && (cut < 0 || at < cut)) {
                cut = at
                matched = stop
              }
            }
            if (cut >= 0) {
              const before = pending.slice(0, cut)
              pending = ""
              return [
                ...(before === "" ? [] : [TurnEvent.TextDelta({ text: before })]),
                TurnEvent.Finished({ reason: "stop", usage, costUsd: undefined, sessionId, stopSequence: matched })
              ]
            }
            const safe = pending.length - hold
            if (safe <= 0) return []
            const text = pending.slice(0, safe)
            pending = pending.slice(safe)
            return [TurnEvent.TextDelta({ text })]
          }
          case "Finished": {
            const rest = pending
            pending = ""
            return rest === "" ? [event] : [TurnEvent.TextDelta({ text: rest }), event]
          }
          default:
            return [event]
        }
      }),
      Stream.takeUntil((event) => event._tag === "Finished")
    )
  })
}
