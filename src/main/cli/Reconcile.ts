import { Console, DateTime, Effect, Layer, Logger, LogLevel, Option } from "effect"
import type { ReconcileReport } from "../../app/Reconciler.js"
import { isConsistent, Reconciler } from "../../app/Reconciler.js"
import { Restore } from "../../app/Restore.js"
import { StoreBinding } from "../../app/StoreBinding.js"
import { UploadSettings } from "../../app/UploadSettings.js"
import * as Settings from "../Settings.js"
import { reportStartupFailure } from "../StartupFailure.js"
import * as Stores from "../Stores.js"

/**
 * `npm run reconcile` and `tandem reconcile`: one pass of the reconciler (or a dry
 * run), the repair log, binding the stores, restoring records. Both parse their own
 * arguments into a `ReconcileCommand` and exit with what `run` returns: 0 consistent
 * (or done), 1 problems left or found by a dry run (or refused), 2 failure.
 */
export type ReconcileCommand =
  | { readonly _tag: "Pass"; readonly dryRun: boolean }
  | { readonly _tag: "Repairs"; readonly limit: number }
  | { readonly _tag: "Bind" }
  | { readonly _tag: "Restore" }

const section = (title: string, keys: ReadonlyArray<string>) =>
  [`  ${title}: ${keys.length}`, ...keys.map((key) => `    ${key}`)].join("\n")

const printReport = (report: ReconcileReport) => {
  const problems = report.abandonedUploads.length + report.unfinishedDeletes.length + report.orphans.length
  const verdict = report.failed.length > 0
    ? `${problems} problem(s) repaired; ${report.failed.length} left for the next pass`
    : problems === 0
    ? "consistent"
    : report.dryRun
    ? `${problems} problem(s) found; nothing changed (dry run)`
    : `${problems} problem(s) repaired; consistent`
  return Console.log([
    `tandem reconcile${report.dryRun ? " --dry-run" : ""}: ${report.objectsAudited} object(s) audited`,
    section(report.dryRun ? "abandoned uploads" : "abandoned uploads removed", report.abandonedUploads),
    section(report.dryRun ? "unfinished deletes" : "unfinished deletes finished", report.unfinishedDeletes),
    section(report.dryRun ? "orphan objects" : "orphan objects removed", report.orphans),
    ...(report.failed.length === 0
      ? []
      : [section("could not be repaired now (the store refused; see the log)", report.failed)]),
    ...auditLines(report),
    ...(report.expiredIdempotencyKeys === 0
      ? []
      : [`${report.expiredIdempotencyKeys} idempotency key(s) past IDEMPOTENCY_TTL_SECONDS forgotten`]),
    verdict
  ].join("\n"))
}

const auditLines = (report: ReconcileReport): ReadonlyArray<string> => {
  switch (report.audit._tag) {
    case "Done":
      return []
    case "Unbound":
      return [`orphan audit refused: ${report.audit.reason}`]
    case "TooManyOrphans":
      return [
        `orphan audit refused: ${report.audit.found} objects no record names, more than RECONCILE_MAX_ORPHANS ` +
        `(${report.audit.max}); deleted none. That many means a misconfiguration (a wrong database, bucket or ` +
        "prefix), never garbage: check them, then `--bind` and `--restore` if this database lost their records.",
        section("some of them", report.audit.first)
      ]
  }
}

const runWith = (command: ReconcileCommand) =>
  Effect.gen(function*() {
    const reconciler = yield* Reconciler
    switch (command._tag) {
      case "Bind": {
        const id = yield* (yield* StoreBinding).bind
        yield* Console.log(`tandem reconcile --bind: this database and this object store are bound (${id})`)
        return 0
      }
      case "Restore": {
        const report = yield* (yield* Restore).run()
        if (Option.isSome(report.unbound)) {
          yield* Console.log(`tandem reconcile --restore: refused: ${report.unbound.value}`)
          return 1
        }
        yield* Console.log([
          "tandem reconcile --restore:",
          section("restored", report.restored.map((r) => `${r.key}\t${r.id}\t${r.name}`)),
          section("left as orphans", report.refused.map((r) => `${r.key}\t${r.reason}`))
        ].join("\n"))
        return report.refused.length === 0 ? 0 : 1
      }
      case "Repairs": {
        const repairs = yield* reconciler.repairs(command.limit)
        yield* Console.log(
          repairs.length === 0 ? "no repairs recorded" : "repaired at\tproblem\tobject key\tfile id\taction"
        )
        for (const repair of repairs) {
          yield* Console.log([
            DateTime.formatIso(repair.repairedAt),
            repair.problem,
            repair.objectKey,
            Option.getOrElse(repair.fileId, () => "-"),
            repair.action
          ].join("\t"))
        }
        return 0
      }
      case "Pass": {
        const { grace, maxOrphans } = yield* Settings.reconcile
        const report = yield* reconciler.pass({
          dryRun: command.dryRun,
          grace,
          maxOrphans,
          onProgress: (audited, orphans) => Console.error(`audited ${audited} object(s), ${orphans} orphan(s) so far`)
        })
        yield* printReport(report)
        const repaired = report.failed.length === 0 && report.audit._tag === "Done"
        return (command.dryRun ? isConsistent(report) : repaired) ? 0 : 1
      }
    }
  })

/** Runs the command over the stores the environment configures: its exit status (a failure reported, then 2). */
export const run = (command: ReconcileCommand): Effect.Effect<number> =>
  runWith(command).pipe(
    Effect.provide(
      Layer.mergeAll(Reconciler.Default, Restore.Default, StoreBinding.Default).pipe(
        Layer.provide([Stores.layer, Layer.effect(UploadSettings, Settings.upload)])
      )
    ),
    Logger.withMinimumLogLevel(LogLevel.Warning),
    Effect.tapErrorCause(reportStartupFailure),
    Effect.catchAllCause(() => Effect.succeed(2)),
    Effect.withSpan("tandem.reconcile", { attributes: { command: command._tag } })
  )
