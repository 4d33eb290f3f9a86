import { Command, Options } from "@effect/cli"
import { Console, Effect, Layer, Logger, LogLevel, Option } from "effect"
import * as Settings from "../Settings.js"
import { reportStartupFailure } from "../StartupFailure.js"
import { Exit, ExitCode, exitCodeOf } from "./ExitCodes.js"
import type * as Reconcile from "./Reconcile.js"

// Loaded when run, so the file commands (and --help) never load the stores and the workflows.
const loadStores = Effect.promise(() => import("../Stores.js"))
const loadReconcile = Effect.promise(() => import("./Reconcile.js"))

/**
 * The operator's commands, which work on the stores themselves (configured as the
 * server is, README "Configuration"), not through a server: serve, migrate,
 * reconcile.
 */

/**
 * `tandem serve` alone is dispatched before the command line is parsed (cli.ts) to
 * exactly what `npm start` runs; this command only gives it its help. The server
 * takes no options: it is configured by its environment.
 */
export const serve = Command.make("serve", {}, () =>
  Effect.zipRight(
    Console.error("tandem serve takes no options: it is configured by the environment (README, \"Configuration\")"),
    new Exit({ code: ExitCode.Usage })
  )).pipe(
    Command.withDescription(
      "Run the server, exactly as `npm start` does, configured by the environment (HOST, PORT, DATABASE_URL, " +
        "S3_BUCKET, AUTH_JWT_SECRET, ...); stops on SIGINT or SIGTERM"
    )
  )

/** Connects to the database the environment names (as the server would) and brings its schema up to date. */
export const migrate = Command.make("migrate", {}, () =>
  Effect.gen(function*() {
    // The stores' layer migrates the database before anything can use it, as the server's start does.
    const Stores = yield* loadStores
    yield* Effect.scoped(Layer.build(Stores.layer))
    const database = yield* Settings.database
    yield* Console.log(
      `tandem migrate: the ${Option.isSome(database) ? "database at DATABASE_URL" : "embedded database"} is up to date`
    )
  }).pipe(
    Logger.withMinimumLogLevel(LogLevel.Warning),
    Effect.tapErrorCause(reportStartupFailure),
    Effect.mapError((error) => new Exit({ code: exitCodeOf(error) })),
    Effect.withSpan("tandem.cli.migrate")
  )).pipe(
    Command.withDescription(
      "Apply the database migrations (DATABASE_URL, or the embedded database under DATA_DIR) and exit: " +
        "0 done, 2 configuration error, 6 the database is unavailable"
    )
  )

const dryRun = Options.boolean("dry-run").pipe(
  Options.withDescription("The same pass, reporting what it finds without changing anything")
)
const repairs = Options.integer("repairs").pipe(
  Options.optional,
  Options.withDescription("Print the last N repairs from the repair log")
)
const bind = Options.boolean("bind").pipe(
  Options.withDescription("Bind this database and this object store to each other, deliberately")
)
const restore = Options.boolean("restore").pipe(
  Options.withDescription("Re-create the records of orphan objects from their own metadata, each checked first")
)

/** A usage error the parser cannot see (a combination of flags): reported, then exit 2. */
const usage = (text: string) =>
  Effect.zipRight(Console.error(`tandem reconcile: ${text}`), new Exit({ code: ExitCode.Usage }))

/** `npm run reconcile`, as a command: the same flags (one at most), output and exit status (0, 1, 2). */
export const reconcile = Command.make(
  "reconcile",
  { dryRun, repairs, bind, restore },
  (options) =>
    Effect.gen(function*() {
      const chosen = [options.dryRun, Option.isSome(options.repairs), options.bind, options.restore].filter(Boolean)
      if (chosen.length > 1) return yield* usage("choose one of --dry-run, --repairs, --bind, --restore")
      const command: Reconcile.ReconcileCommand = options.bind
        ? { _tag: "Bind" }
        : options.restore
        ? { _tag: "Restore" }
        : Option.isSome(options.repairs)
        ? { _tag: "Repairs", limit: options.repairs.value }
        : { _tag: "Pass", dryRun: options.dryRun }
      if (command._tag === "Repairs" && !(command.limit > 0)) return yield* usage("--repairs takes a number above 0")
      const code = yield* Effect.flatMap(loadReconcile, (Reconcile) => Reconcile.run(command))
      if (code !== 0) return yield* new Exit({ code })
    })
).pipe(
  Command.withDescription(
    "One full pass of the reconciler over the stores (abandoned uploads, unfinished deletes, orphan objects), " +
      "as `npm run reconcile`: exit 0 consistent (or done), 1 problems found or left, 2 failure"
  )
)
