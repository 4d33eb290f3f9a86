import { describe, expect, it, layer } from "@effect/vitest"
import { Cause, DateTime, Effect, Exit, FastCheck as fc, Fiber, Layer, Option } from "effect"
import * as MemoryFileRepository from "../../src/adapters/MemoryFileRepository.js"
import * as MemoryObjectStore from "../../src/adapters/MemoryObjectStore.js"
import { FileService } from "../../src/app/FileService.js"
import { Reconciler } from "../../src/app/Reconciler.js"
import { type FileRecord, ObjectKey } from "../../src/domain/FileRecord.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import type { Fault, PortCall } from "../support/FaultInjection.js"
import * as FaultInjection from "../support/FaultInjection.js"
import type { Acknowledged } from "../support/Guarantees.js"
import { violations } from "../support/Guarantees.js"
import { request, textOfSize, upload } from "../support/Http.js"
import { recordFor } from "../support/Records.js"
import * as TestServer from "../support/TestServer.js"

const FaultyStores = FaultInjection.layer(Layer.merge(MemoryObjectStore.layer, MemoryFileRepository.layer))

const reconcile = Effect.flatMap(Reconciler, (reconciler) => reconciler.pass({ dryRun: false, grace: 0 })).pipe(
  Effect.delay("2 millis"),
  Effect.orDie
)

/** Reconciles with no faults left, then checks every guarantee. */
const settleAndCheck = (acknowledged: Acknowledged) =>
  Effect.gen(function*() {
    yield* (yield* FaultInjection.FaultPlan).clear
    yield* reconcile
    return yield* violations(acknowledged, { afterReconcile: true })
  })

/** The calls of the create workflow, in order, and of the delete workflow. */
const createCalls: ReadonlyArray<PortCall> = ["repo.insertPending", "store.put", "repo.commitPending", "repo.commit"]
const deleteCalls: ReadonlyArray<PortCall> = ["repo.markDeleting", "store.delete", "repo.remove"]

