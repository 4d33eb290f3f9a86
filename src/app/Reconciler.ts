import { Chunk, DateTime, Duration, Effect, Option, Stream } from "effect"
import type { FileRecord, ObjectKey } from "../domain/FileRecord.js"
import { Repair } from "../domain/Repair.js"
import { FileRepository, type Intent } from "../ports/FileRepository.js"
import { ObjectStore } from "../ports/ObjectStore.js"
import { UploadSettings } from "./UploadSettings.js"

/** Intents claimed per statement. */
const INTENT_BATCH = 100
/** Intents repaired at once: their object-store calls overlap, their database calls are short. */
const REPAIR_CONCURRENCY = 4
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
  /** Intents whose bytes could not be removed in this pass (the store refused): left for the next. */
  readonly failed: ReadonlyArray<ObjectKey>
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
 * several replicas at once: intents are claimed (an upload's can no longer commit
 * once claimed, and a claimed intent is not claimed again before the grace period
 * passes anew), and each object key is claimed in the repair log, so no key is
 * logged twice; removing bytes twice is harmless, since keys are never reused.
 */
export class Reconciler extends Effect.Service<Reconciler>()("app/Reconciler", {
  effect: Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const { keyPrefix } = yield* UploadSettings

    const repairOf = (record: FileRecord, problem: keyof typeof actions, at: DateTime.Utc) =>
      new Repair({
        objectKey: record.objectKey,
        fileId: Option.some(record.id),
        problem,
        action: actions[problem],
        repairedAt: at
      })

    /**
     * A claimed intent: its bytes removed first (an unfinished multipart upload
     * aborted, the object deleted), with no database connection held, then its log
     * entry and its record, together. An intent whose bytes the store refuses to
     * remove now stays claimed, so it cannot hold up the others or the audit; it is
     * tried again once the grace period has passed anew.
     */
    const repairIntent = (intent: Intent) =>
      Effect.gen(function*() {
        const { objectKey } = intent.record
        const removed = yield* Effect.either(store.discard(objectKey, intent.multipartUploadId))
        if (removed._tag === "Left") {
          yield* Effect.logError("could not remove an intent's bytes; retried after the grace period", removed.left)
            .pipe(
              Effect.annotateLogs({ key: objectKey })
            )
          return false
        }
        const repair = repairOf(
          intent.record,
          intent.kind === "upload" ? "abandoned-upload" : "unfinished-delete",
          yield* DateTime.now
        )
        yield* repository.withTransaction(
          Effect.zipRight(repository.recordRepair(repair), repository.remove(intent.record.id))
        )
        return true
      })

    /**
     * Claims stale intents a batch at a time and repairs each; a claim stamps what it
     * takes, so the next claim moves on past it, and one that comes back short is
     * the last. Intents the store refused never stall the pass.
     */
    const repairIntents = (before: DateTime.Utc) =>
      Effect.iterate({ done: false, repaired: [] as ReadonlyArray<Intent>, failed: [] as ReadonlyArray<Intent> }, {
        while: (state) => !state.done,
        body: (state) =>
          Effect.gen(function*() {
            const claimed = yield* repository.claimStaleIntents({ before, limit: INTENT_BATCH })
            const outcomes = yield* Effect.forEach(claimed, repairIntent, { concurrency: REPAIR_CONCURRENCY })
            return {
              done: claimed.length < INTENT_BATCH,
              repaired: [...state.repaired, ...claimed.filter((_, i) => outcomes[i])],
              failed: [...state.failed, ...claimed.filter((_, i) => !outcomes[i])]
            }
          })
      })

    /**
     * An object no record names: logged in the repair log and deleted, in one
     * transaction. The log's unique key makes one replica log it; the delete
     * happens whoever logs it (a key repaired before, say as an abandoned upload
     * whose late PutObject landed afterwards, must still go). One that is gone by
     * now (a delete finished between the listing and the check) is no orphan.
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
        if (!claimed) {
          yield* Effect.logDebug("orphan already in the repair log; deleting it again").pipe(
            Effect.annotateLogs({ key })
          )
        }
        yield* store.delete(key)
        return true
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
              : (yield* Effect.forEach(unknown, (key) =>
                Effect.map(removeOrphan(key), (removed) => (removed ? [key] : []))))
                .flat()
            const next = { audited: state.audited + keys.length, orphans: [...state.orphans, ...removed] }
            if (options.onProgress !== undefined) {
              yield* options.onProgress(next.audited, next.orphans.length)
            }
            return [next, next] as const
          })),
        Stream.runLast,
        Effect.map(Option.getOrElse(() => ({ audited: 0, orphans: [] as ReadonlyArray<ObjectKey> })))
      )

    /** One full pass: stale intents, then the bucket audit. */
    const pass = Effect.fn("Reconciler.pass")(function*(options: ReconcileOptions) {
      // Fixed for the whole pass, and by the database's clock (see FileRepository.cutoff).
      const before = yield* repository.cutoff(Duration.decode(options.grace))
      const { failed, repaired: intents } = options.dryRun
        ? { repaired: yield* repository.staleIntents({ before, limit: Number.MAX_SAFE_INTEGER }), failed: [] }
        : yield* repairIntents(before)
      const { audited, orphans } = yield* audit(options)
      const keysOf = (kind: Intent["kind"]) => intents.filter((i) => i.kind === kind).map((i) => i.record.objectKey)
      const report: ReconcileReport = {
        dryRun: options.dryRun,
        abandonedUploads: keysOf("upload"),
        unfinishedDeletes: keysOf("delete"),
        orphans,
        failed: failed.map((intent) => intent.record.objectKey),
        objectsAudited: audited
      }
      const found = report.abandonedUploads.length + report.unfinishedDeletes.length + report.orphans.length
      if (found > 0) {
        yield* Effect.logWarning(options.dryRun ? "reconciliation found problems" : "reconciliation repaired problems")
          .pipe(
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
  report.abandonedUploads.length + report.unfinishedDeletes.length + report.orphans.length + report.failed.length === 0
