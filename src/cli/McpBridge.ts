import { Deferred, Effect, Either, Schema } from "effect"
import { CLIENT_TOOL_SERVER, type ClientTool, TOOL_PREFIX, type ToolResult } from "../domain/Turn.js"
import type { ControlRequest } from "./Protocol.js"

/**
 * The client's functions as an in-process MCP server of one CLI process. The CLI reaches it with
 * `mcp_message` control requests carrying JSON-RPC: the handshake and `tools/list` are answered
 * from the launch's tools; a `tools/call` waits until the client's result is supplied (the turn is
 * parked meanwhile). The CLI calls a message's tools one after another, so results that arrive
 * before their call are kept for it.
 */

export const SERVER_NAME = CLIENT_TOOL_SERVER
export { TOOL_PREFIX }

/** The `--mcp-config` value that declares the server. */
export const SERVER_CONFIG = JSON.stringify({ mcpServers: { [SERVER_NAME]: { type: "sdk", name: SERVER_NAME } } })

const JsonRpc = Schema.Struct({
  id: Schema.optional(Schema.Union(Schema.Number, Schema.String)),
  method: Schema.String,
  params: Schema.optional(Schema.Unknown)
})
const McpMessage = Schema.Struct({ server_name: Schema.String, message: JsonRpc })
const CallParams = Schema.Struct({
  name: Schema.String,
  _meta: Schema.Struct({ "claudecode/toolUseId": Schema.String })
})
const decodeMessage = Schema.decodeUnknownEither(McpMessage)
const decodeCall = Schema.decodeUnknownEither(CallParams)
// The server answers with the protocol version the CLI asks for.
const decodeInitialize = Schema.decodeUnknownEither(Schema.Struct({ protocolVersion: Schema.String }))

interface CallResult {
  readonly content: ReadonlyArray<{ readonly type: "text"; readonly text: string }>
  readonly isError?: boolean
}

const textResult = (text: string, isError = false): CallResult => ({ content: [{ type: "text", text }], ...(isError ? { isError } : {}) })

export interface McpBridge {
  /** Answers the CLI's `mcp_message` control requests (and refuses every other kind). */
  readonly handler: (request: ControlRequest) => Effect.Effect<unknown, string>
  /** The client's results: waiting calls are answered now, the others when the CLI asks. */
  readonly supply: (results: ReadonlyArray<ToolResult>) => Effect.Effect<void>
}

export const makeMcpBridge = (tools: ReadonlyArray<ClientTool>): McpBridge => {
  const known = new Set(tools.map((tool) => tool.name))
  const listed = tools.map((tool) => ({
    name: tool.name,
    ...(tool.description !== undefined ? { description: tool.description } : {}),
    inputSchema: tool.parameters
  }))
  const supplied = new Map<string, CallResult>()
  const waiting = new Map<string, Deferred.Deferred<CallResult>>()

  const call = (params: unknown): Effect.Effect<CallResult> => {
    const decoded = decodeCall(params)
    if (Either.isLeft(decoded)) return Effect.succeed(textResult("The gateway could not read this tool call.", true))
    const { name, _meta } = decoded.right
    if (!known.has(name)) return Effect.succeed(textResult(`No such tool: ${name}.`, true))
    const id = _meta["claudecode/toolUseId"]
    const ready = supplied.get(id)
    if (ready !== undefined) {
      supplied.delete(id)
      return Effect.succeed(ready)
    }
    return Effect.flatMap(Deferred.make<CallResult>(), (deferred) => {
      waiting.set(id, deferred)
      return Deferred.await(deferred).pipe(Effect.ensuring(Effect.sync(() => waiting.delete(id))))
    })
  }

  const respond = (message: typeof JsonRpc.Type): Effect.Effect<unknown> => {
    switch (message.method) {
      case "initialize": {
        const asked = decodeInitialize(message.params)
        return Effect.succeed({
          protocolVersion: Either.isRight(asked) ? asked.right.protocolVersion : "2025-06-18",
          capabilities: { tools: {} },
          serverInfo: { name: SERVER_NAME, version: "1.0.0" }
        })
      }
      case "tools/list":
        return Effect.succeed({ tools: listed })
      case "tools/call":
        return call(message.params)
      default:
        // notifications/initialized, ping and the like need no more than an empty result.
        return Effect.succeed({})
    }
  }

  const handler = (request: ControlRequest): Effect.Effect<unknown, string> => {
    if (request.request.subtype !== "mcp_message") {
      return Effect.fail(`the gateway does not handle ${request.request.subtype} requests`)
    }
    const decoded = decodeMessage(request.request)
    if (Either.isLeft(decoded) || decoded.right.server_name !== SERVER_NAME) {
      return Effect.fail("unknown MCP server or unreadable message")
    }
    const message = decoded.right.message
    // A notification (no id) is acknowledged with an empty result and no id of its own.
    return Effect.map(respond(message), (result) => ({
      mcp_response: { jsonrpc: "2.0", ...(message.id !== undefined ? { id: message.id } : {}), result }
    }))
  }

  const supply = (results: ReadonlyArray<ToolResult>): Effect.Effect<void> =>
    Effect.forEach(results, ({ content, id }): Effect.Effect<void> => {
      const deferred = waiting.get(id)
      if (deferred === undefined) return Effect.sync(() => void supplied.set(id, textResult(content)))
      return Deferred.succeed(deferred, textResult(content))
    }, { discard: true })

  return { handler, supply }
}
