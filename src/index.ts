/**
 * claude-code-api as a library: the gateway's layers, its services, its configuration and the
 * dialect-neutral domain types, for Effect apps that embed the gateway (see docs/embedding.md).
 */

// The whole gateway, or its parts.
export { ApiLive, GatewayLive, GatewayServices, ServerLive } from "./Gateway.js"

// Configuration.
export { type Config, ConfigError, ConfigSchema, GatewayConfig, loadConfig } from "./config/GatewayConfig.js"

// Services (each an Effect.Service with Default and DefaultWithoutDependencies).
export { Admission, type AdmissionStats } from "./services/Admission.js"
export { ChatService, type TurnResult } from "./services/ChatService.js"
export { Conversations } from "./services/Conversations.js"
export { ImageFetcher } from "./services/ImageFetcher.js"
export { type CatalogEntry, type CatalogState, type CliInfo, ModelCatalog } from "./services/ModelCatalog.js"
export { Pool, type PoolStats } from "./services/Pool.js"
export { ToolBridge } from "./services/ToolBridge.js"
export { type Conversation, type ConversationInit, ConversationStore, StoredMessage } from "./store/ConversationStore.js"
export { type ResponseRecord, ResponseStore } from "./store/ResponseStore.js"
export { CliEnvironment, CliProcess } from "./cli/CliProcess.js"
export { type Attachment, type SessionEvent, SessionLimitReached, SessionNotFound, Sessions } from "./services/Sessions.js"
export { type SessionRecord, SessionSettings, SessionStore } from "./store/SessionStore.js"
// The sessions' HTTP shapes and WebSocket messages (docs/api/sessions.md).
export * as SessionMessages from "./protocols/sessions/Messages.js"

// Domain: the turn every dialect translates to and from, and the errors that cross a wire.
export {
  type ClientTool,
  type ConversationRef,
  type FinishReason,
  type HistoryMessage,
  historyMessage,
  ImageMediaType,
  InputBlock,
  type LaunchOptions,
  type ToolCall,
  type ToolResult,
  TurnEvent,
  TurnFailed,
  type TurnRequest,
  type TurnUsage,
  UpstreamError
} from "./domain/Turn.js"
export {
  ConversationNotFound,
  InvalidRequest,
  ModelNotFound,
  Overloaded,
  type RequestError,
  ResponseNotFound,
  RouteNotFound,
  Unauthorized
} from "./domain/errors.js"
export {
  type CliError,
  CliExited,
  CliNotFound,
  CliProtocolError,
  CliSpawnFailed,
  CliTimeout,
  ControlRequestFailed
} from "./cli/CliErrors.js"
