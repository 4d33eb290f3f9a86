import { Duration, Effect, Layer, Metric, Schedule } from "effect"
import * as Metrics from "../app/Metrics.js"
import { Reconciler } from "../app/Reconciler.js"
import * as Settings from "./Settings.js"

/**
 * The reconciler as a background fiber of the server: a pass every interval
 * (jittered, so replicas drift apart), a failed pass logged and retried at the
 * next tick, stopped with the server.
 */
export const layer = Layer.scopedDiscard(Effect.gen(function*() {
  const { grace, interval, maxOrphans } = yield* Settings.reconcile
  if (Duration.toMillis(interval) === 0) return
  const reconciler = yield* Reconciler
  // A refused audit (an unbound store, too many orphans) is logged by the pass itself.
  yield* reconciler.pass({ dryRun: false, grace, maxOrphans }).pipe(
    Effect.catchAllCause((cause) =>
      Effect.zipRight(
        Metric.increment(Metric.tagged(Metrics.reconcilePasses, "result", "failed")),
        Effect.logError("reconciliation pass failed", cause)
      )
    ),
    Effect.repeat(Schedule.spaced(interval).pipe(Schedule.jittered)),
    Effect.delay(interval),
    Effect.forkScoped
  )
}))
