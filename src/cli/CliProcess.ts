import { Chunk, Context, Deferred, Effect, Either, Exit, FiberId, FiberSet, Option, Runtime, Schedule, Scope, Stream } from "effect"
import { type ChildProcess, spawn as spawnChild, spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Config } from "../config/GatewayConfig.js"
import { GatewayConfig } from "../config/GatewayConfig.js"
import type { InputBlock, LaunchOptions } from "../domain/Turn.js"
import { makeMcpBridge, type McpBridge, SERVER_CONFIG, TOOL_PREFIX } from "./McpBridge.js"
import { CliExited, CliNotFound, CliProtocolError, CliSpawnFailed, ControlRequestFailed } from "./CliErrors.js"
import type { CliError } from "./CliErrors.js"
import {
  type CliMessage,
  commandInput,
  type ControlRequest,
  decodeCliLine,
  encodeStdinLine,
  type StdinLine,
  userInput
} from "./Protocol.js"

/**
 * One running Claude Code CLI in kept-alive stream-json mode. It runs one conversation at a time
 * (the pool may `reset` it for the next): stdout is decoded line by line into the running turn, stderr is drained (its tail kept for
 * errors), control requests are answered in-process, and closing the scope kills the process
 * group (SIGTERM, then SIGKILL after 500 ms).
 */
export interface CliHandle {
  readonly pid: number
  /** Write one user message; the stream ends with the turn's `result` (inclusive). */
  readonly turn: (input: ReadonlyArray<InputBlock>) => Stream.Stream<CliMessage, CliError>
  /** The same as a pull that reads until `scope` closes: batches of messages, None after the result. */
  readonly read: (input: ReadonlyArray<InputBlock>, scope: Scope.Scope) => Effect.Effect<Effect.Effect<Chunk.Chunk<CliMessage>, Option.Option<CliError>>>
  /** Send a control request and wait for its response payload. */
  readonly control: (
    subtype: string,
    fields?: Record<string, unknown>
  ) => Effect.Effect<unknown, CliError | ControlRequestFailed>
  /** The CLI answered its `initialize` (sent at spawn): it is booted and takes control requests. */
  readonly ready: Effect.Effect<void, CliError | ControlRequestFailed>
  /**
   * Start a new, empty conversation in this process, leaving the previous one resumable (§1.11 of
   * the protocol notes): `/clear` opens a new session, then a rewind onto that session's first row
   * drops the command's own traces. The next turn is upstream exactly a fresh process's first one.
   */
  readonly reset: Effect.Effect<void, CliError | ControlRequestFailed>
  readonly isRunning: Effect.Effect<boolean>
  /** Running and between turns: the last user message has its result. */
  readonly isIdle: Effect.Effect<boolean>
  /** Completes when the turn in flight has its result (true, at once if none is) or the process has exited (false). */
  readonly whenIdle: Effect.Effect<boolean>
  /** Completes when the process has exited (its stdout ended). */
  readonly exited: Effect.Effect<CliExited>
  /** Fail the turn being read with `error` (its stream ends with it); nothing when no turn is. Callable from a timer. */
  readonly cutTurn: (error: CliError) => void
  /** The client's functions served to this process (absent when its launch offers none). */
  readonly tools: McpBridge | undefined
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
const PASS = new Set([
  "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "TERM",
  "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR",
  "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
  "IS_SANDBOX", "MAX_THINKING_TOKENS", "MCP_TIMEOUT", "MCP_TOOL_TIMEOUT", "DISABLE_TELEMETRY",
  "DISABLE_ERROR_REPORTING", "DISABLE_AUTOUPDATER", "BASH_DEFAULT_TIMEOUT_MS", "BASH_MAX_TIMEOUT_MS"
])
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
  env.BUN_ENABLE_CRASH_REPORTING = "0"
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
    "--permission-mode", launch.permissionMode ?? config.claude.permission_mode
  ]
  if (launch.permissionPrompts === true) args.push("--permission-prompt-tool", "stdio")
  if (config.claude.bare) args.push("--bare")
  const { tools, add_dirs, mcp_config, mcp_strict, fallback_model } = config.claude
  const allowed_tools = launch.allowedTools ?? config.claude.allowed_tools
  const disallowed_tools = launch.disallowedTools ?? config.claude.disallowed_tools
  const max_budget_usd = launch.maxBudgetUsd ?? config.claude.max_budget_usd
  const clientTools = launch.tools ?? []
  // With client functions the CLI's own tools and MCP servers stay off unless config keeps both.
  const builtin = clientTools.length === 0 || config.tools.with_builtin
  const allowed = [...(builtin ? allowed_tools : []), ...clientTools.map((tool) => TOOL_PREFIX + tool.name)]
  if (!builtin) args.push("--tools", "")
  else if (!(tools.length === 1 && tools[0] === "default")) args.push("--tools", tools.join(","))
  if (allowed.length > 0) args.push("--allowedTools", allowed.join(","))
  if (builtin && disallowed_tools.length > 0) args.push("--disallowedTools", disallowed_tools.join(","))
  for (const dir of add_dirs) args.push("--add-dir", dir)
  const mcp = [...(clientTools.length > 0 ? [SERVER_CONFIG] : []), ...(builtin && mcp_config !== undefined ? [mcp_config] : [])]
  if (mcp.length > 0) args.push("--mcp-config", ...mcp)
  if (!builtin || mcp_strict) args.push("--strict-mcp-config")
  if (fallback_model !== undefined) args.push("--fallback-model", fallback_model)
  if (max_budget_usd !== undefined) args.push("--max-budget-usd", String(max_budget_usd))
  if (launch.effort !== undefined) args.push("--effort", launch.effort)
  if (launch.jsonSchema !== undefined) args.push("--json-schema", launch.jsonSchema)
  if (launch.systemPrompt !== undefined) args.push("--system-prompt", launch.systemPrompt)
  if (launch.toolInstruction !== undefined) args.push("--append-system-prompt", launch.toolInstruction)
  if (launch.resume !== undefined) args.push("--resume", launch.resume)
  return args
}

