import type { HistoryMessage, InputBlock, ToolCall } from "./Turn.js"

/**
 * The text form of earlier turns, for a CLI session that has not seen them: a new conversation
 * whose client re-sent its history, or a conversation whose CLI session is gone.
 */

export const HEADER_USER =
  "<conversation_history>\nThe conversation so far, oldest first. Continue it: answer the final user message that follows the history.\n"
export const HEADER_TOOLS =
  "<conversation_history>\nThe conversation so far, oldest first. It ends with your tool calls; their results follow the history: continue from them.\n"
export const FOOTER = "</conversation_history>\n"

export const toolCallText = (call: ToolCall) => `<tool_call id="${call.id}" name="${call.name}">${call.arguments}</tool_call>\n`

/** A user message's text goes between these (its images, as blocks of their own, in between too). */
export const USER_OPEN = `<message role="user">\n`
export const USER_CLOSE = `\n</message>\n`
export const userText = (text: string) => USER_OPEN + text + USER_CLOSE
export const assistantText = (text: string, calls: ReadonlyArray<ToolCall>) =>
  `<message role="assistant">\n${text}\n${calls.map(toolCallText).join("")}</message>\n`
export const toolText = (id: string, content: string) => `<message role="tool" tool_call_id="${id}">\n${content}\n</message>\n`

/** Recorded messages as a transcript block (system messages are the launch's system prompt, not part of it). */
export const fromHistory = (messages: ReadonlyArray<HistoryMessage>, endsWithTools: boolean): Array<InputBlock> => {
  const body = messages.map((m) => {
    switch (m.role) {
      case "user":
        return userText(m.content ?? "")
      case "assistant":
        return assistantText(m.content ?? "", m.tool_calls ?? [])
      case "tool":
        return toolText(m.tool_call_id ?? "", m.content ?? "")
      default:
        return ""
    }
  }).join("")
  return body === "" ? [] : [{ type: "text", text: (endsWithTools ? HEADER_TOOLS : HEADER_USER) + body + FOOTER }]
}
