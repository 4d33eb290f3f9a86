import { Cause, ConfigError, Console, Effect, Option } from "effect"

/** A configuration mistake is one line naming the variable, not a stack trace. */
export const reportStartupFailure = (cause: Cause.Cause<unknown>) =>
  Option.match(Cause.failureOption(cause), {
    onSome: (error) =>
      ConfigError.isConfigError(error)
        ? Console.error(`tandem: configuration error: ${String(error)}`)
        : Effect.logError("tandem stopped", cause),
    onNone: () => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("tandem stopped", cause)
  })
