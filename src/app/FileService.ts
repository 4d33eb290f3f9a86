import { Cause, Effect, Exit, Metric, Option, Schedule, Stream } from "effect"
import { createHash } from "node:crypto"
import type { FileCursor } from "../domain/FileCursor.js"
import { checkedRecord, type FileId, type FileRecord, type Owner } from "../domain/FileRecord.js"
import type { IdempotencyKey } from "../domain/IdempotencyKey.js"
import { contentMetadata, fileMetadata } from "../domain/ObjectMetadata.js"
import {
  CleanupFailed,
  CommitOutcomeUnknown,
  DatabaseUnavailable,
  FileNotFound,
  ObjectCorrupt,
  ObjectMissing,
  ObjectStoreUnavailable,
  UploadExpired
} from "../domain/StorageErrors.js"
import { spanWhenTracing } from "../domain/Tracing.js"
import {
  FileTooLarge,
  FileTooSmall,
  IdempotencyKeyInFlight,
  IdempotencyKeyReused,
  NotUtf8,
  QuotaExceeded
} from "../domain/UploadErrors.js"
import type { AcceptedDeclaration, DeclaredFile } from "../domain/UploadPolicy.js"
import { validateDeclaration } from "../domain/UploadPolicy.js"
import type { ContentReader } from "../ports/ContentReader.js"
import { FileRepository, type FinalContent, type KeyedInsert, type Quota } from "../ports/FileRepository.js"
import { type ByteRange, ObjectStore } from "../ports/ObjectStore.js"
import { checkContent, type ContentRejected } from "./CheckedContent.js"
import * as Metrics from "./Metrics.js"
import { newPendingRecord } from "./PendingRecord.js"
import { UploadSettings } from "./UploadSettings.js"

/** How often a failed compensation step is retried before it is given up to the reconciler. */
const compensationRetry = Schedule.exponential("50 millis").pipe(Schedule.intersect(Schedule.recurs(3)))

/**
 * Failures of the stores themselves, as the ports report them: what makes a failed
 * cleanup the client's business too (CleanupFailed, 503). Anything else (the
 * content broke a rule, the form was malformed) is the client's own failure, and
 * the client hears it whatever became of the cleanup.
 */
const quotaFields = (quota: Quota) => ({
  maxFiles: Option.getOrUndefined(quota.maxFiles),
  maxBytes: Option.getOrUndefined(quota.maxBytes)
})

const isStoreFailure = (cause: Cause.Cause<unknown>): boolean =>
  Option.exists(
    Cause.failureOption(cause),
    (error) =>
      error instanceof ObjectStoreUnavailable || error instanceof DatabaseUnavailable ||
      error instanceof CommitOutcomeUnknown || error instanceof UploadExpired
  )

const isContentRejected = (error: unknown): error is ContentRejected =>
  error instanceof NotUtf8 || error instanceof FileTooLarge || error instanceof FileTooSmall

/** Reads content to its end, keeping none of it. */
const drain = <E>(content: ContentReader<E>): Effect.Effect<void, E> =>
  Effect.flatMap(content.read(64 * 1024), (batch) => batch.ended ? Effect.void : drain(content))

const isCommitOutcomeUnknown = (cause: Cause.Cause<unknown>): boolean =>
  Option.exists(
    Cause.failureOption(cause),
    (error) => typeof error === "object" && error !== null && "_tag" in error && error._tag === "CommitOutcomeUnknown"
  )

/**
 * The create-file workflow and the reads around it, over the ports only. Which
 * store, which database and which source of bytes sit behind them is decided by
 * Layers and by the caller.
 */
