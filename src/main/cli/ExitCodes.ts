import { ValidationError } from "@effect/cli"
import { HttpClientError } from "@effect/platform"
import { Cause, ConfigError, Option, Schema } from "effect"
import { isTandemError, statusOf } from "../../client/TandemClient.js"

/**
 * The exit status of every `tandem` command that talks to a server (README, "CLI"),
 * so scripts can tell the outcomes apart. The operator commands keep their own:
 * `reconcile` exits as `npm run reconcile` does, `token` as `npm run token`.
 */
export const ExitCode = {
  /** Done. */
  Ok: 0,
  /** Anything else: a bug, a response the client cannot read, a local file it cannot write. */
  Unexpected: 1,
  /** The command line or the configuration is wrong (an unknown flag, a malformed id, TANDEM_URL not a URL). */
  Usage: 2,
  /** No such file: 404 FileNotFound, or a local FILE to upload that does not exist. */
  NotFound: 3,
  /** The server refused the request (another 4xx): the upload policy, a quota, a rate limit, a conflict. */
  Refused: 4,
  /** Not allowed: 401 Unauthorized (no or a bad TANDEM_TOKEN), 403. */
  Unauthorized: 5,
  /** The server or the network failed: 5xx, connection refused or reset, a download cut short or corrupt. */
  Unavailable: 6
} as const

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** A failure already reported on stderr: exit with `code`, print nothing more. */
export class Exit extends Schema.TaggedError<Exit>()("Exit", { code: Schema.Int }) {}

/** A local file the command reads or writes. */
export class LocalFileError extends Schema.TaggedError<LocalFileError>()("LocalFileError", {
  path: Schema.String,
  reason: Schema.String,
  missing: Schema.Boolean
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
  }
}

/** The bytes that arrived are not the file's: fewer or more than announced, or another SHA-256. */
export class DownloadCorrupt extends Schema.TaggedError<DownloadCorrupt>()("DownloadCorrupt", {
  id: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `the download of ${this.id} is not the file: ${this.reason}; nothing was kept`
  }
}

const byStatus = (status: number): ExitCode =>
  status === 404
    ? ExitCode.NotFound
    : status === 401 || status === 403
    ? ExitCode.Unauthorized
    : status >= 500
    ? ExitCode.Unavailable
    : status >= 400
    ? ExitCode.Refused
    : ExitCode.Unexpected

const hasTag = (u: unknown): u is { readonly _tag: string } =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string"

/** The exit status for a failure. */
export const exitCodeOf = (error: unknown): ExitCode | number => {
  if (error instanceof Exit) return error.code
  if (ValidationError.isValidationError(error) || ConfigError.isConfigError(error)) return ExitCode.Usage
  if (isTandemError(error)) return byStatus(statusOf(error))
  if (HttpClientError.isHttpClientError(error)) {
    if (error._tag === "RequestError") return error.reason === "Transport" ? ExitCode.Unavailable : ExitCode.Unexpected
    return error.reason === "Decode" && error.response.status < 400
      ? ExitCode.Unexpected
      : byStatus(error.response.status)
  }
  if (error instanceof LocalFileError) return error.missing ? ExitCode.NotFound : ExitCode.Unexpected
  if (error instanceof DownloadCorrupt) return ExitCode.Unavailable
  if (hasTag(error) && (error._tag === "DatabaseUnavailable" || error._tag === "ObjectStoreUnavailable")) {
    return ExitCode.Unavailable
  }
  return ExitCode.Unexpected
}

/** The exit status for a cause: its first failure's, 1 for a defect, 130 when interrupted (Ctrl-C). */
export const exitCodeOfCause = (cause: Cause.Cause<unknown>): number =>
  Option.match(Cause.failureOption(cause), {
    onSome: exitCodeOf,
    onNone: () => Cause.isInterruptedOnly(cause) ? 130 : ExitCode.Unexpected
  })

/** One line for a failure, or none when it was reported already. */
export const describe = (error: unknown): Option.Option<string> => {
  if (error instanceof Exit || ValidationError.isValidationError(error)) return Option.none()
  if (ConfigError.isConfigError(error)) return Option.some(`configuration error: ${String(error)}`)
  if (isTandemError(error)) return Option.some(`${error._tag} (${statusOf(error)}): ${error.message}`)
  if (HttpClientError.isHttpClientError(error)) {
    const target = `${error.request.method} ${error.request.url}`
    if (error._tag === "RequestError") {
      const cause = error.cause instanceof Error ? causeMessage(error.cause) : String(error.cause ?? error.reason)
      return Option.some(`cannot reach the server (${target}): ${cause}`)
    }
    return Option.some(`unexpected response ${error.response.status} to ${target}`)
  }
  if (error instanceof Error) return Option.some(error.message)
  return Option.some(String(error))
}

/** Node's fetch and http wrap the reason (ECONNREFUSED, ...) in `cause`. */
const causeMessage = (error: Error): string => {
  const inner = error.cause
  if (inner instanceof Error && inner.message.length > 0) return inner.message
  if (typeof inner === "object" && inner !== null && "code" in inner) return String(inner.code)
  return error.message.length > 0 ? error.message : ("code" in error ? String(error.code) : error.name)
}
