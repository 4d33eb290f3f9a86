import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomInt } from "node:crypto"
import * as ClientLoad from "./support/ClientLoad.js"
import * as CrashHarness from "./support/CrashHarness.js"
import { Ledger } from "./support/Ledger.js"
import * as Replica from "./support/Replica.js"

describe("two replicas on one database and bucket", () => {
  it.live("both reconcilers running, one replica killed now and then: G1–G4 hold, no key repaired twice", () =>
    Effect.gen(function*() {
      const environment = yield* CrashHarness.environment
      const steady = yield* Replica.make("steady", environment.serverEnv)
      const flaky = yield* Replica.make("flaky", environment.serverEnv)
      const ledger = new Ledger()
      yield* Effect.scoped(Effect.gen(function*() {
        // One after the other: the first one migrates the database.
        yield* Replica.live(steady)
        const load = yield* ClientLoad.start({
          clients: 8,
          resumableClients: 3,
          target: () => (randomInt(2) === 0 ? steady.url : flaky.url),
          ledger
        })
        yield* Replica.killRepeatedly(flaky, {
          kills: 4,
          forMillis: 20_000,
          lifeMillis: () => randomInt(2_000, 6_000)
        })
        yield* Effect.scoped(
          Effect.zipRight(Replica.live(flaky), Effect.zipRight(Effect.sleep("4 seconds"), load.stop))
        )
      }))

      const outcome = yield* CrashHarness.finish("TwoReplicas", environment, ledger, [steady, flaky])
      expect(outcome.reconcile.code).toBe(0)
      expect(outcome.dryRun.code).toBe(0)
      expect(outcome.settledReconcile.code).toBe(0)
      expect(outcome.violations).toEqual([])
      expect(flaky.kills).toBeGreaterThanOrEqual(4)
      expect(ledger.uploadsAcknowledged).toBeGreaterThan(0)
      expect(ledger.deletesAcknowledged).toBeGreaterThan(0)
      expect(ledger.offsetsAcknowledged).toBeGreaterThan(0)
      expect(ledger.resumableFinished).toBeGreaterThan(0)
      expect(ledger.replicaSwitches).toBeGreaterThan(0)
    }).pipe(Effect.scoped))
})
