import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { spawn } from "node:child_process"
import { randomInt } from "node:crypto"
import * as EmbeddedDatabase from "../../src/adapters/database/EmbeddedDatabase.js"
import * as EmbeddedCluster from "../support/EmbeddedCluster.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as ClientLoad from "./support/ClientLoad.js"
import * as CrashHarness from "./support/CrashHarness.js"
import * as CrashS3 from "./support/CrashS3.js"
import { Ledger } from "./support/Ledger.js"
import * as Replica from "./support/Replica.js"

/**
 * The embedded default's database under kill -9: no DATABASE_URL, so every life of
 * tandem starts its own PostgreSQL under DATA_DIR, and every SIGKILL leaves that
 * server running, orphaned, for the next life to stop. Objects go to s3rver, so the
 * guarantees are checked as in KillNine; the database is read through the cluster's
 * socket, started by the test once every life is over, and the final restart's
 * servers (CrashHarness.finish) reach it as DATABASE_URL.
 */

/** A start killed at a random moment before it listens: in initdb, stopping the orphan, or starting PostgreSQL. */
const killDuringStart = (env: Record<string, string>, afterMillis: number) =>
  Effect.async<void>((resume) => {
    const child = spawn(process.execPath, [ServerProcess.mainScript], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", HOST: "127.0.0.1", ...env },
      stdio: "ignore"
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), afterMillis)
    child.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

const lifeMillis = () => (randomInt(4) === 0 ? randomInt(1_500, 3_000) : randomInt(100, 600))

describe("kill -9 under load, on the embedded PostgreSQL", () => {
  it.live("uploads and deletes keep G1–G4 through SIGKILLs of tandem, its database left running each time", () =>
    Effect.gen(function*() {
      const s3 = yield* CrashS3.start
      const dataDirectory = yield* EmbeddedCluster.dataDirectory("crash-embedded")
      const serverEnv = CrashHarness.serverEnvOn(s3.settings, dataDirectory)
      const server = yield* Replica.make("embedded", serverEnv)
      // The first start is killed during initdb, on the fresh DATA_DIR; more, later, during start-up.
      yield* killDuringStart(server.env, randomInt(200, 800))
      const ledger = new Ledger()
      const load = yield* ClientLoad.start({ clients: 8, resumableClients: 3, target: () => server.url, ledger })
      for (let round = 0; round < 3; round++) {
        yield* Replica.killRepeatedly(server, { kills: 3, lifeMillis })
        yield* killDuringStart(server.env, randomInt(100, 1_500))
      }
      yield* Effect.scoped(Effect.zipRight(Replica.live(server), Effect.zipRight(Effect.sleep("4 seconds"), load.stop)))
      // Every life is over, cleanly the last: no server runs on the cluster.
      expect(yield* EmbeddedCluster.postmasterPid(dataDirectory)).toEqual(expect.objectContaining({ _tag: "None" }))

      // The cluster again, for the final reconcile (as DATABASE_URL, over its socket) and the checks.
      const { port, socket } = yield* EmbeddedDatabase.start(dataDirectory, 8)
      const databaseUrl = Redacted.make(
        `postgres://postgres@localhost:${port}/postgres?host=${encodeURIComponent(socket)}`
      )
      const environment = { databaseUrl, s3, serverEnv: { ...serverEnv, DATABASE_URL: Redacted.value(databaseUrl) } }
      const outcome = yield* CrashHarness.finish("EmbeddedKillNine", environment, ledger, [server])
      expect(outcome.reconcile.code).toBe(0)
      expect(outcome.dryRun.code).toBe(0)
      expect(outcome.settledReconcile.code).toBe(0)
      expect(outcome.violations).toEqual([])
      expect(outcome.kills).toBeGreaterThanOrEqual(9)
      expect(ledger.uploadsAcknowledged).toBeGreaterThan(0)
      expect(ledger.deletesAcknowledged).toBeGreaterThan(0)
      expect(ledger.offsetsAcknowledged).toBeGreaterThan(0)
      expect(ledger.resumableFinished).toBeGreaterThan(0)
    }).pipe(Effect.scoped))
})
