/**
 * The reconciler's own failure modes: intents it cannot repair never starve the
 * rest; a replica whose clock runs ahead reclaims nothing still uploading; and a
 * pass never holds the database across a call to the object store (the embedded
 * database has one connection, which every request shares).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, DateTime, Duration, Effect, Fiber, Layer, Option } from "effect"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as PgFileRepository from "../../src/adapters/database/PgFileRepository.js"
import { FileService } from "../../src/app/FileService.js"
import { Reconciler } from "../../src/app/Reconciler.js"
import * as UploadSettings from "../../src/app/UploadSettings.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import type { FileRepository } from "../../src/ports/FileRepository.js"
import { FileRepository as Repository, noQuota } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import * as Backends from "../support/Backends.js"
import { uploadBytes, writeBytes } from "../support/Content.js"
import * as FaultInjection from "../support/FaultInjection.js"
import { textOfSize } from "../support/Http.js"
import { recordFor } from "../support/Records.js"
import { expectSettled, snapshot } from "../support/Snapshot.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestServer from "../support/TestServer.js"

const services = <E>(repository: Layer.Layer<FileRepository, E>) =>
  Layer.mergeAll(FileService.Default, Reconciler.Default).pipe(
    Layer.provideMerge(Layer.merge(
      FaultInjection.layer(Layer.merge(Backends.memory, repository), { partSize: TestServer.testPartSize }),
      UploadSettings.layer({ policy: UploadPolicy.default, keyPrefix: TestServer.testPrefix, quota: noQuota })
    )),
    Layer.provide(TestServer.quietLogs)
  )

const repositories = [
  { name: "the in-memory repository", layer: MemoryFileRepository.layer },
  { name: "embedded PGlite", layer: PgFileRepository.layer.pipe(Layer.provide(TestDatabase.embeddedLayer)) }
] as const

/** An intent as an upload that crashed leaves it, with its object written. */
const abandoned = (name: string) =>
  Effect.gen(function*() {
    const repository = yield* Repository
    const store = yield* ObjectStore
    const record = recordFor(name, yield* DateTime.now)
    yield* repository.insertPending(record)
    yield* writeBytes(store, record.objectKey, textOfSize(600))
    return record
  })

/** The process's clock, `by` ahead: a replica whose clock is wrong. */
const clockAhead = (by: Duration.Duration): Clock.Clock => {
  const clock = Clock.make()
  const ahead = Duration.toMillis(by)
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => clock.unsafeCurrentTimeMillis() + ahead,
    currentTimeMillis: Effect.map(clock.currentTimeMillis, (millis) => millis + ahead),
    unsafeCurrentTimeNanos: () => clock.unsafeCurrentTimeNanos() + BigInt(ahead) * 1_000_000n,
    currentTimeNanos: Effect.map(clock.currentTimeNanos, (nanos) => nanos + BigInt(ahead) * 1_000_000n),
    sleep: clock.sleep
  }
}

describe("the reconciler", () => {
  for (const { layer, name } of repositories) {
    describe(`on ${name}`, () => {
      it.live(
        "150 intents whose bytes the store refuses do not starve 10 it can repair: all 10 go in one pass",
        () =>
          Effect.gen(function*() {
            const plan = yield* FaultInjection.FaultPlan
            const reconciler = yield* Reconciler
            const stuck = yield* Effect.forEach(Array.from({ length: 150 }, (_, i) => `stuck-${i}.txt`), abandoned)
            // The repairable ones are the newest: the stuck ones come first, oldest first.
            const repairable = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => `ok-${i}.txt`), abandoned)
            yield* plan.inject([{ call: "store.delete", kind: "fail", keys: stuck.map((r) => r.objectKey) }])
            const report = yield* reconciler.pass({ dryRun: false, grace: 0, maxOrphans: 1000 })
            yield* plan.clear
            expect([...report.abandonedUploads].sort()).toEqual(repairable.map((r) => r.objectKey).sort())
            expect(report.failed).toHaveLength(150)
            // What the store refused stays claimed, to be tried again once the grace period has passed.
            const left = yield* snapshot
            expect(left.intents).toHaveLength(150)
            expect(left.objects).toHaveLength(150)
          }).pipe(Effect.provide(services(layer))),
        60_000
      )

      it.live("a replica whose clock runs ahead by more than the grace period reclaims nothing still uploading", () =>
        Effect.gen(function*() {
          const plan = yield* FaultInjection.FaultPlan
          const files = yield* FileService
          const reconciler = yield* Reconciler
          // An upload whose bytes are being written right now.
          yield* plan.inject([{ call: "store.put", kind: "pause", times: 1 }])
          const uploading = yield* Effect.fork(
            uploadBytes(files, { name: "slow.txt", contentType: "text/plain" }, textOfSize(1024))
          )
          yield* plan.reached("store.put")
          const report = yield* reconciler.pass({ dryRun: false, grace: Duration.minutes(15), maxOrphans: 1000 }).pipe(
            Effect.withClock(clockAhead(Duration.hours(2)))
          )
          expect(report.abandonedUploads).toEqual([])
          yield* plan.resume
          const record = yield* Fiber.join(uploading)
          yield* plan.clear
          expect(Option.isSome(yield* (yield* Repository).find(record.owner, record.id))).toBe(true)
          expect(expectSettled(yield* snapshot)).toEqual({ intents: [], strayObjects: [] })
        }).pipe(Effect.provide(services(layer))))
    })
  }

  it.live(
    "a pass held up in a slow object-store call does not stall uploads on the embedded database's one connection",
    () =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const files = yield* FileService
        const reconciler = yield* Reconciler
        yield* Effect.forEach(["a.txt", "b.txt", "c.txt"], abandoned)
        yield* plan.inject([{ call: "store.delete", kind: "pause", times: 1 }])
        const pass = yield* Effect.fork(reconciler.pass({ dryRun: false, grace: 0, maxOrphans: 1000 }))
        yield* plan.reached("store.delete")
        // The pass now waits on the store; uploads must not wait on the pass.
        const uploaded = yield* uploadBytes(
          files,
          { name: "meanwhile.txt", contentType: "text/plain" },
          textOfSize(800)
        ).pipe(
          Effect.timeout("10 seconds")
        )
        expect(uploaded.name).toBe("meanwhile.txt")
        yield* plan.resume
        const report = yield* Fiber.join(pass)
        yield* plan.clear
        expect(report.abandonedUploads).toHaveLength(3)
      }).pipe(Effect.provide(services(PgFileRepository.layer.pipe(Layer.provide(TestDatabase.embeddedLayer))))),
    60_000
  )
})
