import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomInt } from "node:crypto"
import * as ClientLoad from "./support/ClientLoad.js"
import * as CrashHarness from "./support/CrashHarness.js"
import { Ledger } from "./support/Ledger.js"
import * as Replica from "./support/Replica.js"

/**
 * Mostly 100–600 ms; one life in four lasts long enough for the server's own
 * reconciler (every second) to run, and sometimes to be killed mid-pass.
 */
const lifeMillis = () => (randomInt(4) === 0 ? randomInt(1_500, 3_500) : randomInt(100, 600))

describe("kill -9 under load", () => {
  it.live("uploads and deletes keep G1–G4 through 20+ SIGKILLs and restarts", () =>
    Effect.gen(function*() {
      const environment = yield* CrashHarness.environment
      const server = yield* Replica.make("server", environment.serverEnv)
      const ledger = new Ledger()
      const load = yield* ClientLoad.start({ clients: 8, resumableClients: 3, target: () => server.url, ledger })

      yield* Replica.killRepeatedly(server, { kills: 24, lifeMillis })
      // A last, clean life: the clients see it up, then stop before it is stopped.
      yield* Effect.scoped(Effect.zipRight(Replica.live(server), Effect.zipRight(Effect.sleep("4 seconds"), load.stop)))

      const outcome = yield* CrashHarness.finish("KillNine", environment, ledger, [server])
      expect(outcome.reconcile.code).toBe(0)
      expect(outcome.dryRun.code).toBe(0)
      expect(outcome.settledReconcile.code).toBe(0)
      expect(outcome.violations).toEqual([])
      expect(outcome.kills).toBeGreaterThanOrEqual(20)
      expect(ledger.uploadsAcknowledged).toBeGreaterThan(0)
      expect(ledger.deletesAcknowledged).toBeGreaterThan(0)
      expect(ledger.offsetsAcknowledged).toBeGreaterThan(0)
      expect(ledger.resumableFinished).toBeGreaterThan(0)
    }).pipe(Effect.scoped))
})
