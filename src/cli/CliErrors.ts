import { Data } from "effect"

/** Failures at the CLI boundary. Internal: the HTTP layer maps them to a status in one place. */

export class CliNotFound extends Data.TaggedError("CliNotFound")<{
  readonly command: string
}> {
  override get message() {
    return `Claude Code CLI not found: "${this.command}" (set claude.command or put claude on PATH)`
  }
}

export class CliSpawnFailed extends Data.TaggedError("CliSpawnFailed")<{
  readonly command: string
  readonly reason: string
}> {
  override get message() {
    return `cannot start the Claude Code CLI "${this.command}": ${this.reason}`
  }
}

/** The process ended before the turn's `result`. */
export class CliExited extends Data.TaggedError("CliExited")<{
  readonly code: number | null
  readonly stderrTail: string
}> {
  override get message() {
    const tail = this.stderrTail.trim()
    return `Claude Code CLI exited early (code ${this.code ?? "signal"})${tail ? `: ${tail}` : ""}`
  }
}

export class CliProtocolError extends Data.TaggedError("CliProtocolError")<{
  readonly reason: string
}> {
  override get message() {
    return `unexpected output from the Claude Code CLI: ${this.reason}`
  }
}

export class CliTimeout extends Data.TaggedError("CliTimeout")<{
  readonly seconds: number
}> {
  override get message() {
    return `the Claude Code CLI did not finish within ${this.seconds} s`
  }
}

/** The CLI answered a control request of ours with an error. */
export class ControlRequestFailed extends Data.TaggedError("ControlRequestFailed")<{
  readonly subtype: string
  readonly reason: string
}> {
  override get message() {
    return `the Claude Code CLI refused a ${this.subtype} request: ${this.reason}`
  }
}

export type CliError = CliNotFound | CliSpawnFailed | CliExited | CliProtocolError | CliTimeout
