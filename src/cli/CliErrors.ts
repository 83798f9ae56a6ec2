import { Schema } from "effect"

/** Failures at the CLI boundary. Schema-tagged so they can cross a wire (RPC); each dialect maps them to a status in one place. */

export class CliNotFound extends Schema.TaggedError<CliNotFound>()("CliNotFound", { command: Schema.String }) {
  override get message() {
    return `Claude Code CLI not found: "${this.command}" (set claude.command or put claude on PATH)`
  }
}

export class CliSpawnFailed extends Schema.TaggedError<CliSpawnFailed>()("CliSpawnFailed", { command: Schema.String, reason: Schema.String }) {
  override get message() {
    return `cannot start the Claude Code CLI "${this.command}": ${this.reason}`
  }
}

/** The process ended before the turn's `result`. */
export class CliExited extends Schema.TaggedError<CliExited>()("CliExited", { code: Schema.NullOr(Schema.Number), stderrTail: Schema.String }) {
  override get message() {
    const tail = this.stderrTail.trim()
    return `Claude Code CLI exited early (code ${this.code ?? "signal"})${tail ? `: ${tail}` : ""}`
  }
}

export class CliProtocolError extends Schema.TaggedError<CliProtocolError>()("CliProtocolError", { reason: Schema.String }) {
  override get message() {
    return `unexpected output from the Claude Code CLI: ${this.reason}`
  }
}

export class CliTimeout extends Schema.TaggedError<CliTimeout>()("CliTimeout", { seconds: Schema.Number }) {
  override get message() {
    return `the Claude Code CLI did not finish within ${this.seconds} s`
  }
}

/** The CLI answered a control request of ours with an error. */
export class ControlRequestFailed extends Schema.TaggedError<ControlRequestFailed>()("ControlRequestFailed", { subtype: Schema.String, reason: Schema.String }) {
  override get message() {
    return `the Claude Code CLI refused a ${this.subtype} request: ${this.reason}`
  }
}

export type CliError = CliNotFound | CliSpawnFailed | CliExited | CliProtocolError | CliTimeout
