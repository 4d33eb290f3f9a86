#!/usr/bin/env node
import { Command } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Option } from "effect"
import { describe, exitCodeOfCause } from "./cli/ExitCodes.js"
import * as Files from "./cli/Files.js"
import * as Operator from "./cli/Operator.js"
import * as Token from "./cli/Token.js"

/**
 * `tandem`: the command line (README, "CLI"). The file commands talk to the server
 * at TANDEM_URL with TANDEM_TOKEN, through the typed client (src/client); the
 * operator's commands (serve, migrate, reconcile, token) work on the stores, and
 * are configured as the server is.
 */

const tandem = Command.make("tandem").pipe(
  Command.withDescription("File uploads that land in object storage and PostgreSQL together, or not at all"),
  Command.withSubcommands([
    Files.upload.pipe(Command.provide(Files.clientLayer)),
    Files.ls.pipe(Command.provide(Files.clientLayer)),
    Files.get.pipe(Command.provide(Files.clientLayer)),
    Files.rm.pipe(Command.provide(Files.clientLayer)),
    Files.link.pipe(Command.provide(Files.clientLayer)),
    Operator.serve,
    Operator.migrate,
    Operator.reconcile,
    Token.command
  ])
)

const run = Command.run(tandem, { name: "tandem", version: "0.1.0" })

/** One line for what went wrong, unless it was reported already (or the user pressed Ctrl-C). */
const lineFor = (cause: Cause.Cause<unknown>): Option.Option<string> =>
  Option.match(Cause.failureOption(cause), {
    onSome: describe,
    onNone: () => Cause.isInterruptedOnly(cause) ? Option.none() : Option.some(Cause.pretty(cause))
  })

/** Every failure ends here: reported in one line unless it was already, and the table's exit status. */
const program = Effect.suspend(() => run(process.argv)).pipe(
  Effect.catchAllCause((cause) =>
    Effect.zipRight(
      Option.match(lineFor(cause), { onNone: () => Effect.void, onSome: (line) => Console.error(`tandem: ${line}`) }),
      Effect.sync(() => (process.exitCode = exitCodeOfCause(cause)))
    )
  ),
  Effect.provide(NodeContext.layer)
)

// `tandem serve` is `npm start` (serve.ts): the same call, run as its own main, the upload page
// beside this script's directory as for serve.js (dist/bin/cli.js, or dist/main/cli.js as tsc wrote it).
// Loaded only then: the other commands never load the server.
if (process.argv.length === 3 && process.argv[2] === "serve") {
  const [Server, Stores] = await Promise.all([import("./Server.js"), import("./Stores.js")])
  Server.runMain(Stores.layer, { page: new URL("../page/", import.meta.url) })
} else {
  NodeRuntime.runMain(program, { disableErrorReporting: true })
}
