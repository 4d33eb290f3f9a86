import { Effect } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

/** The compiled CLI, as `npm run reconcile` runs it after its build. */
const script = fileURLToPath(new URL("../../../dist/bin/reconcile.js", import.meta.url))

export interface CliRun {
  readonly args: ReadonlyArray<string>
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `npm run reconcile -- ...args` with `env` only (plus PATH and HOME) and waits for it to exit. */
export const run = (env: Record<string, string>, args: ReadonlyArray<string> = []): Effect.Effect<CliRun, Error> =>
  Effect.async<CliRun>((resume) => {
    let stdout = ""
    let stderr = ""
    const child = spawn(process.execPath, [script, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env }
    })
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    child.on("exit", (code) => resume(Effect.succeed({ args, code, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  }).pipe(
    Effect.timeoutFail({
      duration: "2 minutes",
      onTimeout: () => new Error(`reconcile ${args.join(" ")} did not exit`)
    })
  )

/** The count on a report line such as "  orphan objects removed: 3"; 0 when the line is absent. */
export const count = (run: CliRun, title: string): number => {
  const match = new RegExp(`^  ${title}: (\\d+)$`, "m").exec(run.stdout)
  return match?.[1] === undefined ? 0 : Number(match[1])
}

/** The verdict, the report's last line ("consistent", "3 problem(s) repaired; consistent", …). */
export const verdict = (run: CliRun): string => run.stdout.trim().split("\n").at(-1) ?? ""
