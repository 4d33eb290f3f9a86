/**
 * The resumable-upload workflow with a fault injected at every call it makes
 * (through the ports, and beneath the object store, of its backend): a client
 * that resumes as tus clients do (HEAD, then PATCH from the offset it is told)
 * always ends with its file, byte for byte; an offset it was told never goes
 * backwards; and nothing is left: no intent, no stray object, no open multipart
 * upload. On the in-memory repository and on PostgreSQL (TEST_DATABASE_URL).
 */
import { describe, expect, layer } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as PgFileRepository from "../../src/adapters/database/PgFileRepository.js"
import { FileService } from "../../src/app/FileService.js"
import { Reconciler } from "../../src/app/Reconciler.js"
import { ResumableUploads } from "../../src/app/ResumableUploads.js"
import * as UploadSettings from "../../src/app/UploadSettings.js"
import { type FileId, LOCAL_OWNER, ObjectKey } from "../../src/domain/FileRecord.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import { ofBytes } from "../../src/ports/ContentReader.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { noQuota } from "../../src/ports/FileRepository.js"
import * as Backends from "../support/Backends.js"
import type { Fault, PortCall } from "../support/FaultInjection.js"
import * as FaultInjection from "../support/FaultInjection.js"
import { textOfSize } from "../support/Http.js"
import { expectSettled, snapshot } from "../support/Snapshot.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestServer from "../support/TestServer.js"

const PART = 64 * 1024
const EXPIRY = Duration.seconds(2)
/** Three whole parts and a bit, in PATCHes cut inside parts, across a boundary, and on one. */
const BYTES = textOfSize(3 * PART + 1000, "résumé – ünïcode ")
const CUTS = [1000, PART + 10, 2 * PART, BYTES.byteLength]
const SHA256 = createHash("sha256").update(BYTES).digest("hex")

const services = <E>(repository: Layer.Layer<FileRepository, E>) =>
  Layer.mergeAll(ResumableUploads.Default, FileService.Default, Reconciler.Default).pipe(
    Layer.provideMerge(
      Layer.merge(
        FaultInjection.layer(Layer.merge(Backends.memory, repository), { partSize: PART }),
        UploadSettings.layer({
          policy: new UploadPolicy({
            minBytes: 512,
            maxBytes: 1024 * 1024,
            contentTypes: ["text/plain"],
            extensions: ["txt"]
          }),
          keyPrefix: TestServer.testPrefix,
          quota: noQuota,
          resumable: { expiry: EXPIRY, partSize: PART }
        })
      )
    ),
    Layer.provide(TestServer.quietLogs)
  )

/** Runs `self` in a fiber of its own: an injected interruption ends that fiber, as a crash ends a request. */
const attempt = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.flatMap(Effect.fork(self), Fiber.await)

/**
 * A tus client: creates the upload (again, if creating failed), then asks where it
 * stands and sends the rest of the PATCH it is in, until the upload is a file.
 * Every offset it is told is checked against the largest it was told before.
 */
const client = Effect.gen(function*() {
  const uploads = yield* ResumableUploads
  let id: FileId | undefined
  for (let tries = 0; id === undefined; tries++) {
    if (tries > 5) return yield* Effect.dieMessage("could not create the upload")
    const created = yield* attempt(
      uploads.create(LOCAL_OWNER, { name: "notes.txt", contentType: "text/plain" }, BYTES.byteLength)
    )
    if (Exit.isSuccess(created)) id = created.value.id
  }
  const upload = id
  let told = 0
  for (let tries = 0; tries < 30; tries++) {
    const status = yield* attempt(uploads.status(LOCAL_OWNER, upload))
    if (Exit.isFailure(status)) continue
    expect(status.value.offset).toBeGreaterThanOrEqual(told)
    told = status.value.offset
    if (Option.isSome(status.value.file)) return { id: upload, file: status.value.file.value }
    const to = CUTS.find((cut) => cut > told) ?? BYTES.byteLength
    const appended = yield* attempt(
      uploads.append(LOCAL_OWNER, upload, told, ofBytes(BYTES.subarray(told, to)), Option.none())
    )
    if (Exit.isSuccess(appended)) {
      expect(appended.value.offset).toBe(to)
      told = to
      if (Option.isSome(appended.value.file)) return { id: upload, file: appended.value.file.value }
    }
  }
  return yield* Effect.dieMessage("the upload did not finish in 30 attempts")
})

const reconcile = Effect.flatMap(
  Reconciler,
  (reconciler) => reconciler.pass({ dryRun: false, grace: Duration.hours(1), maxOrphans: 1000 })
).pipe(Effect.orDie)

/** Aborts the uploads whose id never reached tandem: what a lifecycle rule does on S3 (README). */
const expireLostUploads = Effect.gen(function*() {
  const plan = yield* FaultInjection.FaultPlan
  const backend = yield* Backends.Backend
  for (const uploadId of yield* plan.lostUploads) {
    yield* backend.abortMultipart({ key: ObjectKey.make("lifecycle-rule"), uploadId }).pipe(Effect.orDie)
  }
})