describe("workflows under faults", () => {
  // Live clock: compensation retries really wait.
  layer(Reconciler.Default.pipe(Layer.provideMerge(TestServer.layer(FaultyStores))), { excludeTestServices: true })(
    "over HTTP",
    (it) => {
    const createCases: ReadonlyArray<{ faults: ReadonlyArray<Fault>; status: number; error: string }> = [
      { faults: [{ call: "repo.insertPending", kind: "fail" }], status: 503, error: "DatabaseUnavailable" },
      { faults: [{ call: "repo.insertPending", kind: "ambiguous" }], status: 503, error: "DatabaseUnavailable" },
      { faults: [{ call: "store.put", kind: "fail" }], status: 503, error: "ObjectStoreUnavailable" },
      { faults: [{ call: "store.put", kind: "ambiguous" }], status: 503, error: "ObjectStoreUnavailable" },
      { faults: [{ call: "repo.commitPending", kind: "fail" }], status: 503, error: "DatabaseUnavailable" },
      { faults: [{ call: "repo.commit", kind: "fail" }], status: 503, error: "DatabaseUnavailable" },
      { faults: [{ call: "repo.commit", kind: "ambiguous" }], status: 503, error: "CommitOutcomeUnknown" },
      {
        faults: [{ call: "repo.commit", kind: "fail" }, { call: "store.delete", kind: "fail", times: 1 }],
        status: 503,
        error: "DatabaseUnavailable"
      },
      {
        faults: [{ call: "repo.commit", kind: "fail" }, { call: "store.delete", kind: "fail" }],
        status: 503,
        error: "CleanupFailed"
      },
      {
        faults: [{ call: "repo.commit", kind: "fail" }, { call: "repo.remove", kind: "fail" }],
        status: 503,
        error: "DatabaseUnavailable"
      }
    ]
    for (const { error, faults, status } of createCases) {
      const title = faults.map((f) => `${f.call} ${f.kind}${f.times === undefined ? "" : ` ${f.times}x`}`).join(", ")
      it.effect(`upload with ${title}: ${status} ${error}; G1-G4 hold, before and after reconciliation`, () =>
        Effect.gen(function*() {
          const plan = yield* FaultInjection.FaultPlan
          const base = yield* TestServer.baseUrl
          yield* plan.inject(faults)
          const response = yield* upload(base, "a.txt", "text/plain", textOfSize(1024))
          const calls = yield* plan.calls
          yield* plan.clear
          expect(response.status).toBe(status)
          expect(response.json).toMatchObject({ error })
          expect(calls).toEqual(expect.arrayContaining(faults.map((f) => f.call)))
          const none = { uploads: new Map<string, string>(), deletes: new Set<string>() }
          expect(yield* violations(none, { afterReconcile: false })).toEqual([])
          expect(yield* settleAndCheck(none)).toEqual([])
        }))
    }

    it.effect("an unconfirmed COMMIT is not compensated: the file it committed stays whole", () =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const files = yield* FileService
        const base = yield* TestServer.baseUrl
        const before = (yield* files.list({ limit: 1000, after: Option.none() })).items.length
        yield* plan.inject([{ call: "repo.commit", kind: "ambiguous" }])
        const response = yield* upload(base, "kept.txt", "text/plain", textOfSize(1024))
        yield* plan.clear
        expect(response.json).toMatchObject({ error: "CommitOutcomeUnknown" })
        const after = (yield* files.list({ limit: 1000, after: Option.none() })).items
        expect(after.length).toBe(before + 1)
        const kept = after.find((record) => record.name === "kept.txt")
        expect(kept).toBeDefined()
        expect(yield* settleAndCheck({ uploads: new Map([[kept?.id ?? "", kept?.sha256 ?? ""]]), deletes: new Set() }))
          .toEqual([])
      }))

    const deleteCases: ReadonlyArray<{ faults: ReadonlyArray<Fault>; status: number; gone: boolean }> = [
      { faults: [{ call: "repo.markDeleting", kind: "fail" }], status: 503, gone: false },
      { faults: [{ call: "repo.markDeleting", kind: "ambiguous" }], status: 503, gone: true },
      { faults: [{ call: "store.delete", kind: "fail" }], status: 204, gone: true },
      { faults: [{ call: "store.delete", kind: "ambiguous" }], status: 204, gone: true },
      { faults: [{ call: "repo.remove", kind: "fail" }], status: 204, gone: true }
    ]
    for (const { faults, gone, status } of deleteCases) {
      const title = faults.map((f) => `${f.call} ${f.kind}`).join(", ")
      it.effect(`delete with ${title}: ${status}; the file is ${gone ? "gone" : "intact"} and G1-G4 hold`, () =>
        Effect.gen(function*() {
          const plan = yield* FaultInjection.FaultPlan
          const base = yield* TestServer.baseUrl
          const created = yield* upload(base, "d.txt", "text/plain", textOfSize(900))
          const { id, sha256 } = created.json as { id: string; sha256: string }
          yield* plan.inject(faults)
          const response = yield* request(`${base}/files/${id}`, { method: "DELETE" })
          yield* plan.clear
          expect(response.status).toBe(status)
          expect((yield* request(`${base}/files/${id}`)).status).toBe(gone ? 404 : 200)
          const acknowledged = {
            uploads: new Map(gone ? [] : [[id, sha256]]),
            deletes: new Set(status === 204 ? [id] : [])
          }
          expect(yield* violations(acknowledged, { afterReconcile: false })).toEqual([])
          expect(yield* settleAndCheck(acknowledged)).toEqual([])
        }))
    }
  })

  const services = Layer.mergeAll(FileService.Default, Reconciler.Default).pipe(
    Layer.provideMerge(Layer.merge(FaultyStores, TestServer.defaultSettings)),
    Layer.provide(TestServer.quietLogs)
  )

  for (const step of [...createCalls, ...deleteCalls]) {
    it.live(`a crash (interruption) at ${step}: G1-G4 hold after reconciliation`, () =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const files = yield* FileService
        const kept = yield* files.uploadBytes({ name: "kept.txt", contentType: "text/plain" }, textOfSize(700))
        const acknowledged = {
          uploads: new Map([[kept.id as string, kept.sha256 as string]]),
          deletes: new Set<string>(),
          deleteRequested: new Set(deleteCalls.includes(step) ? [kept.id as string] : [])
        }
        yield* plan.inject([{ call: step, kind: "interrupt" }])
        const crashing: Effect.Effect<unknown, unknown> = createCalls.includes(step)
          ? files.uploadBytes({ name: "a.txt", contentType: "text/plain" }, textOfSize(1024))
          : files.remove(kept.id)
        const exit = yield* Effect.exit(crashing)
        expect(Exit.isFailure(exit) && Cause.isInterrupted(exit.cause)).toBe(true)
        expect(yield* settleAndCheck(acknowledged)).toEqual([])
      }).pipe(Effect.provide(services)))
  }

  it.live("an interruption that arrives during the COMMIT does not undo the file it committed", () =>
    Effect.gen(function*() {
      const plan = yield* FaultInjection.FaultPlan
      const files = yield* FileService
      // A slow COMMIT, and a compensation that could not drop the record if it ran.
      yield* plan.inject([{ call: "repo.commit", kind: "slow" }, { call: "repo.remove", kind: "fail" }])
      const fiber = yield* Effect.fork(files.uploadBytes({ name: "a.txt", contentType: "text/plain" }, textOfSize(1024)))
      yield* Effect.sleep("100 millis")
      yield* Fiber.interrupt(fiber)
      yield* plan.clear
      const listed = (yield* files.list({ limit: 10, after: Option.none() })).items
      expect(listed).toHaveLength(1)
      const acknowledged = { uploads: new Map(listed.map((r) => [r.id as string, r.sha256 as string])), deletes: new Set<string>() }
      expect(yield* violations(acknowledged, { afterReconcile: false })).toEqual([])
      expect(yield* settleAndCheck(acknowledged)).toEqual([])
    }).pipe(Effect.provide(services)))

  const strayRecord = (name: string) => recordFor(name, DateTime.unsafeMake(0))

  it.live("an intent whose bytes cannot be removed is skipped and reported; the others and the audit go on", () =>
    Effect.gen(function*() {
      const plan = yield* FaultInjection.FaultPlan
      const repository = yield* FileRepository
      const store = yield* ObjectStore
      const reconciler = yield* Reconciler
      const [first, second] = [strayRecord("a.txt"), strayRecord("b.txt")]
      yield* Effect.forEach([first, second], (record) => repository.insertPending(record))
      yield* store.put(ObjectKey.make(`${TestServer.testPrefix}stray`), textOfSize(600), { contentType: "text/plain", metadata: {} })
      yield* plan.inject([{ call: "store.delete", kind: "fail", times: 1 }])
      const report = yield* reconciler.pass({ dryRun: false, grace: 0 })
      yield* plan.clear
      expect(report.failed).toHaveLength(1)
      expect(report.abandonedUploads).toHaveLength(1)
      expect(report.orphans).toEqual([`${TestServer.testPrefix}stray`])
      const again = yield* reconciler.pass({ dryRun: false, grace: 0 })
      expect(again.failed).toEqual([])
      expect(again.abandonedUploads).toEqual(report.failed)
      expect(yield* settleAndCheck({ uploads: new Map(), deletes: new Set() })).toEqual([])
    }).pipe(Effect.orDie, Effect.provide(services)))

  it.live("an orphan whose key was repaired before (a late PutObject after its intent was reclaimed) is still removed", () =>
    Effect.gen(function*() {
      const repository = yield* FileRepository
      const store = yield* ObjectStore
      const reconciler = yield* Reconciler
      const late = strayRecord("late.txt")
      yield* repository.insertPending(late)
      const first = yield* reconciler.pass({ dryRun: false, grace: 0 })
      expect(first.abandonedUploads).toEqual([late.objectKey])
      yield* store.put(late.objectKey, textOfSize(600), { contentType: "text/plain", metadata: {} })
      const second = yield* reconciler.pass({ dryRun: false, grace: 0 })
      expect(second.orphans).toEqual([late.objectKey])
      expect(yield* settleAndCheck({ uploads: new Map(), deletes: new Set() })).toEqual([])
    }).pipe(Effect.orDie, Effect.provide(services)))

  // Every port call of create and delete, under every kind of fault, one at a time.
  for (const call of [...createCalls, ...deleteCalls]) {
    for (const kind of ["fail", "ambiguous", "interrupt"] as const) {
      it.live(`${call} ${kind}s during a create and a delete: G1-G4 hold, before and after reconciliation`, () =>
        Effect.gen(function*() {
          const plan = yield* FaultInjection.FaultPlan
          const files = yield* FileService
          const kept = yield* files.uploadBytes({ name: "kept.txt", contentType: "text/plain" }, textOfSize(700))
          const doomed = yield* files.uploadBytes({ name: "doomed.txt", contentType: "text/plain" }, textOfSize(800))
          const acknowledged = {
            uploads: new Map<string, string>([[kept.id, kept.sha256], [doomed.id, doomed.sha256]]),
            deletes: new Set<string>(),
            deleteRequested: new Set<string>([doomed.id])
          }
          yield* plan.inject([{ call, kind }])
          const created = yield* Effect.exit(files.uploadBytes({ name: "new.txt", contentType: "text/plain" }, textOfSize(900)))
          if (Exit.isSuccess(created)) acknowledged.uploads.set(created.value.id, created.value.sha256)
          const deleted = yield* Effect.exit(files.remove(doomed.id))
          if (Exit.isSuccess(deleted)) acknowledged.deletes.add(doomed.id)
          expect(yield* plan.calls).toContain(call)
          expect(yield* violations(acknowledged, { afterReconcile: false })).toEqual([])
          expect(yield* settleAndCheck(acknowledged)).toEqual([])
        }).pipe(Effect.provide(services)))
    }
  }

  /** One client operation, and the fault plan in force while it runs. */
  type Operation =
    | { readonly _tag: "Upload"; readonly size: number }
    | { readonly _tag: "Delete"; readonly pick: number }
    | { readonly _tag: "Reconcile" }

  const operation: fc.Arbitrary<Operation> = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 512, max: 2048 }).map((size) => ({ _tag: "Upload" as const, size })) },
    { weight: 2, arbitrary: fc.nat().map((pick) => ({ _tag: "Delete" as const, pick })) },
    { weight: 1, arbitrary: fc.constant({ _tag: "Reconcile" as const }) }
  )
  // Hangs only where the workflow can still be interrupted (before a transaction or a
  // compensation begins); a real hang elsewhere ends in the driver's own timeout.
  const fault: fc.Arbitrary<Fault> = fc.oneof(
    fc.record({
      call: fc.constantFrom<PortCall>(...createCalls, ...deleteCalls, "repo.staleIntents", "repo.unknownKeys", "repo.recordRepair"),
      kind: fc.constantFrom<Fault["kind"]>("fail", "ambiguous", "interrupt"),
      times: fc.integer({ min: 1, max: 3 })
    }),
    fc.record({
      call: fc.constantFrom<PortCall>("store.put", "repo.insertPending", "repo.markDeleting"),
      kind: fc.constant("hang" as const),
      times: fc.constant(1)
    })
  )
  const round = fc.record({
    faults: fc.array(fault, { maxLength: 3 }),
    operations: fc.array(operation, { minLength: 1, maxLength: 6 })
  })

  it.live.prop(
    "random fault plans over interleaved uploads, deletes and reconciler passes: G1, G3, G4 at every step, G2 after reconciliation",
    [fc.array(round, { minLength: 1, maxLength: 5 })],
    ([rounds]) =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const files = yield* FileService
        const reconciler = yield* Reconciler
        const acknowledged = { uploads: new Map<string, string>(), deletes: new Set<string>(), deleteRequested: new Set<string>() }
        const live: Array<FileRecord> = []
        for (const { faults, operations } of rounds) {
          yield* plan.inject(faults)
          yield* Effect.forEach(operations, (op, i) => {
            const run: Effect.Effect<void, unknown> = op._tag === "Upload"
              ? Effect.map(
                files.uploadBytes({ name: `f${i}.txt`, contentType: "text/plain" }, textOfSize(op.size, `round ${i} `)),
                (record) => {
                  acknowledged.uploads.set(record.id, record.sha256)
                  live.push(record)
                }
              )
              : op._tag === "Delete"
              ? live.length === 0
                ? Effect.void
                : Effect.suspend(() => {
                  const [target] = live.splice(op.pick % live.length, 1)
                  if (target === undefined) return Effect.void
                  acknowledged.deleteRequested.add(target.id)
                  return Effect.map(files.remove(target.id), () => void acknowledged.deletes.add(target.id))
                })
              : Effect.asVoid(reconciler.pass({ dryRun: false, grace: 0 }))
            // A hung call stands for a request the client gave up on.
            return Effect.exit(Effect.timeout(run, "300 millis"))
          }, { concurrency: "unbounded", discard: true })
          yield* plan.clear
          expect(yield* violations(acknowledged, { afterReconcile: false })).toEqual([])
        }
        expect(yield* settleAndCheck(acknowledged)).toEqual([])
      }).pipe(Effect.provide(services)),
    { fastCheck: { numRuns: Number(process.env.RUNS ?? 40) }, timeout: 120_000 }
  )
})
