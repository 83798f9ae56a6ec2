import * as crypto from "node:crypto"
import type { TurnEvent, TurnUsage } from "../../domain/Turn.js"
import type { OutputItem, OutputReasoning, ResponseObject, ResponseUsage } from "./Schema.js"

/**
 * TurnEvents → a Responses API response object and its streaming events. One builder per response:
 * each TurnEvent updates the object and yields the events that tell a streaming client the same
 * (`response.output_item.added`, deltas, `.done` events …), every event numbered by
 * `sequence_number`. A non-streaming request uses the same builder and drops the events.
 */

export interface ResponseEvent {
  readonly type: string
  readonly sequence_number: number
  readonly [field: string]: unknown
}

const itemId = (prefix: string) => `${prefix}_${crypto.randomUUID().replaceAll("-", "")}`

export const responseUsage = (usage: TurnUsage): ResponseUsage => {
  // Like OpenAI's, input_tokens include the cached ones; Anthropic reports them separately.
  const input = usage.inputTokens + usage.cacheReadTokens + usage.cacheCreationTokens
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: usage.cacheReadTokens },
    output_tokens: usage.outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + usage.outputTokens
  }
}

/** The `output_text` convenience field of openai-node: all output text, in order. */
export const outputText = (response: ResponseObject) =>
  response.output.flatMap((item) => (item.type === "message" ? item.content.map((part) => part.text) : [])).join("")

export class ResponseBuilder {
  private sequence = 0
  /** Index in `output` of the item deltas go to (a message or reasoning item), while it is open. */
  private open: number | undefined
  /** Output index of each function call, by its position among the turn's calls. */
  private readonly calls = new Map<number, number>()
  costUsd: number | undefined

  constructor(readonly response: ResponseObject) {}

  private event(type: string, fields: Record<string, unknown>): ResponseEvent {
    return { type, ...fields, sequence_number: this.sequence++ }
  }

  private snapshot(): ResponseObject {
    return structuredClone(this.response)
  }

  /** `response.created` and `response.in_progress`. */
  start(): Array<ResponseEvent> {
    return [
      this.event("response.created", { response: this.snapshot() }),
      this.event("response.in_progress", { response: this.snapshot() })
    ]
  }

  private add(item: OutputItem): Array<ResponseEvent> {
    this.response.output.push(item)
    return [this.event("response.output_item.added", { output_index: this.response.output.length - 1, item: structuredClone(item) })]
  }

  /** End the open message or reasoning item. */
  private close(status: "completed" | "incomplete"): Array<ResponseEvent> {
    const index = this.open
    if (index === undefined) return []
    this.open = undefined
    const item = this.response.output[index]!
    const events: Array<ResponseEvent> = []
    if (item.type === "message") {
      const part = item.content[0]!
      const at = { item_id: item.id, output_index: index, content_index: 0 }
      events.push(
        this.event("response.output_text.done", { ...at, text: part.text, logprobs: [] }),
        this.event("response.content_part.done", { ...at, part: structuredClone(part) })
      )
    } else if (item.type === "reasoning") {
      const part = item.summary[0]!
      const at = { item_id: item.id, output_index: index, summary_index: 0 }
      events.push(
        this.event("response.reasoning_summary_text.done", { ...at, text: part.text }),
        this.event("response.reasoning_summary_part.done", { ...at, part: structuredClone(part) })
      )
    }
    item.status = status
    events.push(this.event("response.output_item.done", { output_index: index, item: structuredClone(item) }))
    return events
  }

