import { Cause, DateTime, Effect, Exit, Option, Ref, Schedule, Schema, Stream } from "effect"
import { sha256Hex } from "../domain/ContentDigest.js"
import type { FileCursor } from "../domain/FileCursor.js"
import { FileId, FileRecord } from "../domain/FileRecord.js"
import { sanitizeMetadata } from "../domain/ObjectMetadata.js"
import { objectKeyFor } from "../domain/ObjectKey.js"
import type { DatabaseUnavailable, ObjectStoreUnavailable } from "../domain/StorageErrors.js"
import { CleanupFailed, FileNotFound, ObjectMissing, UploadExpired } from "../domain/StorageErrors.js"
import { FileTooLarge } from "../domain/UploadErrors.js"
import type { DeclaredFile, ValidatedUpload } from "../domain/UploadPolicy.js"
import { validateContent, validateDeclaration } from "../domain/UploadPolicy.js"
import { FileRepository } from "../ports/FileRepository.js"
import { concatBytes, ObjectStore } from "../ports/ObjectStore.js"
import { logFailure } from "./FailureLog.js"
import { UploadSettings } from "./UploadSettings.js"

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
    const { keyPrefix, policy } = yield* UploadSettings

    /**
     * Checks the declaration before reading a byte, then reads at most
     * `maxBytes` (refusing as soon as the content grows past it), then checks
     * size and UTF-8.
     */
    const receive = Effect.fn("FileService.receive")(function*<E>(
      declared: DeclaredFile,
      content: Stream.Stream<Uint8Array, E>
    ) {
      const accepted = yield* validateDeclaration(policy, declared)
      const chunks: Array<Uint8Array> = []
      let size = 0
      yield* Stream.runForEach(content, (chunk) => {
        size += chunk.byteLength
        if (size > policy.maxBytes) return Effect.fail(new FileTooLarge({ maxBytes: policy.maxBytes }))
        chunks.push(chunk)
        return Effect.void
      })
      const bytes = yield* validateContent(policy, concatBytes(chunks))
      return { ...accepted, bytes } satisfies ValidatedUpload
    }, logFailure("receive", () => true))

    /**
     * Undoes an upload that failed in a way the process saw: the object first,
     * then the intent. If the object cannot be deleted the intent stays, so the
     * reconciler deletes it later; the client hears CleanupFailed either way.
     */
    const compensate = (record: FileRecord, original: unknown): Effect.Effect<void, CleanupFailed> =>
      store.delete(record.objectKey).pipe(
        Effect.retry(compensationRetry),
        Effect.tapError((cause) =>
          Effect.logError("compensating delete failed; the reconciler will remove the object", cause).pipe(
            Effect.annotateLogs({ key: record.objectKey })
          )
        ),
        Effect.mapError((cause) => new CleanupFailed({ key: record.objectKey, original, cause })),
        Effect.zipRight(
          repository.remove(record.id).pipe(
            Effect.retry(compensationRetry),
            // The object is gone; a leftover intent is invisible and the reconciler drops it.
            Effect.catchAll((cause) => Effect.logWarning("could not drop the upload's intent", cause))
          )
        )
      )

    /** A COMMIT that was sent but not confirmed: whether the file exists is for the reconciler to decide. */
    const outcomeUnknown = (exit: Exit.Exit<unknown, unknown>): boolean =>
      Exit.isFailure(exit) &&
      Option.exists(Cause.failureOption(exit.cause), (error) =>
        typeof error === "object" && error !== null && "_tag" in error && error._tag === "CommitOutcomeUnknown")

    /**
     * The intent protocol (README, "Consistency"). 1: the record is inserted as
     * `pending`, in its own transaction, so a crash after this point leaves a trace
     * the reconciler finds. 2: the object is put inside a scope whose finalizer
     * compensates if anything fails or the fiber is interrupted. 3: the
     * record becomes `committed` in a transaction. An unconfirmed COMMIT is not
     * compensated: the object may belong to a committed file.
     */
    const store_ = Effect.fn("FileService.store")(function*(upload: ValidatedUpload) {
      const id = FileId.make(crypto.randomUUID())
      const record = new FileRecord({
        id,
        name: upload.name,
        size: upload.bytes.byteLength,
        contentType: upload.contentType,
        sha256: sha256Hex(upload.bytes),
        objectKey: objectKeyFor(keyPrefix, id),
        createdAt: yield* DateTime.now
      })
      yield* repository.insertPending(record)
      const cleanupFailure = yield* Ref.make<Option.Option<CleanupFailed>>(Option.none())
      const putObject = store.put(record.objectKey, upload.bytes, {
        contentType: record.contentType,
        metadata: sanitizeMetadata({ "file-id": record.id, "original-name": record.name, sha256: record.sha256 })
      })
      const release = (exit: Exit.Exit<unknown, unknown>) =>
        Exit.isSuccess(exit) || outcomeUnknown(exit)
          ? Effect.void
          : compensate(record, Exit.isFailure(exit) ? exit.cause : undefined).pipe(
            Effect.catchAll((failure) => Ref.set(cleanupFailure, Option.some(failure)))
          )
      // The compensation is registered before the put rather than as its release:
      // a put that fails midway or is interrupted (a client gone, a hung request)
      // may still have written bytes, and deleting a missing key is harmless.
      return yield* Effect.addFinalizer(release).pipe(
        Effect.zipRight(putObject),
        // The commit's outcome must be known before the scope decides whether to
        // compensate, so it is not interrupted midway.
        Effect.zipRight(Effect.uninterruptible(repository.withTransaction(repository.commitPending(record.id)))),
        Effect.filterOrFail((committed) => committed, () => new UploadExpired({ id: record.id })),
        Effect.as(record),
        Effect.scoped,
        Effect.catchAll((error) =>
          Effect.flatMap(
            Ref.get(cleanupFailure),
            (failure): Effect.Effect<never, typeof error | CleanupFailed> =>
              Effect.fail(Option.getOrElse(failure, () => error))
          )
        )
      )
    }, logFailure("store"))

    /** Validates and stores a file held in memory. */
    const upload = (declared: DeclaredFile, bytes: Uint8Array) =>
      Effect.flatMap(receive(declared, Stream.make(bytes)), store_)

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

    /** A file's bytes. An object missing under a live record is reported, not hidden. */
    const content = Effect.fn("FileService.content")(function*(record: FileRecord) {
      const object = yield* store.get(record.objectKey).pipe(
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

    return { policy, receive, store: store_, upload, get, list, content, remove, ready } as const
  })
}) {}
