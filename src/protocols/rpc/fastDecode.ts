import { Predicate } from "effect"
import type { ChatEvent } from "./Api.js"

/**
 * The commonest Chat events (a delta per token, usage, the first two) checked and built by hand:
 * the value `ChatEvent`'s schema decodes (declared fields only), or undefined to let the schema
 * decide (Finished, anything malformed). Client code only (no server imports).
 */

const { isNumber, isString } = Predicate

export const fastChatEvent = (value: unknown): ChatEvent | undefined => {
  if (!Predicate.isRecord(value)) return undefined
  switch (value._tag) {
    case "TextDelta":
    case "ThinkingDelta":
      return isString(value.text) ? { _tag: value._tag, text: value.text } : undefined
    case "Usage": {
      const usage = value.usage
      if (
        !Predicate.isRecord(usage) || !isNumber(usage.inputTokens) || !isNumber(usage.outputTokens) ||
        !isNumber(usage.cacheReadTokens) || !isNumber(usage.cacheCreationTokens)
      ) return undefined
      return {
        _tag: "Usage",
        usage: {
          inputTokens: usage.inputTokens,
          outputTokens: usage.outputTokens,
          cacheReadTokens: usage.cacheReadTokens,
          cacheCreationTokens: usage.cacheCreationTokens
        }
      }
    }
    case "ToolCallDelta":
      return isNumber(value.index) && isString(value.arguments)
        ? { _tag: "ToolCallDelta", index: value.index, arguments: value.arguments }
        : undefined
    case "Accepted":
      return isString(value.conversationId) ? { _tag: "Accepted", conversationId: value.conversationId } : undefined
    case "Started":
      return isString(value.model) && isString(value.sessionId) ? { _tag: "Started", model: value.model, sessionId: value.sessionId } : undefined
    default:
      return undefined
  }
}