const leftovers = Effect.gen(function*() {
  const plan = yield* FaultInjection.FaultPlan
  return { ...expectSettled(yield* snapshot), openUploads: yield* plan.openUploads }
})

const nothingLeft = { intents: [], strayObjects: [], openUploads: [] }

/** The calls a resumable upload makes, with how many times each is made, from a run with no fault. */
const callsOfACleanRun = Effect.gen(function*() {
  const plan = yield* FaultInjection.FaultPlan
  yield* plan.clear
  const done = yield* client
  const calls = yield* plan.calls
  yield* deleteFile(done.id)
  const counted = new Map<PortCall, number>()
  for (const call of calls) counted.set(call, (counted.get(call) ?? 0) + 1)
  return counted
})

/** Deletes the file a run made, with no fault: the next run starts from empty stores. */
const deleteFile = (id: FileId) =>
  Effect.gen(function*() {
    yield* (yield* FaultInjection.FaultPlan).clear
    yield* (yield* FileService).remove(LOCAL_OWNER, id).pipe(Effect.orDie)
  })

export const describeFaults = <E>(name: string, repository: Layer.Layer<FileRepository, E>) =>
  layer(services(repository), { timeout: 300_000, excludeTestServices: true })(
    `a resumable upload under faults, on ${name}`,
    (it) => {
      it.effect(
        "with one fault at any call, the client ends with its file, and nothing else is left",
        () =>
          Effect.gen(function*() {
            const plan = yield* FaultInjection.FaultPlan
            const counted = yield* callsOfACleanRun
            expect([...counted.keys()]).toEqual(expect.arrayContaining<PortCall>([
              "repo.insertResumable",
              "repo.lockResumable",
              "store.createMultipart",
              "repo.recordMultipart",
              "store.uploadPart",
              "repo.advanceResumable",
              "store.completeMultipart",
              "repo.commitPending",
              "repo.commit"
            ]))
            const faults: Array<Fault> = []
            for (const [call, times] of counted) {
              for (const kind of ["fail", "ambiguous", "interrupt"] as const) {
                for (const after of new Set([0, times - 1])) faults.push({ call, kind, after, times: 1 })
              }
            }
            for (const fault of faults) {
              const title = `${fault.call} #${(fault.after ?? 0) + 1} ${fault.kind}`
              yield* plan.clear
              yield* plan.inject([fault])
              const done = yield* client
              yield* plan.clear
              expect(done.file.sha256, title).toBe(SHA256)
              expect(done.file.size, title).toBe(BYTES.byteLength)
              // An intent whose creation was not confirmed waits for its expiry, then the reconciler's pass.
              if (fault.call === "repo.insertResumable" || fault.call === "repo.commit") {
                yield* Effect.sleep(Duration.sum(EXPIRY, Duration.millis(200)))
              }
              yield* reconcile
              yield* expireLostUploads
              expect(yield* leftovers, title).toEqual(nothingLeft)
              yield* deleteFile(done.id)
            }
          }),
        240_000
      )

      it.effect("an object completed but never described (a crash before its CopyObject): the retried last PATCH reads it back and commits it", () =>
        Effect.gen(function*() {
          const uploads = yield* ResumableUploads
          const repository = yield* FileRepository
          const backend = yield* Backends.Backend
          yield* (yield* FaultInjection.FaultPlan).clear
          const created = yield* uploads.create(
            LOCAL_OWNER,
            { name: "notes.txt", contentType: "text/plain" },
            BYTES.byteLength
          )
          const last = CUTS[CUTS.length - 2] ?? 0
          let at = 0
          for (const cut of CUTS.slice(0, -1)) {
            yield* uploads.append(LOCAL_OWNER, created.id, at, ofBytes(BYTES.subarray(at, cut)), Option.none())
            at = cut
          }
          const upload = Option.getOrThrow(yield* repository.findResumable(LOCAL_OWNER, created.id))
          // What a process that died between completing and describing the object leaves:
          // the multipart upload gone, the whole object there, without its size and sha256.
          yield* backend.abortMultipart({
            key: upload.record.objectKey,
            uploadId: Option.getOrThrow(upload.multipartUploadId)
          })
          yield* backend.put(upload.record.objectKey, BYTES, { contentType: "text/plain", metadata: {} })
          const retried = yield* uploads.append(
            LOCAL_OWNER,
            created.id,
            last,
            ofBytes(BYTES.subarray(last)),
            Option.none()
          )
          expect(Option.map(retried.file, (file) => file.sha256)).toEqual(Option.some(SHA256))
          expect(yield* leftovers).toEqual(nothingLeft)
          yield* deleteFile(created.id)
        }).pipe(Effect.orDie))
    }
  )

describe("resumable uploads under faults", () => {
  describeFaults("the in-memory repository", MemoryFileRepository.layer)
  if (Option.isSome(TestDatabase.serverUrl)) {
    describeFaults(
      "PostgreSQL",
      PgFileRepository.layer.pipe(Layer.provide(TestDatabase.freshDatabase(TestDatabase.serverUrl.value)))
    )
  }
})
