import { Command, CommandExecutor } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { NodeContext } from "@effect/platform-node"
import { Context, Deferred, Effect, Either, PubSub, Queue, Stream } from "effect"
import * as fs from "node:fs"
import type { Config } from "../GatewayConfig.js"
import { GatewayConfig } from "../GatewayConfig.js"
import type { LaunchOptions } from "../Turn.js"
import { CliExited, CliNotFound, CliSpawnFailed, ControlRequestFailed } from "./CliErrors.js"
import type { CliError } from "./CliErrors.js"
import { type CliMessage, type ControlRequest, decodeCliLine, encodeStdinLine, type InputBlock, userInput } from "./Protocol.js"

/**
 * One running Claude Code CLI in kept-alive stream-json mode. A process serves one conversation:
 * one reader fiber decodes stdout and fans out, one writer fiber feeds stdin, stderr is drained,
 * control requests are answered in-process, and closing the scope kills the process group
 * (SIGTERM, then SIGKILL).
 */
export interface CliHandle {
  readonly pid: number
  /** Write one user message; the stream ends with the turn's `result` (inclusive). */
  readonly turn: (input: ReadonlyArray<InputBlock>) => Stream.Stream<CliMessage, CliError>
  /** Send a control request and wait for its response payload. */
  readonly control: (
    subtype: string,
    fields?: Record<string, unknown>
  ) => Effect.Effect<unknown, CliError | ControlRequestFailed>
  readonly isRunning: Effect.Effect<boolean>
  /** Completes when the process has exited (its stdout ended). */
  readonly exited: Effect.Effect<CliExited>
}

/** Answers the CLI's own control requests (permission prompts, MCP messages…). */
export type ControlHandler = (request: ControlRequest) => Effect.Effect<unknown, string>

const refuseAll: ControlHandler = (request) =>
  Effect.fail(`the gateway does not handle ${request.request.subtype} requests`)

/** The environment the CLI inherits from; tests replace it so nothing leaks from the shell. */
export class CliEnvironment extends Context.Reference<CliEnvironment>()("CliEnvironment", {
  defaultValue: (): Readonly<Record<string, string | undefined>> => process.env
}) {}

// Variables that make sense for the CLI; the rest of the gateway's environment stays behind.
const PASS = new Set(["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "TERM", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "IS_SANDBOX"])
const PASS_PREFIXES = ["LC_", "ANTHROPIC_", "CLAUDE_", "AWS_", "GOOGLE_", "CLOUD_ML_", "VERTEX_", "API_TIMEOUT_MS"]

export const cliEnv = (
  inherited: Readonly<Record<string, string | undefined>>,
  config: Config
): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(inherited)) {
    if (value === undefined || name.startsWith("CLAUDE_CODE__")) continue
    if (PASS.has(name) || PASS_PREFIXES.some((p) => name.startsWith(p))) env[name] = value
  }
  env.CLAUDE_CODE_MAX_RETRIES = String(config.claude.max_retries)
  env.BUN_ENABLE_CRASH_REPORTING ??= "0"
  return env
}

export const cliArgs = (config: Config, launch: LaunchOptions): Array<string> => {
  const args = [
    "-p",
    "--input-format", "stream-json",
    "--output-format", "stream-json",
    "--verbose",
    "--include-partial-messages",
    "--model", launch.model,
    "--permission-mode", config.claude.permission_mode
  ]
  const tools = config.claude.tools
  if (!(tools.length === 1 && tools[0] === "default")) args.push("--tools", tools.join(","))
  if (launch.systemPrompt !== undefined) args.push("--system-prompt", launch.systemPrompt)
  return args
}

type Signal =
  | { readonly _tag: "Message"; readonly message: CliMessage }
  | { readonly _tag: "Closed"; readonly error: CliExited }

const STDERR_TAIL = 4096

const toSpawnError = (command: string) => (error: PlatformError): CliError =>
  error._tag === "SystemError" && error.reason === "NotFound" && error.module === "Command"
    ? new CliNotFound({ command })
    : new CliSpawnFailed({ command, reason: error.message })

