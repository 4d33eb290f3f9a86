import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import * as Reconcile from "./cli/Reconcile.js"

/** `npm run reconcile`: its own parser and usage, kept as they were; `tandem reconcile` shares the rest. */
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

const parse = (args: ReadonlyArray<string>): Reconcile.ReconcileCommand | undefined => {
  if (args.length === 0) return { _tag: "Pass", dryRun: false }
  if (args.length === 1 && args[0] === "--dry-run") return { _tag: "Pass", dryRun: true }
  if (args.length === 1 && args[0] === "--bind") return { _tag: "Bind" }
  if (args.length === 1 && args[0] === "--restore") return { _tag: "Restore" }
  if (args[0] === "--repairs" && args.length <= 2) {
    const limit = args[1] === undefined ? 50 : Number(args[1])
    if (Number.isInteger(limit) && limit > 0) return { _tag: "Repairs", limit }
  }
  return undefined
}

const command = parse(process.argv.slice(2))

// Usage needs no database: answer it before connecting to anything.
const program = (command === undefined ? Effect.as(Console.error(usage), 2) : Reconcile.run(command)).pipe(
  Effect.flatMap((code) => Effect.sync(() => (process.exitCode = code)))
)

NodeRuntime.runMain(program, { disableErrorReporting: true })
