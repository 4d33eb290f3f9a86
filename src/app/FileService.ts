import { Cause, DateTime, Effect, Exit, Option, Ref, Schedule, Schema } from "effect"
import { type CheckedContent, ContentCheck } from "../domain/ContentCheck.js"
import type { FileCursor } from "../domain/FileCursor.js"
import { checkedRecord, FileId, type FileRecord, Sha256Hex } from "../domain/FileRecord.js"
import { sanitizeMetadata } from "../domain/ObjectMetadata.js"
import { objectKeyFor } from "../domain/ObjectKey.js"
import type { DatabaseUnavailable, ObjectStoreUnavailable } from "../domain/StorageErrors.js"
import { CleanupFailed, FileNotFound, ObjectMissing, UploadExpired } from "../domain/StorageErrors.js"
import type { AcceptedDeclaration, DeclaredFile, ValidatedUpload } from "../domain/UploadPolicy.js"
import { validateDeclaration } from "../domain/UploadPolicy.js"
import { FileRepository } from "../ports/FileRepository.js"
import { type ByteRange, concatBytes, type MultipartUpload, ObjectStore } from "../ports/ObjectStore.js"
import { logFailure } from "./FailureLog.js"
import { type ContentReader, cutParts, fromBytes } from "./ContentReader.js"
import { UploadSettings } from "./UploadSettings.js"

/** The sha256 column of an intent whose bytes are still arriving. */
const UNKNOWN_SHA256 = Sha256Hex.make("0".repeat(64))

/** How often a failed compensating delete is retried before it is reported as CleanupFailed. */
const compensationRetry = Schedule.exponential("50 millis").pipe(Schedule.intersect(Schedule.recurs(3)))

const decodeFileId = Schema.decodeUnknownOption(FileId)

/**
 * The create-file workflow and the reads around it, over the two ports only.
 * Which store and which database sit behind them is decided by Layers.
 */
