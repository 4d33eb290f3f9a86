import { Cause, Effect } from "effect"
import { isStorageError } from "../domain/StorageErrors.js"

/**
 * The error's tag, its plain fields and its message, flat, so a log line stays one
 * line; the cause chain goes to the entry's cause.
 */
const details = (error: unknown): Record<string, string | number | boolean> => {
  if (typeof error !== "object" || error === null) return { error: String(error) }
  const fields: Record<string, string | number | boolean> = {}
  for (const [key, value] of Object.entries(error)) {
    if (key === "_tag") fields.error = String(value)
    else if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") fields[key] = value
    else if (Array.isArray(value)) fields[key] = value.join(",")
    else if (key === "original" && Cause.isCause(value)) fields.original = String(Cause.squash(value))
  }
  if (error instanceof Error) fields.detail = error.message
  return fields
}

const isNotFound = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "FileNotFound"

/**
 * Logs a failed operation with the error's fields: an error (with its cause) for
 * anything storage-side, info for a missing file, a warning for everything the
 * client caused (validation, a malformed body). Interruptions are logged by whoever interrupted.
 */
export const logFailure = (operation: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.tapErrorCause(self, (cause) => {
    const failure = Cause.failureOption(cause)
    if (failure._tag === "None") {
      return Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(`${operation} died`, cause)
    }
    const error = failure.value
    const annotate = Effect.annotateLogs({ operation, ...details(error) })
    if (isStorageError(error)) return annotate(Effect.logError(`${operation} failed`, cause))
    if (isNotFound(error)) return annotate(Effect.logInfo(`${operation}: not found`))
    return annotate(Effect.logWarning(`${operation} refused`))
  })
