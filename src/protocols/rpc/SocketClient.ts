import { RpcClient } from "@effect/rpc"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromServerEncoded } from "@effect/rpc/RpcMessage"
import { RequestId } from "@effect/rpc/RpcMessage"
import { Effect } from "effect"
import { type Call, makeInbox, type StartCall } from "./DirectStream.js"

/**
 * The client's WebSocket protocol (`RpcClient.makeProtocolSocket`: pings, reconnects, JSON frames)
 * shared by RpcClient and the direct calls (DirectStream): the responses of a direct call go to its
 * own inbox, the rest to RpcClient. A direct call is ended early with an Interrupt. Request ids come from one
 * counter for both, so that they never meet on the socket. Client code only.
 */
export const make = Effect.gen(function*() {
  const inner = yield* RpcClient.makeProtocolSocket()
  const calls = new Map<string, ReturnType<typeof makeInbox>>()
  let ids = BigInt(0)
  const nextId = () => RequestId(ids++)

  const route = (message: FromServerEncoded): boolean => {
    switch (message._tag) {
      case "Chunk":
      case "Exit": {
        const inbox = calls.get(message.requestId)
        if (inbox === undefined) return false
        inbox.offer(message)
        if (message._tag === "Exit") calls.delete(message.requestId)
        return true
      }
      case "Defect":
      case "ClientProtocolError":
        // Fatal to every call on the socket, RpcClient's too.
        for (const inbox of calls.values()) inbox.offer(message)
        calls.clear()
        return false
      default:
        return false
    }
  }

  const protocol: RpcClient.Protocol["Type"] = {
    ...inner,
    run: (f) => inner.run((message) => route(message) ? Effect.void : f(message))
  }

  const start: StartCall = (request): Call => {
    const inbox = makeInbox()
    calls.set(request.id, inbox)
    let send: Effect.Effect<void, RpcClientError> | undefined = inner.send(request)
    let settled = false
    const ack = inner.send({ _tag: "Ack", requestId: request.id })
    // Each chunk is acked as it is read, as RpcClient does, unless it says it needs no Ack (this
    // gateway's direct calls): an older gateway waits for each Ack before it sends the next chunk.
    const acked = Effect.tap(inbox.pull, (batch) => {
      if (batch === undefined) return Effect.void
      let chunks = 0
      for (const message of batch) if (message._tag === "Chunk" && (message as { readonly ack?: unknown }).ack !== false) chunks++
      return chunks === 0 ? Effect.void : chunks === 1 ? ack : Effect.repeatN(ack, chunks - 1)
    })
    return {
      // The request goes out with the first pull (a socket that is down fails it at once).
      pull: Effect.suspend(() => {
        if (send === undefined) return acked
        const sending = send
        send = undefined
        return Effect.zipRight(sending, acked)
      }),
      settle: () => {
        settled = true
      },
      abort: Effect.suspend(() => {
        if (settled || !calls.delete(request.id)) return Effect.void
        return Effect.ignore(inner.send({ _tag: "Interrupt", requestId: request.id }))
      })
    }
  }
  return { protocol, start, nextId } as const
})