export class FileService extends Effect.Service<FileService>()("app/FileService", {
  effect: Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const { keyPrefix, partSize, policy } = yield* UploadSettings

    /**
     * Undoes an upload that failed in a way the process saw: an unfinished
     * multipart upload is aborted, the object deleted, then the intent dropped.
     * If the bytes cannot be removed the intent stays, so the reconciler removes
     * them later; the client hears CleanupFailed either way.
     */
    const compensate = (
      record: FileRecord,
      multipart: Option.Option<MultipartUpload>,
      original: unknown
    ): Effect.Effect<void, CleanupFailed> =>
      Option.match(multipart, { onNone: () => Effect.void, onSome: store.abortMultipart }).pipe(
        Effect.zipRight(store.delete(record.objectKey)),
        Effect.retry(compensationRetry),
        Effect.tapError((cause) =>
          Effect.logError("compensation failed; the reconciler will remove the object", cause).pipe(
            Effect.annotateLogs({ key: record.objectKey })
          )
        ),
        Effect.mapError((cause) => new CleanupFailed({ key: record.objectKey, original, cause })),
        Effect.zipRight(
          repository.remove(record.id).pipe(
            Effect.retry(compensationRetry),
            // The bytes are gone; a leftover intent is invisible and the reconciler drops it.
            Effect.catchAll((cause) => Effect.logWarning("could not drop the upload's intent", cause))
          )
        )
      )

    /** A COMMIT that was sent but not confirmed: whether the file exists is for the reconciler to decide. */
    const outcomeUnknown = (exit: Exit.Exit<unknown, unknown>): boolean =>
      Exit.isFailure(exit) &&
      Option.exists(Cause.failureOption(exit.cause), (error) =>
        typeof error === "object" && error !== null && "_tag" in error && error._tag === "CommitOutcomeUnknown")

    const metadataOf = (record: FileRecord) =>
      sanitizeMetadata({ "file-id": record.id, "original-name": record.name })

    /**
     * The intent protocol (README, "Consistency"). 1: the record is inserted as
     * `pending`, in its own transaction, so a crash after this point leaves a trace
     * the reconciler finds. 2: `write` puts the bytes inside a scope whose
     * finalizer compensates if anything fails or the fiber is interrupted; it is
     * registered before the first byte is written, since a write that fails
     * midway may have left bytes (deleting a missing key is harmless). 3: the
     * record becomes `committed`, with the final size and sha256, in a
     * transaction. An unconfirmed COMMIT is not compensated: the object may belong
     * to a committed file.
     */
    const persist = <E>(
      record: FileRecord,
      write: (multipart: Ref.Ref<Option.Option<MultipartUpload>>) => Effect.Effect<CheckedContent, E>
    ) =>
      Effect.gen(function*() {
        yield* repository.insertPending(record)
        const multipart = yield* Ref.make(Option.none<MultipartUpload>())
        const cleanupFailure = yield* Ref.make<Option.Option<CleanupFailed>>(Option.none())
        // Set the moment the commit is confirmed: an interruption that arrives while
        // it runs is delivered when it ends, and must not undo a committed file.
        const committed = yield* Ref.make(false)
        const release = (exit: Exit.Exit<unknown, unknown>) =>
          Effect.flatMap(Ref.get(committed), (isCommitted) =>
            Exit.isSuccess(exit) || isCommitted || outcomeUnknown(exit)
              ? Effect.void
              : Effect.flatMap(Ref.get(multipart), (upload) =>
                compensate(record, upload, Exit.isFailure(exit) ? exit.cause : undefined).pipe(
                  Effect.catchAll((failure) => Ref.set(cleanupFailure, Option.some(failure)))
                )))
        return yield* Effect.addFinalizer(release).pipe(
          Effect.zipRight(write(multipart)),
          // The commit's outcome must be known before the scope decides whether to
          // compensate, so it is not interrupted midway.
          Effect.flatMap((content) =>
            Effect.uninterruptible(
              repository.withTransaction(repository.commitPending(record.id, content)).pipe(
                Effect.tap((done) => Ref.set(committed, done))
              )
            ).pipe(
              Effect.filterOrFail((done) => done, () => new UploadExpired({ id: record.id })),
              Effect.as(checkedRecord({ ...record, size: content.size, sha256: content.sha256 }))
            )
          ),
          Effect.scoped,
          Effect.catchAll((error) =>
            Effect.flatMap(
              Ref.get(cleanupFailure),
              (failure): Effect.Effect<never, typeof error | CleanupFailed> =>
                Effect.fail(Option.getOrElse(failure, () => error))
            )
          )
        )
      })

    const newRecord = (accepted: AcceptedDeclaration, content: CheckedContent) =>
      Effect.map(DateTime.now, (createdAt) => {
        const id = FileId.make(crypto.randomUUID(), true)
        return checkedRecord({
          id,
          name: accepted.name,
          size: content.size,
          contentType: accepted.contentType,
          sha256: content.sha256,
          objectKey: objectKeyFor(keyPrefix, id),
          createdAt
        })
      })

    /** Stores a file held in memory that passed the policy: one PutObject. */
    const store_ = Effect.fn("FileService.store")(function*(upload: ValidatedUpload) {
      const record = yield* newRecord(upload, upload)
      return yield* persist(record, () =>
        Effect.as(
          store.put(record.objectKey, upload.bytes, { contentType: record.contentType, metadata: metadataOf(record) }),
          { size: upload.size, sha256: upload.sha256 }
        ))
    })

    /**
     * Validates and stores a file as its bytes arrive, in constant memory: the
     * declaration is checked before the first byte; the content (UTF-8, size,
     * sha256) in one pass as it streams. A file that ends within the first part
     * (`partSize`) is checked whole before anything is stored and written with one
     * PutObject; a larger one goes to a multipart upload, part by part, whose id
     * is recorded with the intent before the first part, so a crash cannot leak
     * it. `beforeCommit` runs after the last byte, before the file is committed
     * (the HTTP layer checks there that the form holds no other file).
     */
    const upload = Effect.fn("FileService.upload")(function*<E, E2 = never>(
      declared: DeclaredFile,
      content: ContentReader<E>,
      beforeCommit: Effect.Effect<void, E2> = Effect.void
    ) {
      const accepted = yield* validateDeclaration(policy, declared)
      const check = new ContentCheck(policy)
      // The first part's worth is read and checked before anything is stored.
      const first: Array<Uint8Array> = []
      for (let size = 0; size < partSize;) {
        const batch = yield* content.read(partSize - size)
        for (const chunk of batch.chunks) {
          yield* check.update(chunk)
          first.push(chunk)
          size += chunk.byteLength
        }
        if (batch.ended) {
          const checked = yield* check.finish()
          yield* beforeCommit
          return yield* store_({ ...accepted, ...checked, bytes: concatBytes(first) })
        }
      }
      // Size and sha256 are known at the end; the intent holds placeholders until the commit.
      const record = yield* newRecord(accepted, { size: 0, sha256: UNKNOWN_SHA256 })
      return yield* persist(record, (multipart) =>
        Effect.gen(function*() {
          const upload = yield* store.createMultipart(record.objectKey, {
            contentType: record.contentType,
            metadata: metadataOf(record)
          })
          yield* Ref.set(multipart, Option.some(upload))
          if (!(yield* repository.recordMultipart(record.id, upload.uploadId))) {
            return yield* new UploadExpired({ id: record.id })
          }
          const nextPart = cutParts(content, partSize, (chunk) => check.update(chunk), first)
          let parts = 0
          for (let last = false; !last;) {
            const part = yield* nextPart
            last = part.last
            // The store is done with the buffer when uploadPart returns (ObjectStore's contract).
            if (part.bytes.byteLength > 0) yield* store.uploadPart(upload, ++parts, part.bytes)
          }
          const checked = yield* check.finish()
          yield* beforeCommit
          yield* store.completeMultipart(upload, parts)
          yield* Ref.set(multipart, Option.none())
          return checked
        }))
    }, logFailure("upload"))

    const findRecord = (id: string) =>
      Option.match(decodeFileId(id), {
        onNone: () => Effect.fail(new FileNotFound({ id })),
        onSome: (fileId) =>
          Effect.flatMap(repository.find(fileId), Option.match({
            onNone: () => Effect.fail(new FileNotFound({ id })),
            onSome: Effect.succeed
          }))
      })

    const get = Effect.fn("FileService.get")(function*(id: string) {
      return yield* findRecord(id)
    }, logFailure("get"))

    const list = Effect.fn("FileService.list")(function*(options: {
      readonly limit: number
      readonly after: Option.Option<FileCursor>
    }) {
      return yield* repository.list(options)
    }, logFailure("list"))

    /** A file's bytes, or a range of them. An object missing under a live record is reported, not hidden. */
    const content = Effect.fn("FileService.content")(function*(record: FileRecord, range?: ByteRange) {
      const object = yield* store.get(record.objectKey, range).pipe(
        Effect.catchTag("ObjectNotFound", () =>
          // Deleted between the two reads? Then it is simply not found.
          Effect.flatMap(findRecord(record.id), () => Effect.fail(new ObjectMissing({ key: record.objectKey }))))
      )
      return object.body
    }, logFailure("content"))

    /**
     * A delete is decided when its tombstone commits: from then on no reader sees
     * the file. Removing the object and then the record is finished here if it can
     * be, and by the reconciler otherwise; bytes never go before the tombstone.
     */
    const remove = Effect.fn("FileService.remove")(function*(id: string) {
      const fileId = yield* Option.match(decodeFileId(id), {
        onNone: () => Effect.fail(new FileNotFound({ id })),
        onSome: Effect.succeed
      })
      const record = yield* repository.markDeleting(fileId).pipe(
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
    }, logFailure("remove"))

    /** Both stores reachable; otherwise every failure, not just the first. */
    const ready = Effect.all([repository.ping, store.ping], { concurrency: 2, mode: "either" }).pipe(
      Effect.flatMap((results) => {
        const failures: Array<DatabaseUnavailable | ObjectStoreUnavailable> = []
        for (const result of results) if (result._tag === "Left") failures.push(result.left)
        return failures.length === 0 ? Effect.void : Effect.fail(failures)
      })
    )

    /** A file held in memory (tests, tools): the same checks and workflow. */
    const uploadBytes = (declared: DeclaredFile, bytes: Uint8Array) => upload(declared, fromBytes(bytes))

    return { policy, upload, uploadBytes, get, list, content, remove, ready } as const
  })
}) {}
