#!/usr/bin/env node
import { Command, Options } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Option } from "effect"
import * as fs from "node:fs"
import { GatewayLive } from "./Gateway.js"
import { fromAssignments, GatewayConfig } from "./config/GatewayConfig.js"

// The nearest package.json up from this module (dist/ when installed, build/src/ in benchmarks).
const version = (() => {
  for (let dir = new URL(".", import.meta.url); dir.pathname !== "/"; dir = new URL("..", dir)) {
    const file = new URL("package.json", dir)
    if (fs.existsSync(file)) return String((JSON.parse(fs.readFileSync(file, "utf8")) as { version?: unknown }).version)
  }
  return "unknown"
})()

const options = {
  config: Options.file("config").pipe(Options.withDescription("TOML config file (default: config/local.toml if present)"), Options.optional),
  host: Options.text("host").pipe(Options.withDescription("server.host"), Options.optional),
  port: Options.integer("port").pipe(Options.withDescription("server.port"), Options.optional),
  claudeCommand: Options.text("claude-command").pipe(Options.withDescription("claude.command"), Options.optional),
  logLevel: Options.text("log-level").pipe(Options.withDescription("log.level"), Options.optional),
  set: Options.text("set").pipe(
    Options.withDescription("any config key: --set section.key=value (repeatable)"),
    Options.repeated
  )
}

const gateway = Command.make("claude-code-api", options, (opts) =>
  Effect.gen(function*() {
    const flags = yield* fromAssignments(opts.set)
    const put = (section: string, key: string, value: Option.Option<string | number>) => {
      if (Option.isSome(value)) (flags[section] ??= {})[key] = value.value
    }
    put("server", "host", opts.host)
    put("server", "port", opts.port)
    put("claude", "command", opts.claudeCommand)
    put("log", "level", opts.logLevel)
    const config = GatewayConfig.layerFrom({ file: Option.getOrUndefined(opts.config), env: process.env, flags })
    return yield* Layer.launch(GatewayLive.pipe(Layer.provide(config)))
  }).pipe(
    Effect.catchTag("ConfigError", (error) =>
      Console.error(`claude-code-api: ${error.message}`).pipe(Effect.zipRight(Effect.sync(() => {
        process.exitCode = 1
      }))))
  ))

Command.run(gateway, { name: "claude-code-api", version })(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain
)
