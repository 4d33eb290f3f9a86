import { Config, Duration } from "effect"

const seconds = (name: string, fallback: number) =>
  Config.number(name).pipe(
    Config.validate({ message: "Expected a number of seconds, 0 or more", validation: (n) => n >= 0 }),
    Config.withDefault(fallback),
    Config.map(Duration.seconds)
  )

/**
 * How the reconciler runs: every RECONCILE_INTERVAL_SECONDS in the server (0: not
 * in the server), treating an intent older than RECONCILE_GRACE_SECONDS as
 * abandoned. The grace period must exceed the longest upload.
 */
export const ReconcileSettings = Config.all({
  interval: seconds("RECONCILE_INTERVAL_SECONDS", 60),
  grace: seconds("RECONCILE_GRACE_SECONDS", 900)
})
