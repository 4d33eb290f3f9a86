import { describe, expect, it, layer } from "@effect/vitest"
import { Cause, Effect, Exit, FastCheck as fc, Layer, Option, Stream } from "effect"
import * as MemoryFileRepository from "../../src/adapters/MemoryFileRepository.js"
import * as MemoryObjectStore from "../../src/adapters/MemoryObjectStore.js"
import { FileService } from "../../src/app/FileService.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { ObjectStore, readAll } from "../../src/ports/ObjectStore.js"
import type { Fault, PortCall } from "../support/FaultInjection.js"
import * as FaultInjection from "../support/FaultInjection.js"
import { textOfSize, upload } from "../support/Http.js"
import * as TestServer from "../support/TestServer.js"

const MemoryStores = Layer.merge(MemoryObjectStore.layer, MemoryFileRepository.layer)
const FaultyStores = FaultInjection.layer(MemoryStores)

/** Object keys and record keys, read behind the workflow's back (no faults apply to list). */
const snapshot = Effect.gen(function*() {
  const store = yield* ObjectStore
  const repository = yield* FileRepository
  const keys = Array.from(yield* Stream.runCollect(store.list(TestServer.testPrefix))).sort()
  const page = yield* repository.list({ limit: 100_000, after: Option.none() })
  return { keys, records: page.items }
}).pipe(Effect.orDie)

/** No object without a record, no record without its object (with the recorded bytes). */
const assertConsistent = (allowedOrphans: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const store = yield* ObjectStore
    const { keys, records } = yield* snapshot
    const recorded = records.map((r) => r.objectKey as string).sort()
    expect(keys.filter((key) => !allowedOrphans.includes(key))).toEqual(recorded)
    for (const record of records) {
      const object = yield* readAll(store, record.objectKey).pipe(Effect.orDie)
      expect(object.bytes.byteLength).toBe(record.size)
    }
  })

/** The create steps, in the order the workflow makes them. */
const createSteps: ReadonlyArray<PortCall> = ["store.put", "repo.insert", "repo.commit"]

