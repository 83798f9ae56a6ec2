import { HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Schema } from "effect"
import { Authorization } from "../../http/auth.js"
import { CreateSession, SessionDeleted, SessionList, SessionObject, SessionTicket } from "./Messages.js"

/**
 * /v1/sessions (handlers in Http.ts). The WebSocket, GET /v1/sessions/{id}/ws, is a plain route
 * (Socket.ts): it upgrades, and it takes a ticket instead of a key.
 */

const IdPath = Schema.Struct({ id: Schema.String })

export class SessionsApi extends HttpApiGroup.make("sessions")
  .add(HttpApiEndpoint.post("createSession", "/v1/sessions").setPayload(CreateSession).addSuccess(SessionObject, { status: 201 }))
  .add(HttpApiEndpoint.get("listSessions", "/v1/sessions").addSuccess(SessionList))
  .add(HttpApiEndpoint.get("retrieveSession", "/v1/sessions/:id").setPath(IdPath).addSuccess(SessionObject))
  .add(HttpApiEndpoint.del("deleteSession", "/v1/sessions/:id").setPath(IdPath).addSuccess(SessionDeleted))
  .add(HttpApiEndpoint.post("createSessionTicket", "/v1/sessions/:id/ticket").setPath(IdPath).addSuccess(SessionTicket, { status: 201 }))
  .middleware(Authorization)
{}