/** Per-launch environment on top of the built one. */
export const launchEnv = (config: Config, launch: LaunchOptions): Record<string, string> => ({
  ...(launch.maxOutputTokens === undefined ? {} : { CLAUDE_CODE_MAX_OUTPUT_TOKENS: String(launch.maxOutputTokens) }),
  // A parked call may wait for the client as long as the park lasts (the CLI's own limit is shorter).
  ...(launch.tools === undefined ? {} : { MCP_TOOL_TIMEOUT: String((config.tools.park_ttl_seconds + 60) * 1000) })
})

/** Two launches share standbys exactly when their argv, environment and client tools are equal. */
export const launchSignature = (config: Config, launch: LaunchOptions): string =>
  JSON.stringify([cliArgs(config, launch), launchEnv(config, launch), launch.tools ?? [], launch.cwd ?? null])

/** The end of a turn's output: after its result (no error), or its failure. */
class TurnEnd {
  constructor(readonly error: CliError | undefined) {}
}
const END = new TurnEnd(undefined)

/** What a running turn's reader is handed: a CLI message (as it is: no wrapper per line) or the end. */
type Signal = CliMessage | TurnEnd

type Pull = Effect.Effect<Chunk.Chunk<CliMessage>, Option.Option<CliError>>

/**
 * A running turn's output on its way to the reader: what the CLI printed since the last pull, handed
 * over at once (a 'data' event's lines wake a waiting reader once, as one chunk). A plain array and
 * one waiting callback instead of an Effect Queue, whose `takeBetween` first handed over a single
 * line and cost a later turn ~57 run-loop steps more (bench/README.md, "Per-request CPU"). Unbounded,
 * as the queue was: stdout is never paused, a turn's output is read as it comes.
 */