describe("create-file workflow under faults", () => {
  // Live clock: compensation retries really wait.
  layer(TestServer.layer(FaultyStores), { excludeTestServices: true })("over HTTP", (it) => {
    const cases: ReadonlyArray<{ faults: ReadonlyArray<Fault>; status: number; error: string; orphan: boolean }> = [
      { faults: [{ call: "store.put", kind: "fail" }], status: 503, error: "ObjectStoreUnavailable", orphan: false },
      { faults: [{ call: "repo.insert", kind: "fail" }], status: 503, error: "DatabaseUnavailable", orphan: false },
      { faults: [{ call: "repo.commit", kind: "fail" }], status: 503, error: "DatabaseUnavailable", orphan: false },
      {
        faults: [{ call: "repo.insert", kind: "fail" }, { call: "store.delete", kind: "fail", times: 1 }],
        status: 503,
        error: "DatabaseUnavailable",
        orphan: false
      },
      {
        faults: [{ call: "repo.commit", kind: "fail" }, { call: "store.delete", kind: "fail" }],
        status: 503,
        error: "CleanupFailed",
        orphan: true
      }
    ]
    for (const { error, faults, orphan, status } of cases) {
      const title = faults.map((f) => `${f.call} ${f.kind}s${f.times === undefined ? "" : ` ${f.times}x`}`).join(", ")
      it.effect(`${title}: the client gets ${status} ${error}, and the stores agree`, () =>
        Effect.gen(function*() {
          const plan = yield* FaultInjection.FaultPlan
          const base = yield* TestServer.baseUrl
          const before = yield* snapshot
          yield* plan.inject(faults)
          const response = yield* upload(base, "a.txt", "text/plain", textOfSize(1024))
          const calls = yield* plan.calls
          yield* plan.clear
          expect(response.status).toBe(status)
          expect(response.json).toMatchObject({ error })
          expect(calls).toEqual(expect.arrayContaining(faults.map((f) => f.call)))
          const after = yield* snapshot
          expect(after.records).toEqual(before.records)
          const orphans = after.keys.filter((key) => !before.keys.includes(key))
          // A compensation that failed every retry leaves exactly one object, and says so.
          expect(orphans.length).toBe(orphan ? 1 : 0)
          yield* assertConsistent([...before.keys, ...orphans])
        }))
    }

    it.effect("with no faults the same upload succeeds and the stores agree", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const before = yield* snapshot
        const response = yield* upload(base, "a.txt", "text/plain", textOfSize(1024))
        expect(response.status).toBe(201)
        expect((yield* snapshot).records.length).toBe(before.records.length + 1)
        yield* assertConsistent(before.keys.filter((key) => !before.records.some((r) => r.objectKey === key)))
      }))
  })

  const services = FileService.Default.pipe(
    Layer.provideMerge(Layer.merge(FaultyStores, TestServer.defaultSettings)),
    Layer.provide(TestServer.quietLogs)
  )
  const bytes = textOfSize(1024)

  for (const step of createSteps) {
    it.live(`a crash (interruption) at ${step} leaves nothing behind`, () =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const files = yield* FileService
        yield* plan.inject([{ call: step, kind: "interrupt" }])
        const exit = yield* Effect.exit(files.upload({ name: "a.txt", contentType: "text/plain" }, bytes))
        expect(Exit.isFailure(exit) && Cause.isInterrupted(exit.cause)).toBe(true)
        yield* plan.clear
        const { keys, records } = yield* snapshot
        expect(keys).toEqual([])
        expect(records).toEqual([])
      }).pipe(Effect.provide(services)))
  }

  // A crash cannot strike inside a finalizer the process survives, so compensation only fails.
  const faultArbitrary: fc.Arbitrary<Fault> = fc.oneof(
    fc.record({
      call: fc.constantFrom(...createSteps),
      kind: fc.constantFrom<Fault["kind"]>("fail", "interrupt"),
      times: fc.integer({ min: 1, max: 3 })
    }),
    fc.record({ call: fc.constant<PortCall>("store.delete"), kind: fc.constant("fail" as const), times: fc.integer({ min: 1, max: 5 }) })
  )

  it.live.prop(
    "any fault plan over concurrent uploads: every acknowledged file is intact; the only leftovers are objects whose cleanup failed",
    [fc.array(faultArbitrary, { maxLength: 4 }), fc.integer({ min: 1, max: 8 })],
    ([faults, uploads]) =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const files = yield* FileService
        const store = yield* ObjectStore
        yield* plan.inject(faults)
        const exits = yield* Effect.forEach(
          Array.from({ length: uploads }, (_, i) => textOfSize(512 + i * 100, `file ${i} `)),
          (content, i) => Effect.exit(files.upload({ name: `f${i}.txt`, contentType: "text/plain" }, content)),
          { concurrency: "unbounded" }
        )
        const failedDeletes = yield* plan.faultedKeys("store.delete")
        yield* plan.clear
        const acknowledged = exits.flatMap((exit) => (Exit.isSuccess(exit) ? [exit.value] : []))
        const reportedOrphans = exits.flatMap((exit) =>
          Exit.isFailure(exit)
            ? Option.match(Cause.failureOption(exit.cause), {
              onNone: () => [],
              onSome: (error) => (error._tag === "CleanupFailed" ? [error.key] : [])
            })
            : []
        )
        for (const record of acknowledged) {
          const object = yield* readAll(store, record.objectKey).pipe(Effect.orDie)
          expect(object.bytes.byteLength).toBe(record.size)
        }
        const { keys, records } = yield* snapshot
        expect(records.map((r) => r.id).sort()).toEqual(acknowledged.map((r) => r.id).sort())
        const orphans = keys.filter((key) => !records.some((r) => r.objectKey === key))
        // Every CleanupFailed names a real leftover, and every leftover is an object whose
        // compensating delete was made to fail (a crashed upload has nobody to report to:
        // that is the reconciler's case).
        for (const key of reportedOrphans) expect(orphans).toContain(key)
        for (const key of orphans) expect(failedDeletes).toContain(key)
      }).pipe(Effect.provide(services)),
    { fastCheck: { numRuns: 100 } }
  )
})
