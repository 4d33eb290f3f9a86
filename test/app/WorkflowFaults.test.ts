/**
 * The workflows with a fault injected at every call they make (through the ports
 * and, beneath the object store, of its backend): what the client hears, what is
 * left right after (nothing, unless the protocol leaves it to the reconciler), and
 * G1-G4 before and after reconciliation. Small files take the single-put path,
 * larger ones the multipart path. A property generates fault plans over interleaved
 * uploads, deletes and reconciler passes, on the in-memory repository and on
 * PostgreSQL semantics (embedded PGlite, and TEST_DATABASE_URL's server when set).
 */
import { describe, expect, it as vitestIt, layer } from "@effect/vitest"
import { Cause, DateTime, type Duration, Effect, Exit, FastCheck as fc, Fiber, Layer, Option } from "effect"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as PgFileRepository from "../../src/adapters/database/PgFileRepository.js"
import { FileService } from "../../src/app/FileService.js"
import { Reconciler } from "../../src/app/Reconciler.js"
import * as UploadSettings from "../../src/app/UploadSettings.js"
import { type FileRecord, ObjectKey } from "../../src/domain/FileRecord.js"
import { LOCAL_OWNER } from "../../src/domain/FileRecord.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { noQuota } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import * as Backends from "../support/Backends.js"
import { uploadBytes } from "../support/Content.js"
import type { Fault, PortCall } from "../support/FaultInjection.js"
import * as FaultInjection from "../support/FaultInjection.js"
import type { Acknowledged } from "../support/Guarantees.js"
import { violations } from "../support/Guarantees.js"
import { request, textOfSize, upload } from "../support/Http.js"
import { recordFor } from "../support/Records.js"
import { expectSettled, snapshot } from "../support/Snapshot.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestServer from "../support/TestServer.js"

const PART = TestServer.testPartSize
/** A file of 3 parts and a bit: its parts are the 1st, 2nd, 3rd (whole) and 4th (short). */
const LARGE = 3 * PART + 1000

/** Small files (one put) and large ones (a multipart upload) alike. */
const policy = new UploadPolicy({
  minBytes: 512,
  maxBytes: 1024 * 1024,
  contentTypes: ["text/plain"],
  extensions: ["txt"]
})

const faultyStores = <E>(repository: Layer.Layer<FileRepository, E>) =>
  FaultInjection.layer(Layer.merge(Backends.memory, repository), { partSize: PART })

const services = <E>(repository: Layer.Layer<FileRepository, E>) =>
  Layer.mergeAll(FileService.Default, Reconciler.Default).pipe(
    Layer.provideMerge(
      Layer.merge(
        faultyStores(repository),
        UploadSettings.layer({ policy, keyPrefix: TestServer.testPrefix, quota: noQuota })
      )
    ),
    Layer.provide(TestServer.quietLogs)
  )

const MemoryServices = services(MemoryFileRepository.layer)

const itLive = vitestIt.live

const reconcile = Effect.flatMap(
  Reconciler,
  (reconciler) => reconciler.pass({ dryRun: false, grace: 0, maxOrphans: 1000 })
).pipe(
  Effect.orDie
)

/**
 * What the stores hold beyond the settled state: intents, objects no listed file
 * owns, open multipart uploads (those whose id tandem was told; see lostUploads).
 */
const leftovers = Effect.gen(function*() {
  const plan = yield* FaultInjection.FaultPlan
  return { ...expectSettled(yield* snapshot), openUploads: yield* plan.openUploads }
})

/** Aborts the uploads whose id never reached tandem: what a lifecycle rule does on S3 (README). */
const expireLostUploads = Effect.gen(function*() {
  const plan = yield* FaultInjection.FaultPlan
  const backend = yield* Backends.Backend
  for (const uploadId of yield* plan.lostUploads) {
    yield* backend.abortMultipart({ key: ObjectKey.make("lifecycle-rule"), uploadId }).pipe(Effect.orDie)
  }
})

const nothingLeft = { intents: [], strayObjects: [], openUploads: [] }

/** Reconciles with no faults left, then checks every guarantee and that nothing is left. */
const settleAndCheck = (acknowledged: Acknowledged) =>
  Effect.gen(function*() {
    yield* (yield* FaultInjection.FaultPlan).clear
    yield* reconcile
    expect(yield* leftovers).toEqual(nothingLeft)
    return yield* violations(acknowledged, { afterReconcile: true })
  })