class TurnOutput {
  private signals: Array<Signal> = []
  private waiting: ((pulled: Pull) => void) | undefined
  /** The end, once a pull has reached it (after the messages before it). */
  private end: Option.Option<CliError> | undefined
  push(signal: Signal) {
    if (this.end === undefined) this.signals.push(signal)
  }
  /** Hand what was pushed to a reader that waits for it. */
  wake() {
    const resume = this.waiting
    if (resume === undefined || this.signals.length === 0) return
    this.waiting = undefined
    resume(this.take())
  }
  private take(): Pull {
    if (this.end !== undefined) return Effect.fail(this.end)
    const messages: Array<CliMessage> = []
    for (const signal of this.signals) {
      if (signal instanceof TurnEnd) {
        this.end = Option.fromNullable(signal.error)
        break
      }
      messages.push(signal)
    }
    this.signals = []
    return messages.length > 0 ? Effect.succeed(Chunk.unsafeFromArray(messages)) : Effect.fail(this.end!)
  }
  private readonly wait: Pull = Effect.async((resume) => {
    this.waiting = resume
    return Effect.sync(() => {
      if (this.waiting === resume) this.waiting = undefined
    })
  })
  /** The next batch of messages; fails with the end (None after the result) once they are all read. */
  readonly pull: Pull = Effect.suspend(() => this.end !== undefined || this.signals.length > 0 ? this.take() : this.wait)
}

const STDERR_TAIL = 4096

const signalGroup = (child: ChildProcess, signal: NodeJS.Signals) => {
  try {
    // Detached: the CLI leads its own process group, which also holds its tools and MCP servers.
    process.kill(-child.pid!, signal)
  } catch {
    // already gone
  }
}

/**
 * SIGTERM the group, SIGKILL it after 500 ms. A leader that has already exited took its group's
 * leftovers with it (see `start`): its pid may be reused by now, so it is not signalled again.
 */
const terminate = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const escalate = setTimeout(() => signalGroup(child, "SIGKILL"), 500)
    child.once("exit", () => {
      clearTimeout(escalate)
      signalGroup(child, "SIGKILL") // leftovers of the group
      resume(Effect.void)
    })
    signalGroup(child, "SIGTERM")
  })

/** The executable `command` names (a path, or a name looked up in PATH), if there is one. */
const resolveExecutable = (command: string, searchPath: string | undefined): string | undefined => {
  const candidates = command.includes("/") ? [command] : (searchPath ?? "").split(":").filter((dir) => dir !== "").map((dir) => path.join(dir, command))
  return candidates.find((file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK)
      return fs.statSync(file).isFile()
    } catch {
      return false
    }
  })
}

/** `setpriv`, if it is there and can set a parent-death signal (Linux). */
const parentDeathWrapper = (): string | undefined => {
  const setpriv = resolveExecutable("setpriv", process.env.PATH ?? "/usr/bin:/bin")
  if (setpriv === undefined) return undefined
  return spawnSync(setpriv, ["--pdeathsig", "KILL", "--", "true"], { stdio: "ignore", timeout: 5000 }).status === 0 ? setpriv : undefined
}