export class CliProcess extends Effect.Service<CliProcess>()("CliProcess", {
  effect: Effect.gen(function*() {
    const executor = yield* CommandExecutor.CommandExecutor
    const { config } = yield* GatewayConfig
    const inherited = yield* CliEnvironment
    const env = cliEnv(inherited, config)
    yield* Effect.sync(() => fs.mkdirSync(config.claude.workspace, { recursive: true }))

    const spawn = (launch: LaunchOptions, onControl: ControlHandler = refuseAll) =>
      Effect.gen(function*() {
        const commandName = config.claude.command
        const command = Command.make(commandName, ...cliArgs(config, launch)).pipe(
          Command.workingDirectory(config.claude.workspace),
          Command.env(env, { extendEnv: false })
        )
        const proc = yield* Command.start(command).pipe(
          Effect.provideService(CommandExecutor.CommandExecutor, executor),
          Effect.mapError(toSpawnError(commandName))
        )
        const processRunning = Effect.orElseSucceed(proc.isRunning, () => false)
        // Registered after Command.start so it runs first: the built-in release waits forever
        // for a child that ignores SIGTERM.
        yield* Effect.addFinalizer(() =>
          Effect.whenEffect(
            proc.kill("SIGTERM").pipe(
              Effect.interruptible,
              Effect.timeout("500 millis"),
              Effect.catchAll(() => proc.kill("SIGKILL")),
              Effect.ignore
            ),
            processRunning
          )
        )
        const log = Effect.annotateLogs({ pid: proc.pid })

        const scope = yield* Effect.scope
        const signals = yield* PubSub.unbounded<Signal>()
        const closed = yield* Deferred.make<never, CliExited>()
        const stdin = yield* Queue.unbounded<string>()
        const pending = new Map<string, { readonly subtype: string; readonly waiter: Deferred.Deferred<unknown, ControlRequestFailed | CliExited> }>()
        let stderrTail = ""
        let nextId = 0

        yield* proc.stderr.pipe(
          Stream.decodeText(),
          Stream.runForEach((text) =>
            Effect.sync(() => {
              stderrTail = (stderrTail + text).slice(-STDERR_TAIL)
            }).pipe(Effect.zipRight(Effect.logDebug("cli stderr", text.trimEnd())), log)
          ),
          Effect.ignore,
          Effect.forkScoped
        )

        yield* Stream.fromQueue(stdin).pipe(
          Stream.encodeText,
          Stream.run(proc.stdin),
          Effect.catchAll((error) => Effect.logDebug("cli stdin closed", error.message).pipe(log)),
          Effect.forkScoped
        )

        const answer = (request: ControlRequest) =>
          onControl(request).pipe(
            Effect.match({
              onFailure: (error) => ({ subtype: "error" as const, request_id: request.request_id, error }),
              onSuccess: (response) => ({ subtype: "success" as const, request_id: request.request_id, response })
            }),
            Effect.flatMap((response) =>
              Queue.offer(stdin, encodeStdinLine({ type: "control_response", response }))
            )
          )

        const onLine = (line: string): Effect.Effect<void> => {
          if (line.trim() === "") return Effect.void
          const decoded = decodeCliLine(line)
          if (Either.isLeft(decoded)) {
            return Effect.logWarning("skipping unreadable CLI line", decoded.left.message, decoded.left.line).pipe(log)
          }
          const message = decoded.right
          switch (message._tag) {
            case "ControlResponse": {
              const entry = pending.get(message.response.request_id)
              if (!entry) return Effect.void
              pending.delete(message.response.request_id)
              const response = message.response
              return response.subtype === "success"
                ? Deferred.succeed(entry.waiter, response.response)
                : Deferred.fail(entry.waiter, new ControlRequestFailed({ subtype: entry.subtype, reason: response.error }))
            }
            case "ControlRequest":
              return Effect.asVoid(Effect.forkIn(answer(message), scope))
            case "SystemNotice":
              if (message.subtype === "api_retry") {
                return Effect.logInfo("upstream retry", message.raw).pipe(
                  Effect.zipRight(PubSub.publish(signals, { _tag: "Message", message })),
                  log
                )
              }
              return PubSub.publish(signals, { _tag: "Message", message })
            default:
              return PubSub.publish(signals, { _tag: "Message", message })
          }
        }

        // Whatever ends the reader (end of stdout, or the scope closing), waiting turns and
        // control requests learn that the process is gone.
        const announceClosed = (code: number | null) =>
          Effect.gen(function*() {
            const error = new CliExited({ code, stderrTail })
            if (!(yield* Deferred.fail(closed, error))) return
            for (const entry of pending.values()) yield* Deferred.fail(entry.waiter, error)
            pending.clear()
            yield* PubSub.publish(signals, { _tag: "Closed", error })
            yield* Effect.logDebug("cli exited", { code }).pipe(log)
          })
        yield* proc.stdout.pipe(
          Stream.decodeText(),
          Stream.splitLines,
          Stream.runForEach(onLine),
          Effect.ignore,
          Effect.zipRight(proc.exitCode.pipe(
            Effect.timeout("2 seconds"),
            Effect.option,
            Effect.flatMap((exit) => announceClosed(exit._tag === "Some" ? Number(exit.value) : null))
          )),
          Effect.onInterrupt(() => announceClosed(null)),
          Effect.forkIn(scope)
        )

        const failIfClosed = Effect.flatMap(Deferred.isDone(closed), (done) => (done ? Deferred.await(closed) : Effect.void))

        const turn = (input: ReadonlyArray<InputBlock>): Stream.Stream<CliMessage, CliError> =>
          Stream.unwrapScoped(
            Effect.gen(function*() {
              // Subscribe before writing, so no line of this turn can be missed.
              const subscription = yield* PubSub.subscribe(signals)
              yield* failIfClosed
              yield* Queue.offer(stdin, encodeStdinLine(userInput(input)))
              return Stream.fromQueue(subscription).pipe(
                Stream.takeUntil((s) => s._tag === "Closed" || s.message._tag === "ResultMessage"),
                Stream.mapEffect((s) => (s._tag === "Closed" ? Effect.fail(s.error) : Effect.succeed(s.message)))
              )
            })
          )

        const control = (subtype: string, fields: Record<string, unknown> = {}) =>
          Effect.gen(function*() {
            yield* failIfClosed
            const requestId = `gw_${++nextId}`
            const waiter = yield* Deferred.make<unknown, ControlRequestFailed | CliExited>()
            pending.set(requestId, { subtype, waiter })
            yield* Queue.offer(
              stdin,
              encodeStdinLine({ type: "control_request", request_id: requestId, request: { ...fields, subtype } })
            )
            return yield* Deferred.await(waiter)
          })

        const exited = Effect.flip(Deferred.await(closed))
        // stdout ends as soon as the process dies; its exit event may come later.
        const isRunning = Effect.zipWith(processRunning, Deferred.isDone(closed), (running, done) => running && !done)
        return { pid: proc.pid, turn, control, isRunning, exited } satisfies CliHandle
      })

    return { spawn } as const
  }),
  dependencies: [NodeContext.layer]
}) {}
