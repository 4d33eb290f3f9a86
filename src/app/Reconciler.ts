import { DateTime, Duration, Effect, Option, Stream } from "effect"
import type { FileRecord, ObjectKey } from "../domain/FileRecord.js"
import { Repair } from "../domain/Repair.js"
import { FileRepository, type Intent } from "../ports/FileRepository.js"
import { ObjectStore } from "../ports/ObjectStore.js"
import * as Metrics from "./Metrics.js"
import { orphanBatches } from "./Orphans.js"
import { describeUnbound, isBound, StoreBinding } from "./StoreBinding.js"
import { UploadSettings } from "./UploadSettings.js"

/** Intents claimed per statement. */
const INTENT_BATCH = 100
/** Intents repaired at once: their object-store calls overlap, their database calls are short. */
const REPAIR_CONCURRENCY = 4

export interface ReconcileOptions {
  /** Report what is wrong, change nothing. */
  readonly dryRun: boolean
  /** How long an intent may stay unfinished before it counts as abandoned. */
  readonly grace: Duration.DurationInput
  /** More orphans than this and the audit deletes none of them (RECONCILE_MAX_ORPHANS). */
  readonly maxOrphans: number
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
  /** Idempotency keys older than IDEMPOTENCY_TTL_SECONDS, forgotten (none in a dry run). */
  readonly expiredIdempotencyKeys: number
  /** Whether the bucket audit ran, or why it did not touch anything. */
  readonly audit:
    | { readonly _tag: "Done" }
    /** The store and the database are not bound to each other (see StoreBinding). */
    | { readonly _tag: "Unbound"; readonly reason: string }
    /** More orphans than `max`: none deleted; `first` are some of them. */
    | {
      readonly _tag: "TooManyOrphans"
      readonly found: number
      readonly max: number
      readonly first: ReadonlyArray<ObjectKey>
    }
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
  dependencies: [StoreBinding.Default],
  effect: Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const { idempotencyTtl, keyPrefix } = yield* UploadSettings
    const binding = yield* StoreBinding

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
     * An object no record names, deleted and then logged (a delete that fails logs
     * nothing; the next pass finds it again). The log's unique key keeps one entry
     * per key, however many replicas delete it (deleting twice is harmless: keys are
     * never reused); one that was repaired before (an abandoned upload whose late
     * PutObject landed afterwards) still goes. One gone by now (a delete finished
     * between the listing and the check) is no orphan. No database connection is held
     * across the store's calls.
     */
    const removeOrphan = (key: ObjectKey) =>
      Effect.gen(function*() {
        if (Option.isNone(yield* store.head(key))) return false
        yield* store.delete(key)
        yield* repository.recordRepair(
          new Repair({
            objectKey: key,
            fileId: Option.none(),
            problem: "orphan-object",
            action: actions["orphan-object"],
            repairedAt: yield* DateTime.now
          })
        )
        return true
      })

    /** How many objects were audited, how many are orphans, and the first `keep` of those. */
    const findOrphans = (keep: number, onProgress: ReconcileOptions["onProgress"]) =>
      orphanBatches(store, repository, keyPrefix, binding.markerKey).pipe(
        Stream.runFoldEffect({ audited: 0, count: 0, orphans: [] as ReadonlyArray<ObjectKey> }, (state, batch) => {
          const next = {
            audited: state.audited + batch.listed,
            count: state.count + batch.orphans.length,
            orphans: [...state.orphans, ...batch.orphans.slice(0, Math.max(0, keep - state.orphans.length))]
          }
          return Effect.as(onProgress === undefined ? Effect.void : onProgress(next.audited, next.count), next)
        })
      )

    /**
     * The bucket audit, refused outright when the store and the database are not bound
     * to each other (their objects are no orphans of this database) and, past
     * `maxOrphans`, done without deleting anything: many orphans mean a
     * misconfiguration, never garbage.
     */
    const audit = (options: ReconcileOptions) =>
      Effect.gen(function*() {
        const bound = yield* binding.check
        if (!isBound(bound)) {
          return { _tag: "Unbound", binding: bound, audited: 0, orphans: [] } as const
        }
        const found = yield* findOrphans(options.maxOrphans + 1, options.onProgress)
        if (found.count > options.maxOrphans) {
          return { _tag: "TooManyOrphans", ...found } as const
        }
        const orphans = options.dryRun
          ? found.orphans
          : (yield* Effect.forEach(found.orphans, (key) => Effect.map(removeOrphan(key), (gone) => gone ? [key] : [])))
            .flat()
        return { _tag: "Done", audited: found.audited, orphans } as const
      })

    /** One full pass: stale intents, then the bucket audit. */
    const pass = Effect.fn("Reconciler.pass")(function*(options: ReconcileOptions) {
      // Fixed for the whole pass, and by the database's clock (see FileRepository.cutoff).
      const before = yield* repository.cutoff(Duration.decode(options.grace))
      const { failed, repaired: intents } = options.dryRun
        ? { repaired: yield* repository.staleIntents({ before, limit: Number.MAX_SAFE_INTEGER }), failed: [] }
        : yield* repairIntents(before)
      const audited = yield* audit(options)
      const expiredIdempotencyKeys = options.dryRun ? 0 : yield* repository.purgeIdempotencyKeys(idempotencyTtl)
      if (audited._tag === "Unbound") {
        yield* Effect.logError(`orphan audit refused: ${describeUnbound(audited.binding, binding.markerKey)}`)
      }
      if (audited._tag === "TooManyOrphans") {
        yield* Effect.logError(
          `orphan audit found ${audited.count} objects no record names, more than RECONCILE_MAX_ORPHANS ` +
            `(${options.maxOrphans}): deleted none; many orphans mean a misconfiguration (a wrong database, ` +
            "bucket or prefix), never garbage"
        )
      }
      const keysOf = (kind: Intent["kind"]) => intents.filter((i) => i.kind === kind).map((i) => i.record.objectKey)
      const report: ReconcileReport = {
        dryRun: options.dryRun,
        abandonedUploads: keysOf("upload"),
        unfinishedDeletes: keysOf("delete"),
        orphans: audited._tag === "Done" ? audited.orphans : [],
        failed: failed.map((intent) => intent.record.objectKey),
        objectsAudited: audited.audited,
        expiredIdempotencyKeys,
        audit: audited._tag === "Unbound"
          ? { _tag: "Unbound", reason: describeUnbound(audited.binding, binding.markerKey) }
          : audited._tag === "TooManyOrphans"
          ? { _tag: "TooManyOrphans", found: audited.count, max: options.maxOrphans, first: audited.orphans }
          : { _tag: "Done" }
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
      yield* Metrics.recordPass(report)
      return report
    })

    return { pass, repairs: repository.repairs } as const
  })
}) {}

export const isConsistent = (report: ReconcileReport): boolean =>
  report.audit._tag === "Done" &&
  report.abandonedUploads.length + report.unfinishedDeletes.length + report.orphans.length + report.failed.length === 0