export class CliProcess extends Effect.Service<CliProcess>()("CliProcess", {
  effect: Effect.gen(function*() {
    const { config } = yield* GatewayConfig
    const inherited = yield* CliEnvironment
    const env = cliEnv(inherited, config)
    const serviceRuntime = yield* Effect.runtime<never>()
    const command = config.claude.command
    const cwd = config.claude.workspace
    yield* Effect.sync(() => fs.mkdirSync(cwd, { recursive: true }))

    // A CLI must not outlive the gateway, however it dies (SIGKILL, OOM): the kernel kills it when
    // the gateway does (parent-death signal, set by util-linux `setpriv` before it execs the CLI).
    const deathSignal = yield* Effect.sync(parentDeathWrapper)
    if (deathSignal === undefined) {
      yield* Effect.logWarning("setpriv (util-linux) not found: CLI processes will outlive the gateway if it is killed")
    }

    // Where the CLI keeps its session transcripts: <config dir>/projects/<cwd slug>/<session>.jsonl.
    const projects = path.join(env.CLAUDE_CONFIG_DIR ?? path.join(env.HOME ?? os.homedir(), ".claude"), "projects")
    const transcript = (sessionId: string): string | undefined => {
      try {
        return fs.readdirSync(projects).map((dir) => path.join(projects, dir, `${sessionId}.jsonl`)).find((file) => fs.existsSync(file))
      } catch {
        return undefined
      }
    }

    /** Whether the CLI still has a session's transcript (so that `--resume` can continue it). */
    const hasSession = (sessionId: string) => Effect.sync(() => transcript(sessionId) !== undefined)

    /** The uuid of a session's first user row, once its transcript holds one. */
    const firstUserRow = (sessionId: string) =>
      Effect.sync(() => {
        const file = transcript(sessionId)
        if (file === undefined) return undefined
        for (const line of fs.readFileSync(file, "utf8").split("\n")) {
          if (!line.includes('"user"')) continue
          try {
            const row: unknown = JSON.parse(line)
            if (typeof row === "object" && row !== null && "type" in row && row.type === "user" && "uuid" in row && typeof row.uuid === "string") {
              return row.uuid
            }
          } catch {
            // a row still being written
          }
        }
        return undefined
      })

    // Plain node:child_process with callbacks: a spawn per conversation and a callback per line
    // are the hot path, and this keeps them to a few allocations (see bench/).
    const start = (launch: LaunchOptions) =>
      Effect.acquireRelease(
        Effect.async<ChildProcess, CliError>((resume) => {
          const extra = launchEnv(config, launch)
          const executable = deathSignal === undefined ? command : resolveExecutable(command, env.PATH)
          // The wrapper would turn a missing CLI into its own exit code: say so here, as a direct spawn would.
          if (executable === undefined) return resume(Effect.fail(new CliNotFound({ command })))
          const [file, args] = deathSignal === undefined
            ? [command, cliArgs(config, launch)]
            : [deathSignal, ["--pdeathsig", "KILL", "--", executable, ...cliArgs(config, launch)]]
          const child = spawnChild(file, args, {
            cwd: launch.cwd ?? cwd,
            env: Object.keys(extra).length === 0 ? env : { ...env, ...extra },
            stdio: "pipe",
            detached: true
          })
          const onError = (error: NodeJS.ErrnoException) =>
            resume(Effect.fail(
              error.code === "ENOENT" ? new CliNotFound({ command }) : new CliSpawnFailed({ command, reason: error.message })
            ))
          child.once("error", onError)
          child.once("spawn", () => {
            child.off("error", onError)
            // When the CLI exits, whatever it started in its group (tools, MCP servers) goes too.
            child.once("exit", () => signalGroup(child, "SIGKILL"))
            resume(Effect.succeed(child))
          })
        }),
        terminate
      )

    /** `onPrompt`: who answers the CLI's control requests other than the client tools' (interactive sessions' permission prompts). */
    const spawn = (launch: LaunchOptions, onPrompt?: ControlHandler) =>
      Effect.gen(function*() {
        const child = yield* start(launch)
        const tools = launch.tools === undefined || launch.tools.length === 0 ? undefined : makeMcpBridge(launch.tools)
        const onControl: ControlHandler = tools?.handler ?? onPrompt ?? refuseAll
        // The process's own work runs from the service's context, never from the request that spawned
        // it: a kept-alive CLI must not keep that request's span and annotations (nor the request) alive.
        const run = Runtime.runFork(serviceRuntime)
        // Answers to the CLI's control requests (a parked tool call waits for long) end with the process.
        const answering = yield* FiberSet.make()
        const runAnswer = (effect: Effect.Effect<void>) => FiberSet.unsafeAdd(answering, run(effect))
        const log = Effect.annotateLogs({ pid: child.pid })
        const closed = yield* Deferred.make<never, CliExited>()
        const pending = new Map<string, { readonly subtype: string; readonly waiter: Deferred.Deferred<unknown, ControlRequestFailed | CliExited> }>()
        let listener: TurnOutput | undefined
        let closedError: CliExited | undefined
        let stderrTail = ""
        let buffer = ""
        let nextId = 0
        let inFlight = false
        /** Told when the turn in flight ends (true) or the process exits (false). */
        let idleWaiters: Array<Deferred.Deferred<boolean>> = []
        const tellIdle = (idle: boolean) => {
          for (const waiter of idleWaiters) Deferred.unsafeDone(waiter, Exit.succeed(idle))
          idleWaiters = []
        }

        const write = (line: string) => {
          if (closedError === undefined) child.stdin!.write(line)
        }
        // After a crash the pipes report EPIPE/ECONNRESET; the close handler below reports the exit.
        child.on("error", () => {})
        child.stdin!.on("error", () => {})

        const answer = (request: ControlRequest) =>
          onControl(request).pipe(
            Effect.match({
              onFailure: (error) => ({ subtype: "error" as const, request_id: request.request_id, error }),
              onSuccess: (response) => ({ subtype: "success" as const, request_id: request.request_id, response })
            }),
            Effect.flatMap((response) => Effect.sync(() => write(encodeStdinLine({ type: "control_response", response }))))
          )

        const onLine = (line: string) => {
          if (line.trim() === "") return
          const decoded = decodeCliLine(line)
          if (Either.isLeft(decoded)) {
            run(Effect.logWarning("skipping unreadable CLI line", decoded.left.message, decoded.left.line).pipe(log))
            // Other lines can be skipped; without its result the turn could never end.
            if (decoded.left.kind === "result" && listener) {
              listener.push(new TurnEnd(new CliProtocolError({ reason: decoded.left.message })))
            }
            return
          }
          const message = decoded.right
          switch (message._tag) {
            case "ResultMessage":
              inFlight = false
              tellIdle(true)
              break
            case "ControlResponse": {
              const entry = pending.get(message.response.request_id)
              if (!entry) return
              pending.delete(message.response.request_id)
              const response = message.response
              Deferred.unsafeDone(
                entry.waiter,
                response.subtype === "success"
                  ? Exit.succeed(response.response)
                  : Exit.fail(new ControlRequestFailed({ subtype: entry.subtype, reason: response.error }))
              )
              return
            }
            case "ControlRequest":
              runAnswer(answer(message))
              return
          }
          if (listener) {
            listener.push(message)
            if (message._tag === "ResultMessage") listener.push(END)
          }
        }

        child.stdout!.setEncoding("utf8")
        child.stdout!.on("data", (chunk: string) => {
          buffer += chunk
          let newline = buffer.indexOf("\n")
          while (newline >= 0) {
            onLine(buffer.slice(0, newline))
            buffer = buffer.slice(newline + 1)
            newline = buffer.indexOf("\n")
          }
          listener?.wake()
        })
        child.stderr!.setEncoding("utf8")
        child.stderr!.on("data", (chunk: string) => {
          stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL)
        })
        // "close": the process has exited and its pipes are drained. Everyone waiting learns it.
        child.once("close", (code: number | null) => {
          const error = new CliExited({ code, stderrTail })
          closedError = error
          Deferred.unsafeDone(closed, Exit.fail(error))
          for (const entry of pending.values()) Deferred.unsafeDone(entry.waiter, Exit.fail(error))
          pending.clear()
          tellIdle(false)
          if (listener) {
            listener.push(new TurnEnd(error))
            listener.wake()
          }
          if (stderrTail.trim() !== "") run(Effect.logDebug("cli exited", { code, stderr: stderrTail }).pipe(log))
        })

        /** Write `line`; the pull gives what the CLI prints a batch at a time, and fails with None after the result. */
        // The scope is passed, not taken from the context: providing it (Scope.extend) costs a turn a `locally`.
        const listen = (line: StdinLine, scope: Scope.Scope): Effect.Effect<Pull> =>
          Effect.suspend(() => {
            if (closedError) return Effect.succeed(Effect.fail(Option.some(closedError)))
            if (listener) return Effect.dieMessage("a turn is already running on this CLI process")
            const output = new TurnOutput()
            listener = output
            // A plain finalizer (Effect.addFinalizer would also restore the fiber's refs for it).
            return Effect.map(
              Scope.addFinalizer(scope, Effect.sync(() => {
                if (listener === output) listener = undefined
              })),
              () => {
                inFlight = true
                write(encodeStdinLine(line))
                return output.pull
              }
            )
          })

        const lineTurn = (line: StdinLine): Stream.Stream<CliMessage, CliError> =>
          Stream.unwrapScoped(Effect.map(Effect.flatMap(Effect.scope, (scope) => listen(line, scope)), Stream.repeatEffectChunkOption))

        const turn = (input: ReadonlyArray<InputBlock>) => lineTurn(userInput(input, crypto.randomUUID()))
        const read = (input: ReadonlyArray<InputBlock>, scope: Scope.Scope) => listen(userInput(input, crypto.randomUUID()), scope)

        /** Write a control request now; the returned effect awaits its answer. */
        const send = (subtype: string, fields: Record<string, unknown>) => {
          if (closedError) return Effect.fail(closedError)
          const requestId = `gw_${++nextId}`
          const waiter = Deferred.unsafeMake<unknown, ControlRequestFailed | CliExited>(FiberId.none)
          pending.set(requestId, { subtype, waiter })
          write(encodeStdinLine({ type: "control_request", request_id: requestId, request: { ...fields, subtype } }))
          return Deferred.await(waiter)
        }
        const control = (subtype: string, fields: Record<string, unknown> = {}) => Effect.suspend(() => send(subtype, fields))

        // Sent before anything else. Without a snapshot the system prompt set at runtime (set_model's
        // system_prompt) applies from the next turn, also in the middle of a conversation.
        const ready = Effect.asVoid(send("initialize", { systemPromptSnapshot: false }))

        const reset = Effect.gen(function*() {
          const clear = crypto.randomUUID()
          const result = yield* Stream.runFold(
            lineTurn(commandInput("/clear", clear)),
            undefined as string | undefined,
            (session, message) => (message._tag === "ResultMessage" ? message.session_id : session)
          )
          if (result === undefined) return yield* new CliProtocolError({ reason: "/clear ended without a result" })
          // The new session's first row (the command's caveat) is not printed: its file names it.
          const first = yield* firstUserRow(result).pipe(
            Effect.flatMap((row) => row === undefined ? Effect.fail(new CliProtocolError({ reason: `no transcript row for session ${result}` })) : Effect.succeed(row)),
            Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo("1 second")))
          )
          yield* control("rewind_conversation", { target_message_uuid: first, last_seen_user_message_uuid: clear })
        })

        const running = () => closedError === undefined && child.exitCode === null && child.signalCode === null
        const isRunning = Effect.sync(running)
        // One step each (a turn asks ~4 times).
        const isIdle = Effect.sync(() => running() && !inFlight)
        const whenIdle = Effect.suspend(() => {
          if (!running()) return Effect.succeed(false)
          if (!inFlight) return Effect.succeed(true)
          const waiter = Deferred.unsafeMake<boolean>(FiberId.none)
          idleWaiters.push(waiter)
          return Deferred.await(waiter)
        })
        const exited = Effect.flip(Deferred.await(closed))
        const cutTurn = (error: CliError) => {
          if (listener) {
            listener.push(new TurnEnd(error))
            listener.wake()
          }
        }
        return { pid: child.pid!, turn, read, control, ready, reset, isRunning, isIdle, whenIdle, exited, cutTurn, tools } satisfies CliHandle
      })

    return { spawn, hasSession } as const
  })
}) {}
