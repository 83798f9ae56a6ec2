import { Stream } from "effect"
import { TurnEvent, TurnFailed } from "./Turn.js"

/**
 * For a turn with a JSON schema, the answer is the CLI's validated structured output, not the
 * model's prose around its StructuredOutput call: text deltas are dropped, and the JSON is
 * emitted as the turn's text just before it finishes. No structured output is an error, never
 * unvalidated JSON.
 */
export const structuredOnly = <E, R>(
  events: Stream.Stream<TurnEvent, E, R>
): Stream.Stream<TurnEvent, E | TurnFailed, R> =>
  events.pipe(
    Stream.filter((event) => event._tag !== "TextDelta"),
    Stream.flatMap((event): Stream.Stream<TurnEvent, TurnFailed> => {
      if (event._tag !== "Finished") return Stream.succeed(event)
      if (event.structuredOutput === undefined) {
        return Stream.fail(
          new TurnFailed({
            subtype: "structured_output_missing",
            message: "the model did not produce output matching the response_format schema"
          })
        )
      }
      return Stream.make(
        TurnEvent.TextDelta({ text: JSON.stringify(event.structuredOutput) }),
        TurnEvent.Finished({ ...event, reason: "stop" })
      )
    })
  )
