import { Chunk, DateTime, Duration, Effect, Option, Stream } from "effect"
import type { FileRecord, ObjectKey } from "../domain/FileRecord.js"
import { Repair } from "../domain/Repair.js"
import { FileRepository, type Intent } from "../ports/FileRepository.js"
import { ObjectStore } from "../ports/ObjectStore.js"
import { UploadSettings } from "./UploadSettings.js"

/** Intents claimed per transaction; each is locked while its object is deleted. */
const INTENT_BATCH = 100
/** Object keys checked against the database per query during the bucket audit. */
const AUDIT_BATCH = 500

export interface ReconcileOptions {
  /** Report what is wrong, change nothing. */
  readonly dryRun: boolean
  /** How long an intent may stay unfinished before it counts as abandoned. */
  readonly grace: Duration.DurationInput
  /** Called after each audited batch of objects. */
  readonly onProgress?: (audited: number, orphans: number) => Effect.Effect<void>
}

export interface ReconcileReport {
  readonly dryRun: boolean
  /** Uploads whose intent outlived the grace period: object (if any) and intent removed. */
  readonly abandonedUploads: ReadonlyArray<ObjectKey>
  /** Deletes decided but not finished: object and tombstone removed. */
  readonly unfinishedDeletes: ReadonlyArray<ObjectKey>
  /** Objects under the prefix that no record names: removed. */
  readonly orphans: ReadonlyArray<ObjectKey>
  readonly objectsAudited: number
}

const actions = {
  "abandoned-upload": "aborted its multipart upload (if any), deleted the object (if written) and the intent",
  "unfinished-delete": "deleted the object and the tombstone",
  "orphan-object": "deleted the object"
} as const

/**
 * Makes the guarantees hold after crashes: finishes or undoes every intent the
 * workflows left behind, and removes objects no record names. Safe to run from
 * several replicas at once: intents are claimed with row locks (SKIP LOCKED), and
 * each object key is claimed in the repair log before anything is deleted, so no
 * key is worked on twice.
 */
export class Reconciler extends Effect.Service<Reconciler>()("app/Reconciler", {
  effect: Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const { keyPrefix } = yield* UploadSettings

    const repairOf = (record: FileRecord, problem: keyof typeof actions, at: DateTime.Utc) =>
      new Repair({ objectKey: record.objectKey, fileId: Option.some(record.id), problem, action: actions[problem], repairedAt: at })

    /** One batch of stale intents, claimed, repaired and logged in one transaction. */
    const repairIntentBatch = (before: DateTime.Utc) =>
      repository.withTransaction(Effect.gen(function*() {
        const intents = yield* repository.staleIntents({ before, limit: INTENT_BATCH, lock: true })
        const now = yield* DateTime.now
        yield* Effect.forEach(intents, (intent) =>
          Effect.gen(function*() {
            yield* repository.recordRepair(
              repairOf(intent.record, intent.kind === "upload" ? "abandoned-upload" : "unfinished-delete", now)
            )
            // Bytes go before the record: if this fails, the transaction rolls back and the intent stays.
            if (Option.isSome(intent.multipartUploadId)) {
              yield* store.abortMultipart({ key: intent.record.objectKey, uploadId: intent.multipartUploadId.value })
            }
            yield* store.delete(intent.record.objectKey)
            yield* repository.remove(intent.record.id)
          }), { discard: true })
        return intents
      }))

    const repairIntents = (before: DateTime.Utc) =>
      Effect.iterate({ done: false, found: [] as ReadonlyArray<Intent> }, {
        while: (state) => !state.done,
        body: (state) =>
          Effect.map(repairIntentBatch(before), (batch) => ({
            done: batch.length < INTENT_BATCH,
            found: [...state.found, ...batch]
          }))
      }).pipe(Effect.map((state) => state.found))

    /**
     * An object no record names: claimed in the repair log, then deleted, in one
     * transaction. One that is gone by now (a delete finished between the listing
     * and the check) is no orphan and is not logged as one.
     */
    const removeOrphan = (key: ObjectKey) =>
      Effect.flatMap(store.head(key), (object) => Option.isNone(object) ? Effect.succeed(false) : claimAndDelete(key))

    const claimAndDelete = (key: ObjectKey) =>
      repository.withTransaction(Effect.gen(function*() {
        const claimed = yield* repository.recordRepair(
          new Repair({
            objectKey: key,
            fileId: Option.none(),
            problem: "orphan-object",
            action: actions["orphan-object"],
            repairedAt: yield* DateTime.now
          })
        )
        if (claimed) yield* store.delete(key)
        return claimed
      }))

    /**
     * Every object under the prefix, checked against the database in batches. A
     * record is written before its object and removed after it, so an object that
     * no record names is an orphan whatever its age.
     */
    const audit = (options: ReconcileOptions) =>
      store.list(keyPrefix).pipe(
        Stream.grouped(AUDIT_BATCH),
        Stream.mapAccumEffect({ audited: 0, orphans: [] as ReadonlyArray<ObjectKey> }, (state, chunk) =>
          Effect.gen(function*() {
            const keys = Chunk.toReadonlyArray(chunk)
            const unknown = yield* repository.unknownKeys(keys)
            const removed = options.dryRun
              ? unknown
              : (yield* Effect.forEach(unknown, (key) => Effect.map(removeOrphan(key), (claimed) => (claimed ? [key] : []))))
                .flat()
            const next = { audited: state.audited + keys.length, orphans: [...state.orphans, ...removed] }
            if (options.onProgress !== undefined) yield* options.onProgress(next.audited, next.orphans.length)
            return [next, next] as const
          })),
        Stream.runLast,
        Effect.map(Option.getOrElse(() => ({ audited: 0, orphans: [] as ReadonlyArray<ObjectKey> })))
      )

    /** One full pass: stale intents, then the bucket audit. */
    const pass = Effect.fn("Reconciler.pass")(function*(options: ReconcileOptions) {
      const before = DateTime.subtractDuration(yield* DateTime.now, options.grace)
      const intents = options.dryRun
        ? yield* repository.staleIntents({ before, limit: Number.MAX_SAFE_INTEGER, lock: false })
        : yield* repairIntents(before)
      const { audited, orphans } = yield* audit(options)
      const keysOf = (kind: Intent["kind"]) => intents.filter((i) => i.kind === kind).map((i) => i.record.objectKey)
      const report: ReconcileReport = {
        dryRun: options.dryRun,
        abandonedUploads: keysOf("upload"),
        unfinishedDeletes: keysOf("delete"),
        orphans,
        objectsAudited: audited
      }
      const found = report.abandonedUploads.length + report.unfinishedDeletes.length + report.orphans.length
      if (found > 0) {
        yield* Effect.logWarning(options.dryRun ? "reconciliation found problems" : "reconciliation repaired problems").pipe(
          Effect.annotateLogs({
            abandonedUploads: report.abandonedUploads.length,
            unfinishedDeletes: report.unfinishedDeletes.length,
            orphans: report.orphans.length
          })
        )
      }
      return report
    })

    return { pass, repairs: repository.repairs } as const
  })
}) {}

export const isConsistent = (report: ReconcileReport): boolean =>
  report.abandonedUploads.length + report.unfinishedDeletes.length + report.orphans.length === 0