export class FileService extends Effect.Service<FileService>()("app/FileService", {
  effect: Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const { idempotencyTtl, keyPrefix, policy, quota } = yield* UploadSettings

    const newRecord = newPendingRecord(keyPrefix)

    /**
     * Undoes an upload that failed in a way this process saw: whatever the write
     * left is discarded, then the intent dropped, and the upload fails as it did.
     * Bytes that cannot be removed keep their intent, so the reconciler removes them
     * later; the failed cleanup is logged, and the client hears CleanupFailed if the
     * stores failed it anyway, or its own error (a file that broke a rule) otherwise:
     * retrying that one could never succeed.
     */
    const compensate = <E>(record: FileRecord, failure: Cause.Cause<E>) =>
      store.discard(record.objectKey, Option.none()).pipe(
        Effect.retry(compensationRetry),
        Effect.matchCauseEffect({
          onFailure: (cause) =>
            Effect.logError("compensation failed; the reconciler will remove the object", cause).pipe(
              Effect.zipLeft(Metric.increment(Metric.tagged(Metrics.compensations, "result", "failed"))),
              Effect.annotateLogs({ key: record.objectKey }),
              Effect.zipRight<never, E | CleanupFailed, never>(
                isStoreFailure(failure)
                  ? Effect.fail(new CleanupFailed({ key: record.objectKey, original: failure, cause }))
                  : Effect.failCause(failure)
              )
            ),
          onSuccess: () =>
            Metric.increment(Metric.tagged(Metrics.compensations, "result", "done")).pipe(
              Effect.zipRight(repository.remove(record.id)),
              Effect.retry(compensationRetry),
              // The bytes are gone; a leftover intent is invisible and the reconciler drops it.
              Effect.catchAll((cause) => Effect.logWarning("could not drop the upload's intent", cause)),
              Effect.zipRight(Effect.failCause(failure))
            )
        })
      )

    /**
     * The intent protocol (README, "Consistency"): the record is inserted as
     * `pending`, so a crash from here on leaves a trace the reconciler finds; the
     * bytes are written; the record is committed, with their size and sha256, in a
     * transaction. If the write fails, or the fiber is interrupted while it runs, or
     * the commit fails, the upload is compensated. The insert and the commit are not
     * interrupted midway, since what to undo depends on their outcome; an
     * unconfirmed COMMIT is not compensated: the object may belong to a committed file.
     */
    const persist = <E, E2, E3>(
      record: FileRecord,
      insert: Effect.Effect<KeyedInsert, E2>,
      write: Effect.Effect<FinalContent, E>,
      replay: (found: Exclude<KeyedInsert, { readonly _tag: "Inserted" }>) => Effect.Effect<FileRecord, E3>
    ) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const inserted = yield* insert
          // An Idempotency-Key that made a file, or is making one: nothing inserted, nothing to undo.
          if (inserted._tag !== "Inserted") return { record: yield* restore(replay(inserted)), replayed: true }
          const written = yield* Effect.exit(restore(write))
          if (Exit.isFailure(written)) return yield* compensate(record, written.cause)
          const content = written.value
          const committed = yield* Effect.exit(
            repository.withTransaction(repository.commitPending(record.id, content, quota))
          )
          if (Exit.isSuccess(committed) && committed.value === "Committed") {
            return { record: checkedRecord({ ...record, ...content }), replayed: false }
          }
          if (Exit.isFailure(committed) && isCommitOutcomeUnknown(committed.cause)) {
            return yield* Effect.failCause(committed.cause)
          }
          const failure: Cause.Cause<DatabaseUnavailable | CommitOutcomeUnknown | UploadExpired | QuotaExceeded> =
            Exit.isFailure(committed)
              ? committed.cause
              : committed.value === "OverQuota"
              ? Cause.fail(new QuotaExceeded(quotaFields(quota)))
              // The intent is gone: the reconciler reclaimed it, since the upload outlived the grace period.
              : Cause.fail(new UploadExpired({ id: record.id }))
          return yield* compensate(record, failure)
        })
      )

    /** The multipart upload the object is written with, recorded with the intent before its first part. */
    const recordUpload = (record: FileRecord) => (uploadId: string) =>
      repository.recordMultipart(record.id, uploadId).pipe(
        Effect.filterOrFail((recorded) => recorded, () => new UploadExpired({ id: record.id })),
        Effect.asVoid
      )

    /**
     * A retry under an Idempotency-Key that made `original`: its bytes are read and
     * checked (nothing is written) to tell a retry, the same bytes under the same
     * name, from another upload under a used key. Bytes the policy refuses cannot be
     * the original's either.
     */
    const replayOf = <E>(
      key: IdempotencyKey,
      accepted: AcceptedDeclaration,
      checked: ReturnType<typeof checkContent<E>>
    ) =>
    (found: Exclude<KeyedInsert, { readonly _tag: "Inserted" }>) =>
      Effect.gen(function*() {
        if (found._tag === "InFlight") return yield* new IdempotencyKeyInFlight({ key })
        const original = found.record
        const reused = new IdempotencyKeyReused({ key })
        yield* drain(checked.reader).pipe(
          Effect.catchIf(isContentRejected, () => Effect.fail(reused))
        )
        const content = yield* checked.result
        if (content.sha256 !== original.sha256 || accepted.name !== original.name) return yield* reused
        return original
      })

    /**
     * Validates and stores a file as its bytes arrive, in constant memory: the
     * declaration (name, content type, extension) before anything else; the content
     * (UTF-8, size, sha256) as it is read, and whole before the store may make it
     * visible. With an Idempotency-Key, a retry of an upload that made a file gets
     * that file (`replayed`), and no second one is made.
     */
    const store_ = <E>(
      owner: Owner,
      declared: DeclaredFile,
      content: ContentReader<E>,
      idempotencyKey: Option.Option<IdempotencyKey>
    ) =>
      Effect.gen(function*() {
        const accepted = yield* validateDeclaration(policy, declared)
        const record = yield* newRecord(owner, accepted)
        const checked = checkContent(policy, content)
        const write = store.write(record.objectKey, checked.reader, {
          contentType: record.contentType,
          metadata: fileMetadata(record),
          onUploadStarted: recordUpload(record),
          ended: Effect.map(
            checked.result,
            (content) => ({ sha256: content.sha256, metadata: contentMetadata(content) })
          )
        }).pipe(Effect.zipRight(checked.result))
        return yield* Option.match(idempotencyKey, {
          onNone: () =>
            persist(
              record,
              Effect.as(repository.insertPending(record), { _tag: "Inserted" } as const),
              write,
              () => Effect.dieMessage("no key, no replay")
            ),
          onSome: (key) =>
            persist(
              record,
              repository.insertPendingWithKey(record, key, idempotencyTtl),
              write,
              replayOf(key, accepted, checked)
            )
        })
      })

    // The upload paths run on every request: their spans are made only when recorded
    // (spanWhenTracing), unlike Effect.fn's, which cost CPU on every call.
    const countStored = (stored: { readonly record: FileRecord; readonly replayed: boolean }) =>
      stored.replayed ? Effect.void : Metric.incrementBy(Metrics.storedBytes, stored.record.size)

    const upload = <E>(owner: Owner, declared: DeclaredFile, content: ContentReader<E>) =>
      store_(owner, declared, content, Option.none()).pipe(
        Effect.tap(countStored),
        Effect.map((stored) => stored.record),
        spanWhenTracing("FileService.upload")
      )

    /** As `upload`, with the client's Idempotency-Key; `replayed` when the key had made the file already. */
    const uploadOnce = <E>(
      owner: Owner,
      declared: DeclaredFile,
      content: ContentReader<E>,
      key: Option.Option<IdempotencyKey>
    ) => store_(owner, declared, content, key).pipe(Effect.tap(countStored), spanWhenTracing("FileService.uploadOnce"))

    const findRecord = (owner: Owner, id: FileId) =>
      Effect.flatMap(
        repository.find(owner, id),
        Option.match({
          onNone: () => Effect.fail(new FileNotFound({ id })),
          onSome: Effect.succeed
        })
      )

    const get = Effect.fn("FileService.get")(function*(owner: Owner, id: FileId) {
      return yield* findRecord(owner, id)
    })

    const list = Effect.fn("FileService.list")(function*(owner: Owner, options: {
      readonly limit: number
      readonly after: Option.Option<FileCursor>
    }) {
      return yield* repository.list(owner, options)
    })

    /**
     * A file's bytes, or a range of them, checked against its record: the object's
     * size before anything is sent, and a whole file's bytes as they stream, hashed;
     * the last chunk is held back until they match, so a client never gets the whole
     * of a body that is wrong (the stream fails instead, and the response is cut). An
     * object missing under a live record is reported, not hidden.
     */
    const content = Effect.fn("FileService.content")(function*(record: FileRecord, range?: ByteRange) {
      const object = yield* store.get(record.objectKey, range).pipe(
        Effect.catchTag("ObjectNotFound", () =>
          // Deleted between the two reads? Then it is simply not found.
          Effect.flatMap(findRecord(record.owner, record.id), () =>
            Effect.fail(new ObjectMissing({ key: record.objectKey }))))
      )
      if (object.size !== record.size) {
        return yield* corrupt(record, `${record.size} bytes`, `${object.size}`)
      }
      const expected = range === undefined ? record.size : Math.min(range.end, record.size - 1) - range.start + 1
      return verified(record, object.body, expected, range === undefined)
    })

    const corrupt = (record: FileRecord, expected: string, found: string) =>
      Effect.fail(new ObjectCorrupt({ key: record.objectKey, expected, found })).pipe(
        Effect.tapError((error) =>
          Effect.logError("a stored object is not its file", error).pipe(Effect.annotateLogs({ key: record.objectKey }))
        )
      )

    /** `body`, all but its last chunk passed on as they come; the last only once the whole is checked. */
    const verified = <E>(record: FileRecord, body: Stream.Stream<Uint8Array, E>, size: number, whole: boolean) =>
      Stream.suspend(() => {
        const hash = createHash("sha256")
        let seen = 0
        let held: Uint8Array | undefined
        const last = Effect.suspend(() => {
          if (seen !== size) return corrupt(record, `${size} bytes`, `${seen}`)
          const sha256 = whole ? hash.digest("hex") : record.sha256
          if (sha256 !== record.sha256) return corrupt(record, `sha256 ${record.sha256}`, sha256)
          return Effect.succeed(held === undefined ? [] : [held])
        })
        return body.pipe(
          Stream.mapConcat((chunk) => {
            if (whole) hash.update(chunk)
            seen += chunk.byteLength
            const out = held === undefined ? [] : [held]
            held = chunk
            return out
          }),
          Stream.concat(Stream.flatMap(Stream.fromEffect(last), Stream.fromIterable))
        )
      })

    /**
     * A delete is decided when its tombstone commits: from then on no reader sees
     * the file. Removing the object and then the record is finished here if it can
     * be, and by the reconciler otherwise; bytes never go before the tombstone.
     */
    const remove = Effect.fn("FileService.remove")(function*(owner: Owner, id: FileId) {
      const record = yield* repository.markDeleting(owner, id).pipe(
        Effect.flatMap(Option.match({ onNone: () => Effect.fail(new FileNotFound({ id })), onSome: Effect.succeed }))
      )
      yield* store.delete(record.objectKey).pipe(
        Effect.zipRight(repository.remove(record.id)),
        Effect.catchAll((cause) =>
          Effect.logWarning("delete decided; the reconciler will finish it", cause).pipe(
            Effect.annotateLogs({ key: record.objectKey })
          )
        ),
        Effect.uninterruptible
      )
    })

    /** Both stores reachable; otherwise every failure, not just the first. */
    const ready = Effect.all([repository.ping, store.ping], { concurrency: 2, mode: "either" }).pipe(
      Effect.flatMap((results) => {
        const failures: Array<DatabaseUnavailable | ObjectStoreUnavailable> = []
        for (const result of results) if (result._tag === "Left") failures.push(result.left)
        return failures.length === 0 ? Effect.void : Effect.fail(failures)
      })
    )

    return { policy, upload, uploadOnce, get, list, content, remove, ready } as const
  })
}) {}
