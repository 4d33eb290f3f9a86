import { Deferred, type Duration, Effect, Exit } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

/** The compiled server, as `npm start` runs it (test/globalSetup.ts builds it). */
export const mainScript = fileURLToPath(new URL("../../dist/bin/serve.js", import.meta.url))

export interface RunningServer {
  readonly url: string
  readonly child: ChildProcess
  /** Everything the process wrote so far. */
  readonly output: () => string
}

export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

const baseEnv = (env: Record<string, string>) => ({
  PATH: process.env.PATH ?? "",
  HOME: process.env.HOME ?? "",
  HOST: "127.0.0.1",
  PORT: "0",
  LOG_LEVEL: "Warning",
  ...env
})

/**
 * Servers still running when this test process exits (a test that timed out never
 * closes its scope) are told to stop then (SIGTERM: an embedded PostgreSQL stops
 * with its server), so none outlives the run.
 */
const running = new Set<ChildProcess>()
process.once("exit", () => {
  for (const child of running) child.kill("SIGTERM")
})

const track = (child: ChildProcess) => {
  running.add(child)
  child.once("exit", () => running.delete(child))
}

/**
 * Starts `node dist/bin/serve.js` with `env` (nothing else from this process leaks
 * in but PATH and HOME) and waits for it to log its address. Stopped with SIGTERM
 * (SIGKILL after 10 s) when the scope closes.
 */
export const start = (env: Record<string, string>): Effect.Effect<RunningServer, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<RunningServer, Error>((resume) => {
      let output = ""
      const child = spawn(process.execPath, [mainScript], { env: baseEnv({ LOG_LEVEL: "Info", ...env }) })
      track(child)
      const onData = (chunk: Buffer) => {
        output += chunk.toString("utf8")
        const match = /Listening on (http:\/\/[^\s"]+)/.exec(output)
        if (match?.[1] !== undefined) {
          child.stdout?.off("data", onData)
          child.stdout?.on("data", (more: Buffer) => (output += more.toString("utf8")))
          resume(Effect.succeed({ url: match[1], child, output: () => output }))
        }
      }
      child.stdout?.on("data", onData)
      child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
      child.on(
        "exit",
        (code, signal) =>
          resume(Effect.fail(new Error(`server exited (${code ?? signal}) before listening:\n${output}`)))
      )
      return Effect.sync(() => child.kill("SIGKILL"))
    }).pipe(Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error("server did not start in 60 s") })),
    (server) => stop(server.child)
  )

/** SIGTERM, then SIGKILL if it has not exited after `grace`. */
export const stop = (child: ChildProcess, grace: Duration.DurationInput = "10 seconds") =>
  Effect.gen(function*() {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = yield* Deferred.make<void>()
    child.once("exit", () => Deferred.unsafeDone(exited, Exit.void))
    child.kill("SIGTERM")
    yield* Deferred.await(exited).pipe(
      Effect.timeout(grace),
      Effect.catchAll(() => Effect.sync(() => child.kill("SIGKILL")))
    )
  })

/** Runs the server to completion (for start-up failures): its exit status and output. */
export const runToExit = (env: Record<string, string>, timeout: Duration.DurationInput = "30 seconds") =>
  Effect.async<Exited>((resume) => {
    let stdout = ""
    let stderr = ""
    const child = spawn(process.execPath, [mainScript], { env: baseEnv(env) })
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")))
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    child.on("exit", (code, signal) => resume(Effect.succeed({ code, signal, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  }).pipe(
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error("the server did not exit") }),
    Effect.orDie
  )