  private openItem(type: "message" | "reasoning"): Array<ResponseEvent> {
    if (this.open !== undefined && this.response.output[this.open]!.type === type) return []
    const events = this.close("completed")
    if (type === "message") {
      const item: OutputItem = { type: "message", id: itemId("msg"), role: "assistant", status: "in_progress", content: [] }
      events.push(...this.add(item))
      this.open = this.response.output.length - 1
      const part = { type: "output_text" as const, text: "", annotations: [], logprobs: [] }
      item.content.push(part)
      events.push(this.event("response.content_part.added", { item_id: item.id, output_index: this.open, content_index: 0, part: structuredClone(part) }))
    } else {
      const item: OutputReasoning = { type: "reasoning", id: itemId("rs"), summary: [], status: "in_progress" }
      events.push(...this.add(item))
      this.open = this.response.output.length - 1
      const part = { type: "summary_text" as const, text: "" }
      item.summary.push(part)
      events.push(this.event("response.reasoning_summary_part.added", { item_id: item.id, output_index: this.open, summary_index: 0, part: structuredClone(part) }))
    }
    return events
  }

  /** The events that tell a streaming client what `event` changed. */
  apply(event: TurnEvent): Array<ResponseEvent> {
    switch (event._tag) {
      case "Started":
        this.response.model = event.model
        return []
      case "Usage":
        return []
      case "ThinkingDelta": {
        const events = this.openItem("reasoning")
        const item = this.response.output[this.open!] as OutputReasoning
        item.summary[0]!.text += event.text
        events.push(this.event("response.reasoning_summary_text.delta", { item_id: item.id, output_index: this.open, summary_index: 0, delta: event.text }))
        return events
      }
      case "TextDelta": {
        const events = this.openItem("message")
        const item = this.response.output[this.open!]!
        if (item.type === "message") item.content[0]!.text += event.text
        events.push(this.event("response.output_text.delta", { item_id: item.id, output_index: this.open, content_index: 0, delta: event.text, logprobs: [] }))
        return events
      }
      case "ToolCallStarted": {
        const events = this.close("completed")
        events.push(...this.add({ type: "function_call", id: itemId("fc"), call_id: event.id, name: event.name, arguments: "", status: "in_progress" }))
        this.calls.set(event.index, this.response.output.length - 1)
        return events
      }
      case "ToolCallDelta": {
        const index = this.calls.get(event.index)
        const item = index === undefined ? undefined : this.response.output[index]
        if (item?.type !== "function_call") return []
        item.arguments += event.arguments
        return [this.event("response.function_call_arguments.delta", { item_id: item.id, output_index: index, delta: event.arguments })]
      }
      case "Finished": {
        const incomplete = event.reason === "length"
        const status = incomplete ? "incomplete" : "completed"
        const events = this.close(status)
        // The calls as the CLI settled them (the deltas may have been partial).
        for (const [position, call] of (event.toolCalls ?? []).entries()) {
          let index = this.calls.get(position)
          let item = index === undefined ? undefined : this.response.output[index]
          if (item?.type !== "function_call") {
            events.push(...this.add({ type: "function_call", id: itemId("fc"), call_id: call.id, name: call.name, arguments: "", status: "in_progress" }))
            index = this.response.output.length - 1
            item = this.response.output[index]!
            this.calls.set(position, index)
          }
          if (item.type !== "function_call") continue
          item.arguments = call.arguments
          item.status = "completed"
          events.push(
            this.event("response.function_call_arguments.done", { item_id: item.id, output_index: index, name: call.name, arguments: call.arguments }),
            this.event("response.output_item.done", { output_index: index, item: structuredClone(item) })
          )
        }
        this.response.usage = responseUsage(event.usage)
        this.response.status = status
        this.response.incomplete_details = incomplete ? { reason: "max_output_tokens" } : null
        this.costUsd = event.costUsd
        events.push(this.event(incomplete ? "response.incomplete" : "response.completed", { response: this.snapshot() }))
        return events
      }
    }
  }

  /** After a failure: `error`, then `response.failed` with the error on the response. */
  fail(error: { readonly code: string | null; readonly message: string; readonly param: string | null }): Array<ResponseEvent> {
    this.response.status = "failed"
    this.response.error = { code: error.code ?? "server_error", message: error.message }
    return [
      this.event("error", { code: error.code, message: error.message, param: error.param }),
      this.event("response.failed", { response: this.snapshot() })
    ]
  }
}

export const frame = (event: ResponseEvent) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`
