import { Effect, Schedule } from "effect"
import type { Scope } from "effect"
import type { ChildProcess } from "node:child_process"
import * as Net from "node:net"
import * as ServerProcess from "../../support/ServerProcess.js"

/**
 * One server "replica": the built server on a port fixed for the whole run, so
 * clients find it again after every restart. It lives many times; each life's
 * output is kept for diagnosis.
 */
export interface Replica {
  readonly name: string
  readonly url: string
  readonly env: Record<string, string>
  readonly lives: Array<ServerProcess.RunningServer>
  /** Start attempts that failed (retried), with the reason. */
  readonly startFailures: Array<string>
  kills: number
}

/** A port that is free now: the OS picks it, we release it at once and reuse it for every life. */
const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

export const make = (name: string, env: Record<string, string>): Effect.Effect<Replica> =>
  Effect.map(freePort, (port) => ({
    name,
    url: `http://127.0.0.1:${port}`,
    env: { ...env, PORT: String(port) },
    lives: [],
    startFailures: [],
    kills: 0
  }))

/** Starts one life; stopped with SIGTERM when the scope closes, unless killed before. */
export const live = (replica: Replica): Effect.Effect<ServerProcess.RunningServer, Error, Scope.Scope> =>
  ServerProcess.start(replica.env).pipe(
    Effect.tapError((error) => Effect.sync(() => replica.startFailures.push(error.message))),
    Effect.retry(Schedule.spaced("500 millis").pipe(Schedule.intersect(Schedule.recurs(2)))),
    Effect.tap((server) => Effect.sync(() => replica.lives.push(server)))
  )

const killNine = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

export interface KillOptions {
  /** Keep going until at least this many kills... */
  readonly kills?: number
  /** ...and at least this long. */
  readonly forMillis?: number
  /** How long the next life lasts once it listens. */
  readonly lifeMillis: () => number
}

/** Starts the replica, SIGKILLs it at a random moment, and again, until both bounds are met. */
export const killRepeatedly = (replica: Replica, options: KillOptions): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    const started = Date.now()
    let killed = 0
    while (killed < (options.kills ?? 0) || Date.now() - started < (options.forMillis ?? 0)) {
      yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* live(replica)
        yield* Effect.sleep(`${options.lifeMillis()} millis`)
        yield* killNine(server.child)
      }))
      killed++
      replica.kills++
    }
  })

/** Every life's output, in order, for diagnosis. */
export const logs = (replica: Replica): string =>
  replica.lives.map((server, index) => `----- ${replica.name}, life ${index + 1} -----\n${server.output()}`).join("\n")
