import { Command } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import * as Token from "./cli/Token.js"

/** `npm run token -- --sub alice [--ttl 1h]`; `tandem token` is the same command (cli/Token.ts). */
const cli = Command.run(Token.command, { name: "tandem token", version: "0.1.0" })

cli(process.argv).pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain({ disableErrorReporting: true }))
