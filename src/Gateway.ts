import { Effect, Layer, Logger, LogLevel } from "effect"
import { GatewayConfig } from "./config/GatewayConfig.js"
import { ServerLive } from "./http/Server.js"


const levels = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  none: LogLevel.None
} as const

/** The whole gateway: HTTP server, services and logging, configured by GatewayConfig. */
export const GatewayLive = Layer.unwrapEffect(
  Effect.map(GatewayConfig, ({ config }) =>
    ServerLive.pipe(Layer.provide(Logger.minimumLogLevel(levels[config.log.level]))))
)
