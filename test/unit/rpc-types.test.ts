import type { Rpc, RpcGroup } from "@effect/rpc"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import type { Effect, Layer, Stream } from "effect"
import { describe, expectTypeOf, it } from "vitest"
import type { ChatError, ChatEvent, ChatRequest, GatewayClientService, InvalidRequest, SessionEvent, SessionNotFound, SessionRefused, Unauthorized } from "../../src/client.js"
import type { GatewayRpcs } from "../../src/protocols/rpc/Api.js"
import type { GatewayRpcsLive } from "../../src/protocols/rpc/Http.js"

// Compile-time checks (tsc runs over test/): the client and the server are typed by the one group
// in src/protocols/rpc/Api.ts, so a change on one side that the other does not follow fails here.

type Rpcs = RpcGroup.Rpcs<typeof GatewayRpcs>

describe("the RPC client's types are the server group's", () => {
  it("serves exactly the group's handlers", () => {
    expectTypeOf<Layer.Layer.Success<typeof GatewayRpcsLive>>().toEqualTypeOf<Rpc.ToHandler<Rpcs>>()
  })

  it("Chat takes the shared request and streams the shared events and errors", () => {
    // Never called: only its type is looked at.
    const chat = (client: GatewayClientService, request: ChatRequest) => client.Chat(request)
    expectTypeOf<ReturnType<typeof chat>>().toEqualTypeOf<Stream.Stream<ChatEvent, ChatError | Unauthorized | RpcClientError>>()
    expectTypeOf<Parameters<GatewayClientService["Chat"]>[0]>().toEqualTypeOf<ChatRequest>()
    expectTypeOf<{ readonly input: number }>().not.toMatchTypeOf<ChatRequest>()
  })

  it("the other calls return the group's success and error types", () => {
    const get = (client: GatewayClientService) => client.GetConversation({ id: "conv_1" })
    type Get = ReturnType<typeof get>
    expectTypeOf<Effect.Effect.Success<Get>>().toEqualTypeOf<Rpc.Success<Extract<Rpcs, { readonly _tag: "GetConversation" }>>>()
    expectTypeOf<Effect.Effect.Error<Get>["_tag"]>().toEqualTypeOf<"ConversationNotFound" | "Unauthorized" | "RpcClientError">()
  })

  it("SessionEvents streams the sessions protocol's events with typed errors", () => {
    const events = (client: GatewayClientService) => client.SessionEvents({ id: "sess_1", after: 3 })
    expectTypeOf<ReturnType<typeof events>>().toEqualTypeOf<Stream.Stream<SessionEvent, SessionNotFound | InvalidRequest | SessionRefused | Unauthorized | RpcClientError>>()
    expectTypeOf<SessionEvent["type"]>().toEqualTypeOf<
      "hello" | "state" | "turn_started" | "text_delta" | "thinking_delta" | "tool_use" | "tool_result" | "permission_request" | "permission_resolved" | "result" | "model_changed" | "permission_mode_changed" | "error"
    >()
  })
})