const titleOf = (faults: ReadonlyArray<Fault>) =>
  faults.map((f) =>
    `${f.call}${f.after === undefined ? "" : ` #${f.after + 1}`} ${f.kind}${
      f.times === undefined ? "" : ` ${f.times}x`
    }`
  ).join(", ")

/** The calls of each workflow, in order. */
const putCalls: ReadonlyArray<PortCall> = ["repo.insertPending", "store.put", "repo.commitPending", "repo.commit"]
const deleteCalls: ReadonlyArray<PortCall> = ["repo.markDeleting", "store.delete", "repo.remove"]

/** Every call of the multipart path, each part on its own; `after` skips the parts before it. */
const multipartSteps: ReadonlyArray<Omit<Fault, "kind">> = [
  { call: "repo.insertPending" },
  { call: "store.createMultipart" },
  { call: "repo.recordMultipart" },
  { call: "store.uploadPart", after: 0, times: 1 },
  { call: "store.uploadPart", after: 1, times: 1 },
  { call: "store.uploadPart", after: 3, times: 1 },
  { call: "store.completeMultipart" },
  { call: "repo.commitPending" },
  { call: "repo.commit" }
]

/**
 * What an upload that failed at one call leaves right after, before any
 * reconciliation: nothing, but where the protocol hands the case to the reconciler.
 */
const expectedLeftovers = (fault: Fault) => {
  // The intent may have been written; the process cannot know, so it waits out the grace period.
  if (fault.call === "repo.insertPending" && fault.kind === "ambiguous") return "an intent" as const
  // The upload exists but its id never came back: only a lifecycle rule finds it (README).
  if (fault.call === "store.createMultipart" && fault.kind === "ambiguous") return "an unknown upload" as const
  // A COMMIT whose answer was lost is never undone: the file it may have committed stays.
  if (fault.call === "repo.commit" && fault.kind === "ambiguous") return "a committed file" as const
  return "nothing" as const
}

describe("workflows under faults", () => {
  // Live clock: compensation retries really wait.
  layer(Reconciler.Default.pipe(Layer.provideMerge(TestServer.layer(faultyStores(MemoryFileRepository.layer)))), {
    excludeTestServices: true
  })("over HTTP", (it) => {
    const createCases: ReadonlyArray<{ faults: ReadonlyArray<Fault>; status: number; error: string; left: boolean }> = [
      {
        faults: [{ call: "repo.insertPending", kind: "fail" }],
        status: 503,
        error: "DatabaseUnavailable",
        left: false
      },
      {
        faults: [{ call: "repo.insertPending", kind: "ambiguous" }],
        status: 503,
        error: "DatabaseUnavailable",
        left: true
      },
      { faults: [{ call: "store.put", kind: "fail" }], status: 503, error: "ObjectStoreUnavailable", left: false },
      { faults: [{ call: "store.put", kind: "ambiguous" }], status: 503, error: "ObjectStoreUnavailable", left: false },
      {
        faults: [{ call: "repo.commitPending", kind: "fail" }],
        status: 503,
        error: "DatabaseUnavailable",
        left: false
      },
      { faults: [{ call: "repo.commit", kind: "fail" }], status: 503, error: "DatabaseUnavailable", left: false },
      { faults: [{ call: "repo.commit", kind: "ambiguous" }], status: 503, error: "CommitOutcomeUnknown", left: false },
      {
        faults: [{ call: "repo.commit", kind: "fail" }, { call: "store.delete", kind: "fail", times: 1 }],
        status: 503,
        error: "DatabaseUnavailable",
        left: false
      },
      {
        faults: [{ call: "repo.commit", kind: "fail" }, { call: "store.delete", kind: "fail" }],
        status: 503,
        error: "CleanupFailed",
        left: true
      },
      {
        faults: [{ call: "repo.commit", kind: "fail" }, { call: "repo.remove", kind: "fail" }],
        status: 503,
        error: "DatabaseUnavailable",
        left: true
      }
    ]
    for (const { error, faults, left, status } of createCases) {
      it.effect(
        `upload with ${titleOf(faults)}: ${status} ${error}; ${
          left ? "left to the reconciler" : "nothing left"
        }; G1-G4 hold`,
        () =>
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
            const after = yield* leftovers
            if (!left) expect(after).toEqual(nothingLeft)
            else expect(after.intents.length + after.strayObjects.length).toBeGreaterThan(0)
            const none = { uploads: new Map<string, string>(), deletes: new Set<string>() }
            expect(yield* violations(none, { afterReconcile: false })).toEqual([])
            expect(yield* settleAndCheck(none)).toEqual([])
          })
      )
    }

    it.effect("a file the client got wrong whose cleanup then fails: the client hears its own 422, the reconciler removes the rest", () =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const base = yield* TestServer.baseUrl
        yield* plan.inject([{ call: "store.delete", kind: "fail" }])
        const bytes = textOfSize(1024)
        bytes[900] = 0xff
        const response = yield* upload(base, "bad.txt", "text/plain", bytes)
        yield* plan.clear
        expect(response.status).toBe(422)
        expect(response.json).toMatchObject({ error: "NotUtf8" })
        // The failed cleanup left its intent, naming the bytes: the reconciler's to finish.
        expect((yield* leftovers).intents).toHaveLength(1)
        expect(yield* settleAndCheck({ uploads: new Map(), deletes: new Set() })).toEqual([])
      }))

    it.effect("an unconfirmed COMMIT is not compensated: the file it committed stays whole", () =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const files = yield* FileService
        const base = yield* TestServer.baseUrl
        const before = (yield* files.list(LOCAL_OWNER, { limit: 1000, after: Option.none() })).items.length
        yield* plan.inject([{ call: "repo.commit", kind: "ambiguous" }])
        const response = yield* upload(base, "kept.txt", "text/plain", textOfSize(1024))
        yield* plan.clear
        expect(response.json).toMatchObject({ error: "CommitOutcomeUnknown" })
        const after = (yield* files.list(LOCAL_OWNER, { limit: 1000, after: Option.none() })).items
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
      it.effect(`delete with ${titleOf(faults)}: ${status}; the file is ${gone ? "gone" : "intact"} and G1-G4 hold`, () =>
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

  // Each case on fresh stores, so what one leaves cannot fail another. Live clock: retries really wait.
  describe("the workflows, call by call", () => {
    const it = {
      effect: (name: string, self: () => Effect.Effect<void, unknown, Layer.Layer.Success<typeof MemoryServices>>) =>
        itLive(name, () => Effect.provide(self(), MemoryServices))
    }
    /** Uploads one file under `faults`; what came of it, and what is left right after. */
    const uploadUnder = (faults: ReadonlyArray<Fault>, size: number) =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const files = yield* FileService
        yield* plan.inject(faults)
        const exit = yield* Effect.exit(
          uploadBytes(files, { name: "new.txt", contentType: "text/plain" }, textOfSize(size))
        )
        const calls = yield* plan.calls
        yield* plan.clear
        return { exit, calls, left: yield* leftovers, lost: yield* plan.lostUploads }
      })

    const checkLeftovers = (fault: Fault, result: Effect.Effect.Success<ReturnType<typeof uploadUnder>>) => {
      const expected = expectedLeftovers(fault)
      if (expected === "nothing") expect(result.left).toEqual(nothingLeft)
      if (expected === "an intent") {
        expect(result.left).toMatchObject({ intents: [expect.stringMatching(/^upload /)], strayObjects: [] })
      }
      if (expected === "an unknown upload") {
        expect(result).toMatchObject({ left: nothingLeft, lost: [expect.any(String)] })
      }
      if (expected === "a committed file") expect(Exit.isFailure(result.exit) && result.left).toEqual(nothingLeft)
    }

    for (const kind of ["fail", "ambiguous", "interrupt"] as const) {
      for (const step of putCalls) {
        const fault: Fault = { call: step, kind }
        it.effect(`a small file with ${titleOf([fault])}: compensated at once (${expectedLeftovers(fault)} left), G1-G4 hold`, () =>
          Effect.gen(function*() {
            const result = yield* uploadUnder([fault], 1024)
            expect(result.calls).toContain(step)
            expect(Exit.isFailure(result.exit)).toBe(true)
            if (kind === "interrupt") {
              expect(Exit.isFailure(result.exit) && Cause.isInterruptedOnly(result.exit.cause)).toBe(true)
            }
            checkLeftovers(fault, result)
            expect(yield* settleAndCheck({ uploads: new Map<string, string>(), deletes: new Set<string>() })).toEqual(
              []
            )
          }))
      }
      for (const step of multipartSteps) {
        const fault: Fault = { ...step, kind }
        it.effect(`a large file with ${titleOf([fault])}: compensated at once (${expectedLeftovers(fault)} left), G1-G4 hold`, () =>
          Effect.gen(function*() {
            const result = yield* uploadUnder([fault], LARGE)
            expect(result.calls.filter((call) => call === step.call).length).toBeGreaterThan(step.after ?? 0)
            expect(Exit.isFailure(result.exit)).toBe(true)
            checkLeftovers(fault, result)
            yield* expireLostUploads
            const committed = expectedLeftovers(fault) === "a committed file"
              ? (yield* (yield* FileService).list(LOCAL_OWNER, { limit: 1000, after: Option.none() })).items.filter((
                r
              ) => r.name === "new.txt")
              : []
            const acknowledged = {
              uploads: new Map(committed.map((r) => [r.id as string, r.sha256 as string])),
              deletes: new Set<string>()
            }
            expect(yield* settleAndCheck(acknowledged)).toEqual([])
          }))
      }
    }

    it.effect("a large file whose compensation cannot abort its upload: CleanupFailed, and the reconciler aborts it from the intent", () =>
      Effect.gen(function*() {
        const result = yield* uploadUnder([
          { call: "store.uploadPart", kind: "fail", after: 1, times: 1 },
          { call: "store.abortMultipart", kind: "fail" }
        ], LARGE)
        expect(Exit.isFailure(result.exit) && Cause.failureOption(result.exit.cause)).toEqual(
          Option.some(expect.objectContaining({ _tag: "CleanupFailed" }))
        )
        // The intent stays, naming its upload: the reconciler finishes the job.
        expect(result.left.intents).toHaveLength(1)
        expect(result.left.openUploads).toHaveLength(1)
        const plan = yield* FaultInjection.FaultPlan
        yield* reconcile
        expect(yield* plan.calls).toContain("store.abortMultipart")
        expect(yield* leftovers).toEqual(nothingLeft)
      }))

    it.effect("a large file that outlives its grace period finds its intent reclaimed: UploadExpired, nothing left", () =>
      Effect.gen(function*() {
        const files = yield* FileService
        const plan = yield* FaultInjection.FaultPlan
        // Its bytes are all written; a reconciler pass with no grace reclaims the intent before the commit.
        yield* plan.inject([{ call: "store.completeMultipart", kind: "pause" }])
        const fiber = yield* Effect.fork(
          uploadBytes(files, { name: "late.txt", contentType: "text/plain" }, textOfSize(LARGE))
        )
        yield* plan.reached("store.completeMultipart")
        yield* reconcile
        yield* plan.resume
        const exit = yield* Fiber.await(fiber)
        yield* plan.clear
        expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause)).toEqual(
          Option.some(expect.objectContaining({ _tag: "UploadExpired" }))
        )
        expect(yield* leftovers).toEqual(nothingLeft)
      }))

    it.effect("an interruption that arrives during the COMMIT does not undo the file it committed", () =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const files = yield* FileService
        const before = (yield* files.list(LOCAL_OWNER, { limit: 1000, after: Option.none() })).items.length
        // The interruption arrives while the COMMIT is under way; a compensation could not drop the record if it ran.
        yield* plan.inject([{ call: "repo.commit", kind: "pause" }, { call: "repo.remove", kind: "fail" }])
        const fiber = yield* Effect.fork(
          uploadBytes(files, { name: "a.txt", contentType: "text/plain" }, textOfSize(1024))
        )
        yield* plan.reached("repo.commit")
        yield* Fiber.interruptFork(fiber)
        yield* plan.resume
        yield* Fiber.await(fiber)
        yield* plan.clear
        const listed = (yield* files.list(LOCAL_OWNER, { limit: 1000, after: Option.none() })).items
        expect(listed).toHaveLength(before + 1)
        const acknowledged = {
          uploads: new Map(listed.map((r) => [r.id as string, r.sha256 as string])),
          deletes: new Set<string>()
        }
        expect(yield* violations(acknowledged, { afterReconcile: false })).toEqual([])
        expect(yield* settleAndCheck(acknowledged)).toEqual([])
      }))

    for (const step of deleteCalls) {
      for (const kind of ["fail", "ambiguous", "interrupt"] as const) {
        it.effect(`a delete with ${step} ${kind}: G1-G4 hold, before and after reconciliation`, () =>
          Effect.gen(function*() {
            const plan = yield* FaultInjection.FaultPlan
            const files = yield* FileService
            const doomed = yield* uploadBytes(files, { name: "doomed.txt", contentType: "text/plain" }, textOfSize(800))
            const acknowledged = {
              uploads: new Map<string, string>([[doomed.id, doomed.sha256]]),
              deletes: new Set<string>(),
              deleteRequested: new Set<string>([doomed.id])
            }
            yield* plan.inject([{ call: step, kind }])
            const deleted = yield* Effect.exit(files.remove(LOCAL_OWNER, doomed.id))
            if (Exit.isSuccess(deleted)) acknowledged.deletes.add(doomed.id)
            expect(yield* plan.calls).toContain(step)
            yield* plan.clear
            expect(yield* violations(acknowledged, { afterReconcile: false })).toEqual([])
            expect(yield* settleAndCheck(acknowledged)).toEqual([])
          }))
      }
    }

    const strayRecord = (name: string) => recordFor(name, DateTime.unsafeMake(0))

    it.effect("an intent whose bytes cannot be removed is skipped and reported; the others and the audit go on", () =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const repository = yield* FileRepository
        const backend = yield* Backends.Backend
        const reconciler = yield* Reconciler
        const [first, second] = [strayRecord("a.txt"), strayRecord("b.txt")]
        yield* Effect.forEach([first, second], (record) => repository.insertPending(record))
        const stray = ObjectKey.make(`${TestServer.testPrefix}stray`)
        yield* backend.put(stray, textOfSize(600), { contentType: "text/plain", metadata: {} })
        yield* plan.inject([{ call: "store.delete", kind: "fail", times: 1 }])
        const report = yield* reconciler.pass({ dryRun: false, grace: 0, maxOrphans: 1000 })
        yield* plan.clear
        expect(report.failed).toHaveLength(1)
        expect(report.abandonedUploads).toHaveLength(1)
        expect(report.orphans).toEqual([stray])
        const again = yield* reconciler.pass({ dryRun: false, grace: 0, maxOrphans: 1000 })
        expect(again.failed).toEqual([])
        expect(again.abandonedUploads).toEqual(report.failed)
        expect(yield* settleAndCheck({ uploads: new Map(), deletes: new Set() })).toEqual([])
      }).pipe(Effect.orDie))

    it.effect("an orphan whose key was repaired before (a late PutObject after its intent was reclaimed) is still removed", () =>
      Effect.gen(function*() {
        const repository = yield* FileRepository
        const store = yield* ObjectStore
        const backend = yield* Backends.Backend
        const reconciler = yield* Reconciler
        yield* reconcile
        const late = strayRecord("late.txt")
        yield* repository.insertPending(late)
        const first = yield* reconciler.pass({ dryRun: false, grace: 0, maxOrphans: 1000 })
        expect(first.abandonedUploads).toEqual([late.objectKey])
        yield* backend.put(late.objectKey, textOfSize(600), { contentType: "text/plain", metadata: {} })
        expect(Option.isSome(yield* store.head(late.objectKey))).toBe(true)
        const second = yield* reconciler.pass({ dryRun: false, grace: 0, maxOrphans: 1000 })
        expect(second.orphans).toEqual([late.objectKey])
        expect(yield* settleAndCheck({ uploads: new Map(), deletes: new Set() })).toEqual([])
      }).pipe(Effect.orDie))
  })

  /** One client operation, and the fault plan in force while it runs. */
  type Operation =
    | { readonly _tag: "Upload"; readonly size: number }
    | { readonly _tag: "Delete"; readonly pick: number }
    | { readonly _tag: "Reconcile" }

  const operation: fc.Arbitrary<Operation> = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 512, max: 2048 }).map((size) => ({ _tag: "Upload" as const, size })) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: PART + 1, max: 3 * PART }).map((size) => ({ _tag: "Upload" as const, size }))
    },
    { weight: 2, arbitrary: fc.nat().map((pick) => ({ _tag: "Delete" as const, pick })) },
    { weight: 1, arbitrary: fc.constant({ _tag: "Reconcile" as const }) }
  )
  // Hangs only where the workflow can still be interrupted (not the intent's insert, a
  // transaction or a compensation, whose outcome decides what comes next).
  const fault: fc.Arbitrary<Fault> = fc.oneof(
    fc.record({
      call: fc.constantFrom<PortCall>(
        ...putCalls,
        ...deleteCalls,
        "store.createMultipart",
        "repo.recordMultipart",
        "store.uploadPart",
        "store.completeMultipart",
        "store.abortMultipart",
        "repo.claimStaleIntents",
        "repo.unknownKeys",
        "repo.recordRepair"
      ),
      kind: fc.constantFrom<Fault["kind"]>("fail", "ambiguous", "interrupt"),
      times: fc.integer({ min: 1, max: 3 })
    }),
    fc.record({
      call: fc.constantFrom<PortCall>("store.put", "store.uploadPart", "repo.markDeleting"),
      kind: fc.constant("hang" as const),
      times: fc.constant(1)
    })
  )
  const round = fc.record({
    faults: fc.array(fault, { maxLength: 3 }),
    operations: fc.array(operation, { minLength: 1, maxLength: 6 })
  })

  /** `patience`: how long a client waits for one operation before giving up on it (a hung call). */
  const faultPlans = <E>(
    name: string,
    repository: Layer.Layer<FileRepository, E>,
    runs: number,
    patience: Duration.DurationInput
  ) =>
    layer(services(repository), { excludeTestServices: true, timeout: 300_000 })(name, (it) => {
      it.effect.prop(
        "random fault plans over interleaved uploads, deletes and reconciler passes: G1, G3, G4 at every step, G2 after reconciliation",
        [fc.array(round, { minLength: 1, maxLength: 5 })],
        ([rounds]) =>
          Effect.gen(function*() {
            const plan = yield* FaultInjection.FaultPlan
            const files = yield* FileService
            const reconciler = yield* Reconciler
            const acknowledged = {
              uploads: new Map<string, string>(),
              deletes: new Set<string>(),
              deleteRequested: new Set<string>()
            }
            const live: Array<FileRecord> = []
            for (const { faults, operations } of rounds) {
              yield* plan.inject(faults)
              yield* Effect.forEach(operations, (op, i) => {
                const run: Effect.Effect<void, unknown> = op._tag === "Upload"
                  ? Effect.map(
                    uploadBytes(
                      files,
                      { name: `f${i}.txt`, contentType: "text/plain" },
                      textOfSize(op.size, `round ${i} `)
                    ),
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
                      return Effect.map(
                        files.remove(LOCAL_OWNER, target.id),
                        () => void acknowledged.deletes.add(target.id)
                      )
                    })
                  : Effect.asVoid(reconciler.pass({ dryRun: false, grace: 0, maxOrphans: 1000 }))
                // A hung call stands for a request the client gave up on.
                return Effect.exit(Effect.timeout(run, patience))
              }, { concurrency: "unbounded", discard: true })
              yield* plan.clear
              expect(yield* violations(acknowledged, { afterReconcile: false })).toEqual([])
            }
            yield* expireLostUploads
            expect(yield* settleAndCheck(acknowledged)).toEqual([])
          }),
        { fastCheck: { numRuns: runs }, timeout: 240_000 }
      )
    })

  faultPlans(
    "fault plans on the in-memory repository",
    MemoryFileRepository.layer,
    Number(process.env.RUNS ?? 40),
    "300 millis"
  )
  faultPlans(
    "fault plans on PostgreSQL semantics (embedded PGlite)",
    PgFileRepository.layer.pipe(Layer.provide(TestDatabase.embeddedLayer)),
    Number(process.env.PG_RUNS ?? 8),
    "1 second"
  )
  if (Option.isSome(TestDatabase.serverUrl)) {
    faultPlans(
      "fault plans on PostgreSQL (TEST_DATABASE_URL)",
      PgFileRepository.layer.pipe(Layer.provide(TestDatabase.freshDatabase(TestDatabase.serverUrl.value))),
      Number(process.env.PG_RUNS ?? 8),
      "1 second"
    )
  }
})
