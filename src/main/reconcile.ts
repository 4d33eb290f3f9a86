import { NodeRuntime } from "@effect/platform-node"
import { Console, DateTime, Effect, Layer, Logger, LogLevel, Option } from "effect"
import type { ReconcileReport } from "../app/Reconciler.js"
import { isConsistent, Reconciler } from "../app/Reconciler.js"
import { Restore } from "../app/Restore.js"
import { StoreBinding } from "../app/StoreBinding.js"
import { UploadSettings } from "../app/UploadSettings.js"
import * as Settings from "./Settings.js"
import { reportStartupFailure } from "./StartupFailure.js"
import * as Stores from "./Stores.js"

const usage = `usage: npm run reconcile [-- --dry-run | --repairs [N] | --bind | --restore]
  (no flag)    one full pass: abandoned uploads, unfinished deletes, orphan objects; repairs them
  --dry-run    the same pass, reporting what it finds without changing anything
  --repairs N  print the last N repairs from the repair log (default 50)
  --bind       bind this database and this object store to each other, deliberately: only then
               are objects no record names taken for orphans
  --restore    re-create the records of orphan objects from their own metadata, each checked
               against its sha256 first (after a database was restored from an older backup)
Exit status: 0 consistent (or done), 1 problems found by --dry-run, left unrepaired, an audit
refused (unbound store, too many orphans) or objects left unrestored, 2 failure.`

type Command =
  | { readonly _tag: "Pass"; readonly dryRun: boolean }
  | { readonly _tag: "Repairs"; readonly limit: number }
  | { readonly _tag: "Bind" }
  | { readonly _tag: "Restore" }
  | { readonly _tag: "Usage" }

const parse = (args: ReadonlyArray<string>): Command => {
  if (args.length === 0) return { _tag: "Pass", dryRun: false }
  if (args.length === 1 && args[0] === "--dry-run") return { _tag: "Pass", dryRun: true }
  if (args.length === 1 && args[0] === "--bind") return { _tag: "Bind" }
  if (args.length === 1 && args[0] === "--restore") return { _tag: "Restore" }
  if (args[0] === "--repairs" && args.length <= 2) {
    const limit = args[1] === undefined ? 50 : Number(args[1])
    if (Number.isInteger(limit) && limit > 0) return { _tag: "Repairs", limit }
  }
  return { _tag: "Usage" }
}

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

const run = (command: Command) =>
  Effect.gen(function*() {
    const reconciler = yield* Reconciler
    switch (command._tag) {
      case "Usage":
        return 2
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

const command = parse(process.argv.slice(2))

const withStores = (self: typeof command): Effect.Effect<number> =>
  run(self).pipe(
    Effect.provide(
      Layer.mergeAll(Reconciler.Default, Restore.Default, StoreBinding.Default).pipe(
        Layer.provide([Stores.layer, Layer.effect(UploadSettings, Settings.upload)])
      )
    ),
    Logger.withMinimumLogLevel(LogLevel.Warning),
    Effect.tapErrorCause(reportStartupFailure),
    Effect.catchAllCause(() => Effect.succeed(2))
  )

// Usage needs no database: answer it before connecting to anything.
const program = (command._tag === "Usage" ? Effect.as(Console.error(usage), 2) : withStores(command)).pipe(
  Effect.flatMap((code) => Effect.sync(() => (process.exitCode = code)))
)

NodeRuntime.runMain(program, { disableErrorReporting: true })
