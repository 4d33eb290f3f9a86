import { Cause, Effect, Exit, Metric, MetricBoundaries, Option } from "effect"
import type { ReconcileReport } from "./Reconciler.js"

/**
 * What tandem counts, as Effect metrics (served at GET /metrics). Labels never hold
 * owners, ids or names: their number must stay bounded whatever clients send.
 */

/** Uploads by outcome: "stored", "replayed", or the tag of the error that refused or failed them. */
export const uploads = Metric.counter("tandem_uploads_total", {
  description: "Uploads answered, by outcome: stored, replayed, or the error's tag",
  incremental: true
})

/** Seconds from the request's first byte read to its answer, whatever the outcome. */
export const uploadDuration = Metric.histogram(
  "tandem_upload_duration_seconds",
  MetricBoundaries.exponential({ start: 0.005, factor: 2, count: 14 }),
  "Upload duration in seconds, from the request to its answer"
)

export const storedBytes = Metric.counter("tandem_stored_bytes_total", {
  description: "Bytes of uploads committed",
  incremental: true
})

export const downloads = Metric.counter("tandem_downloads_total", {
  description: "File contents served (whole or a range)",
  incremental: true
})

/** Compensations run when an upload could not commit: "done" or "failed" (then the reconciler finishes it). */
export const compensations = Metric.counter("tandem_compensations_total", {
  description: "Compensations of uploads that could not commit, by result",
  incremental: true
})

export const reconcilePasses = Metric.counter("tandem_reconcile_passes_total", {
  description: "Reconciler passes, by result",
  incremental: true
})

/** What a pass found, by kind; in a pass that repairs, each finding is also a repair. */
export const reconcileFindings = Metric.counter("tandem_reconcile_findings_total", {
  description: "Problems reconciler passes found, by kind",
  incremental: true
})

export const reconcileRepairs = Metric.counter("tandem_reconcile_repairs_total", {
  description: "Problems reconciler passes repaired, by kind",
  incremental: true
})

export const uploadsInFlight = Metric.gauge("tandem_uploads_in_flight", {
  description: "Uploads being received now"
})

export const uploadsInFlightLimit = Metric.gauge("tandem_uploads_in_flight_limit", {
  description: "MAX_CONCURRENT_UPLOADS: uploads past it are refused with 503"
})

/** Statements (and transactions) holding a pooled database connection now. */
export const databaseConnectionsInUse = Metric.gauge("tandem_database_connections_in_use", {
  description: "Database connections in use by a statement or a transaction"
})

export const databasePoolSize = Metric.gauge("tandem_database_pool_size", {
  description: "DATABASE_POOL_SIZE: the most connections tandem opens"
})

/** Adds a pass's report to the reconciler's counters. */
export const recordPass = (report: ReconcileReport): Effect.Effect<void> => {
  const kinds = [
    ["abandoned-upload", report.abandonedUploads.length],
    ["unfinished-delete", report.unfinishedDeletes.length],
    ["orphan-object", report.orphans.length]
  ] as const
  return Effect.all([
    Metric.increment(Metric.tagged(reconcilePasses, "result", report.dryRun ? "dry-run" : "done")),
    ...kinds.flatMap(([kind, count]) =>
      count === 0 ? [] : [
        Metric.incrementBy(Metric.tagged(reconcileFindings, "kind", kind), count),
        ...(report.dryRun ? [] : [Metric.incrementBy(Metric.tagged(reconcileRepairs, "kind", kind), count)])
      ]
    ),
    report.failed.length === 0
      ? Effect.void
      : Metric.incrementBy(Metric.tagged(reconcileFindings, "kind", "unrepaired-intent"), report.failed.length)
  ], { discard: true })
}

const tagOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : "error"

/**
 * Counts an upload's answer by outcome (`outcomeOf` names a success; a failure is
 * its error's tag; "interrupted" when the client went away or a shutdown stopped it)
 * and observes its duration.
 */
export const measureUpload = <A>(outcomeOf: (answer: A) => string) => <E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const started = performance.now()
    return Effect.onExit(self, (exit) => {
      const outcome = Exit.isSuccess(exit)
        ? outcomeOf(exit.value)
        : Option.match(Cause.failureOption(exit.cause), {
          onNone: () => (Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "died"),
          onSome: tagOf
        })
      return Effect.zipRight(
        Metric.increment(Metric.tagged(uploads, "outcome", outcome)),
        Metric.update(uploadDuration, (performance.now() - started) / 1000)
      )
    })
  })

/** `self` counted in tandem_uploads_in_flight while it runs. */
export const countInFlight = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.acquireUseRelease(
    Metric.increment(uploadsInFlight),
    () => self,
    () => Metric.modify(uploadsInFlight, -1)
  )

/** Resumable (tus) requests by kind (create, patch, terminate) and outcome: "ok", "finished" or the error's tag. */
export const resumableRequests = Metric.counter("tandem_resumable_requests_total", {
  description:
    "Resumable (tus) requests answered, by request and outcome: ok, finished (the file committed), or the error's tag",
  incremental: true
})

/** Counts a resumable request's answer (as `measureUpload` names outcomes). */
export const measureResumable =
  <A>(request: string, outcomeOf: (answer: A) => string) => <E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.onExit(self, (exit) => {
      const outcome = Exit.isSuccess(exit)
        ? outcomeOf(exit.value)
        : Option.match(Cause.failureOption(exit.cause), {
          onNone: () => (Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "died"),
          onSome: tagOf
        })
      return Metric.increment(Metric.tagged(Metric.tagged(resumableRequests, "request", request), "outcome", outcome))
    })
