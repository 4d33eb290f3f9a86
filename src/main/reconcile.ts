import { NodeRuntime } from "@effect/platform-node"
import { Console, DateTime, Effect, Layer, Logger, LogLevel, Option } from "effect"
import type { ReconcileReport } from "../app/Reconciler.js"
import { isConsistent, Reconciler } from "../app/Reconciler.js"
import { UploadSettings } from "../app/UploadSettings.js"
import * as Settings from "./Settings.js"
import { reportStartupFailure } from "./StartupFailure.js"
import * as Stores from "./Stores.js"

const usage = `usage: npm run reconcile [-- --dry-run] [-- --repairs [N]]
  (no flag)    one full pass: abandoned uploads, unfinished deletes, orphan objects; repairs them
  --dry-run    the same pass, reporting what it finds without changing anything
  --repairs N  print the last N repairs from the repair log (default 50)
Exit status: 0 consistent, 1 problems found by --dry-run (or left unrepaired), 2 failure.`

type Command =
  | { readonly _tag: "Pass"; readonly dryRun: boolean }
  | { readonly _tag: "Repairs"; readonly limit: number }
  | { readonly _tag: "Usage" }

const parse = (args: ReadonlyArray<string>): Command => {
  if (args.length === 0) return { _tag: "Pass", dryRun: false }
  if (args.length === 1 && args[0] === "--dry-run") return { _tag: "Pass", dryRun: true }
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
    verdict
  ].join("\n"))
}

const run = (command: Command) =>
  Effect.gen(function*() {
    const reconciler = yield* Reconciler
    switch (command._tag) {
      case "Usage":
        return 2
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
        const { grace } = yield* Settings.reconcile
        const report = yield* reconciler.pass({
          dryRun: command.dryRun,
          grace,
          onProgress: (audited, orphans) => Console.error(`audited ${audited} object(s), ${orphans} orphan(s) so far`)
        })
        yield* printReport(report)
        return (command.dryRun ? isConsistent(report) : report.failed.length === 0) ? 0 : 1
      }
    }
  })

const command = parse(process.argv.slice(2))

const withStores = (self: typeof command): Effect.Effect<number> =>
  run(self).pipe(
    Effect.provide(
      Reconciler.Default.pipe(Layer.provide([Stores.layer, Layer.effect(UploadSettings, Settings.upload)]))
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
