import { Cause, ConfigError, Console, Effect, Option } from "effect"
import { PageNotBuilt } from "../adapters/http/UploadPage.js"

/** A configuration mistake (or a missing build) is one line naming it, not a stack trace. */
export const reportStartupFailure = (cause: Cause.Cause<unknown>) =>
  Option.match(Cause.failureOption(cause), {
    onSome: (error) =>
      ConfigError.isConfigError(error)
        ? Console.error(`tandem: configuration error: ${String(error)}`)
        : error instanceof PageNotBuilt
        ? Console.error(`tandem: ${error.message}`)
        : Effect.logError("tandem stopped", cause),
    onNone: () => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("tandem stopped", cause)
  })
