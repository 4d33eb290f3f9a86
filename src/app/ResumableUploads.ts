import { Cause, DateTime, Effect, Either, Exit, Metric, Option, Stream } from "effect"
import { createSHA256 } from "hash-wasm"
import { createHash, type Hash } from "node:crypto"
import type { CheckedContent } from "../domain/ContentCheck.js"
import { checkedRecord, type FileId, type FileRecord, type Owner } from "../domain/FileRecord.js"
import { contentMetadata, fileMetadata } from "../domain/ObjectMetadata.js"
import { ResumableContentCheck } from "../domain/ResumableContentCheck.js"
import { ChecksumMismatch, OffsetMismatch, UploadBusy, UploadNotFound } from "../domain/ResumableErrors.js"
import { ObjectStoreUnavailable, UploadExpired } from "../domain/StorageErrors.js"
import { FileTooLarge, FileTooSmall, QuotaExceeded } from "../domain/UploadErrors.js"
import { type DeclaredFile, validateDeclaration } from "../domain/UploadPolicy.js"
import { type ContentReader, ofBytes } from "../ports/ContentReader.js"
import { FileRepository, type ResumableUpload } from "../ports/FileRepository.js"
import { ObjectStore, type PartReceipt } from "../ports/ObjectStore.js"
import * as Metrics from "./Metrics.js"
import { newPendingRecord } from "./PendingRecord.js"
import { UploadSettings } from "./UploadSettings.js"

/** A PATCH's Upload-Checksum: the algorithm (sha1, sha256) and the digest of its bytes. */
export interface Checksum {
  readonly algorithm: "sha1" | "sha256"
  readonly digest: Uint8Array
}

/** Where an upload stands, as HEAD and every PATCH tell it. */
export interface UploadStatus {
  readonly id: FileId
  readonly offset: number
  readonly length: number
  /** None once the upload is a file. */
  readonly expiresAt: Option.Option<DateTime.Utc>
  /** The file, once the last byte committed it. */
  readonly file: Option.Option<FileRecord>
}

const statusOf = (upload: ResumableUpload): UploadStatus => ({
  id: upload.record.id,
  offset: upload.offset,
  length: upload.length,
  expiresAt: Option.some(upload.expiresAt),
  file: Option.none()
})

const finished = (record: FileRecord): UploadStatus => ({
  id: record.id,
  offset: record.size,
  length: record.size,
  expiresAt: Option.none(),
  file: Option.some(record)
})

/** The most one read of a PATCH's body asks for. */
const READ_BYTES = 1024 * 1024

/**
 * Resumable uploads (tus 1.0, README "Resumable uploads"), over the ports only, and
 * within the intent protocol: an upload is a pending intent from its creation to
 * its last byte, so a crash at any point leaves a trace the reconciler finds, and
 * the file is visible only once the last PATCH commits it.
 *
 * A PATCH's bytes go, part by part, to the object store's multipart upload (parts
 * of exactly `partSize`); bytes short of a whole part go to the upload's tail in
 * the database. Each step that moves the offset is one transaction with the
 * content check's state (UTF-8 decoder and SHA-256), so an acknowledged offset is
 * durable and any replica, or this one after a restart, goes on from it. A PATCH
 * with an Upload-Checksum moves the offset once, at its end, and only if its bytes
 * match; without one, after each whole part too, so a long PATCH cut off keeps what
 * reached whole parts. The last PATCH completes the object and commits the file in
 * one transaction with the end of the upload's state; until that commits the upload
 * reports less than its length, so a client never takes an upload for done that is
 * not a file.
 */
export class ResumableUploads extends Effect.Service<ResumableUploads>()("app/ResumableUploads", {
  effect: Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const { keyPrefix, policy, quota, resumable } = yield* UploadSettings
    const { expiry, partSize } = resumable

    const newHash = Effect.promise(() => createSHA256())
    const newRecord = newPendingRecord(keyPrefix)

    /**
     * Validates what is declared (name, content type, extension, and the length
     * against the size bounds) before anything is stored, and records the intent.
     */
    const create = Effect.fn("ResumableUploads.create")(
      function*(owner: Owner, declared: DeclaredFile, length: number) {
        const accepted = yield* validateDeclaration(policy, declared)
        if (length > policy.maxBytes) return yield* new FileTooLarge({ maxBytes: policy.maxBytes })
        if (length < policy.minBytes) return yield* new FileTooSmall({ size: length, minBytes: policy.minBytes })
        const record = yield* newRecord(owner, accepted)
        const { createdAt, id } = record
        const check = ResumableContentCheck.start(policy, length, yield* newHash)
        yield* repository.insertResumable(record, { length, partSize, check: check.save(), expiresIn: expiry })
        // Not read back: a failed read would leave the client an upload it was never told of.
        const created: UploadStatus = {
          id,
          offset: 0,
          length,
          expiresAt: Option.some(DateTime.addDuration(createdAt, expiry)),
          file: Option.none()
        }
        return created
      }
    )

    /** The upload, or the file it became; UploadNotFound if neither (or another owner's). */
    const status = Effect.fn("ResumableUploads.status")(function*(owner: Owner, id: FileId) {
      const upload = yield* repository.findResumable(owner, id)
      if (Option.isSome(upload)) return statusOf(upload.value)
      const file = yield* repository.find(owner, id)
      if (Option.isSome(file)) return finished(file.value)
      return yield* new UploadNotFound({ id })
    })

    const liveUpload = (owner: Owner, id: FileId) =>
      Effect.flatMap(
        repository.findResumable(owner, id),
        Option.match({ onNone: () => Effect.fail(new UploadNotFound({ id })), onSome: Effect.succeed })
      )

    /** Whatever the upload stored goes, then its intent: nothing is left of it. */
    const discard = (upload: ResumableUpload) =>
      store.discard(upload.record.objectKey, upload.multipartUploadId).pipe(
        Effect.zipRight(repository.remove(upload.record.id)),
        Effect.tapErrorCause((cause) =>
          Effect.logWarning("could not remove a resumable upload; the reconciler will once it expires", cause)
        )
      )

    /** DELETE: the upload and all it stored go. */
    const terminate = Effect.fn("ResumableUploads.terminate")(function*(owner: Owner, id: FileId) {
      yield* Effect.scoped(Effect.gen(function*() {
        const upload = yield* liveUpload(owner, id)
        if (!(yield* repository.lockResumable(id))) return yield* new UploadBusy({ id })
        yield* discard(upload).pipe(Effect.uninterruptible)
      }))
    })

    /**
     * PATCH: appends `body` at `offset`. See the class's comment for what is durable
     * when; a byte that breaks a content rule ends the upload (it is terminated, and
     * the PATCH fails with the rule's error).
     */
    const append = <E>(
      owner: Owner,
      id: FileId,
      offset: number,
      body: ContentReader<E>,
      checksum: Option.Option<Checksum>
    ) =>
      Effect.scoped(Effect.gen(function*() {
        // The lock first, then one read under it: the holder before may have moved the offset.
        const locked = yield* repository.lockResumable(id)
        const found = yield* repository.findResumable(owner, id)
        if (Option.isNone(found)) {
          // A retried last PATCH whose answer was lost: the file is there.
          const file = yield* repository.find(owner, id)
          if (Option.isSome(file) && file.value.size === offset) return finished(file.value)
          if (Option.isSome(file)) return yield* new OffsetMismatch({ expected: file.value.size, got: offset })
          return yield* new UploadNotFound({ id })
        }
        if (!locked) return yield* new UploadBusy({ id })
        const upload = found.value
        if (upload.offset !== offset) return yield* new OffsetMismatch({ expected: upload.offset, got: offset })
        return yield* write(upload, body, checksum)
      })).pipe(Effect.withSpan("ResumableUploads.append"))

    const write = <E>(upload: ResumableUpload, body: ContentReader<E>, checksum: Option.Option<Checksum>) =>
      Effect.gen(function*() {
        const { record } = upload
        const check = ResumableContentCheck.restore(policy, upload.length, yield* newHash, upload.check)
        if (check === undefined) return yield* Effect.dieMessage(`upload ${record.id}: its check state is unreadable`)
        const sum: Option.Option<Hash> = Option.map(checksum, (c) => createHash(c.algorithm))

        // The bytes since the last whole part: the stored tail, then this PATCH's. The
        // tail is read from the database only when a part or the object needs it, not on
        // every PATCH: small PATCHes would read it back again and again.
        const buffer = new Uint8Array(Math.min(partSize, upload.length - upload.parts.length * partSize))
        let durableTail = upload.offset - upload.parts.length * partSize
        let fill = durableTail
        let tailLoaded = durableTail === 0
        const loadTail = Effect.suspend(() => {
          if (tailLoaded) return Effect.void
          return Effect.flatMap(repository.resumableTail(record.id), (chunks) => {
            let at = 0
            for (const chunk of chunks) {
              if (at + chunk.byteLength > durableTail) break
              buffer.set(chunk, at)
              at += chunk.byteLength
            }
            if (at !== durableTail) {
              return Effect.dieMessage(`upload ${record.id}: its tail holds ${at} bytes, not ${durableTail}`)
            }
            tailLoaded = true
            return Effect.void
          })
        })
        let acknowledged = upload.offset
        let position = upload.offset
        let multipartUploadId = upload.multipartUploadId
        const receipts = [...upload.parts]
        const unacknowledged: Array<PartReceipt> = []

        const fail = <A>(error: A) =>
          Effect.suspend(() => discard({ ...upload, multipartUploadId })).pipe(
            Effect.ignore,
            Effect.zipRight(Effect.fail(error)),
            Effect.uninterruptible
          )

        const advance = (to: number, tail: Uint8Array) =>
          repository.advanceResumable(record.id, {
            from: acknowledged,
            to,
            check: check.save(),
            parts: unacknowledged,
            tail,
            expiresIn: expiry
          }).pipe(
            Effect.flatMap((moved) =>
              moved
                ? Effect.sync(() => {
                  acknowledged = to
                  unacknowledged.length = 0
                })
                // Only a writer whose lease ran out gets here: the upload moved on without it.
                : Effect.fail(new UploadBusy({ id: record.id }))
            )
          )

        /**
         * The multipart upload, started and recorded with the intent as one step (not
         * interrupted midway): an upload left unrecorded would be beyond the
         * reconciler's reach. A record whose answer was lost is read back before the
         * upload is given up.
         */
        const startMultipart = Effect.gen(function*() {
          const uploadId = yield* store.resumable.start(record.objectKey, {
            contentType: record.contentType,
            metadata: fileMetadata(record)
          })
          const abandon = <E2>(cause: Cause.Cause<E2>) =>
            Effect.zipRight(
              store.discard(record.objectKey, Option.some(uploadId)).pipe(Effect.ignore),
              Effect.failCause(cause)
            )
          const recorded = yield* repository.recordMultipart(record.id, uploadId).pipe(
            Effect.catchAllCause((cause) =>
              repository.findResumable(record.owner, record.id).pipe(
                Effect.map((found) => Option.exists(found, (u) => Option.contains(u.multipartUploadId, uploadId))),
                Effect.orElseSucceed(() => false),
                Effect.flatMap((kept) => kept ? Effect.succeed(true) : abandon(cause))
              )
            )
          )
          if (!recorded) return yield* abandon(Cause.fail(new UploadNotFound({ id: record.id })))
          multipartUploadId = Option.some(uploadId)
          return uploadId
        }).pipe(Effect.uninterruptible)

        /** The buffer is a whole part, and more bytes follow: to the object store with it. */
        /**
         * A retried last PATCH whose object was completed already (by a process that
         * failed or died before its commit): its multipart upload is gone, so its
         * parts are only checked, and the end compares the bytes with the object.
         */
        let completedBefore = false

        const sendPart = Effect.gen(function*() {
          yield* loadTail
          const uploadId = Option.isSome(multipartUploadId) ? multipartUploadId.value : yield* startMultipart
          const number = receipts.length + 1
          const receipt = completedBefore ? undefined : yield* store.resumable.putPart(record.objectKey, uploadId, {
            number,
            offset: (number - 1) * partSize,
            bytes: buffer.subarray(0, fill)
          }).pipe(
            Effect.catchAll((error) =>
              Effect.flatMap(store.head(record.objectKey), (object) => {
                if (Option.isNone(object)) return Effect.fail(error)
                completedBefore = true
                return Effect.succeed(undefined)
              })
            )
          )
          fill = 0
          durableTail = 0
          tailLoaded = true
          if (receipt === undefined) return
          receipts.push(receipt)
          unacknowledged.push(receipt)
          // Without a checksum to wait for, the part is acknowledged at once.
          if (Option.isNone(sum)) yield* advance(position, new Uint8Array(0))
        })

        for (let ended = false; !ended;) {
          const batch = yield* body.read(READ_BYTES)
          ended = batch.ended
          for (const chunk of batch.chunks) {
            for (let at = 0; at < chunk.byteLength;) {
              if (position === upload.length) {
                // Past the declared length: the check refuses it (FileTooLarge).
                const verdict = check.update(chunk.subarray(at))
                return yield* fail(
                  Either.isLeft(verdict) ? verdict.left : new FileTooLarge({ maxBytes: upload.length })
                )
              }
              const slice = chunk.subarray(at, at + Math.min(chunk.byteLength - at, buffer.byteLength - fill))
              const verdict = check.update(slice)
              if (Either.isLeft(verdict)) return yield* fail(verdict.left)
              if (Option.isSome(sum)) sum.value.update(slice)
              buffer.set(slice, fill)
              fill += slice.byteLength
              position += slice.byteLength
              at += slice.byteLength
              // A whole part that is not the object's last goes at once (the last goes with the commit).
              if (fill === buffer.byteLength && position < upload.length) yield* sendPart
            }
          }
        }

        if (Option.isSome(checksum) && Option.isSome(sum)) {
          const digest = sum.value.digest()
          if (!digest.equals(checksum.value.digest)) {
            return yield* new ChecksumMismatch({ algorithm: checksum.value.algorithm })
          }
        }

        if (position < upload.length && completedBefore) {
          // Only the last PATCH can finish an upload whose object is complete already.
          return yield* new ObjectStoreUnavailable({
            operation: "resumable.putPart",
            key: record.objectKey,
            cause: new Error("the object was completed before; send the rest of the upload in one PATCH")
          })
        }
        if (position < upload.length) {
          // Nothing new since the last part was acknowledged: nothing to write.
          if (position > acknowledged || unacknowledged.length > 0) {
            yield* advance(position, buffer.slice(unacknowledged.length > 0 ? 0 : durableTail, fill))
          }
          return {
            ...statusOf(upload),
            offset: position,
            expiresAt: Option.some(DateTime.addDuration(yield* DateTime.now, expiry))
          } satisfies UploadStatus
        }

        const content = check.finish()
        if (Either.isLeft(content)) return yield* fail(content.left)
        yield* loadTail
        return yield* complete(upload, content.right, buffer.subarray(0, fill), receipts, multipartUploadId)
      })

    /**
     * Whether a retried last PATCH finds its object whole already: completed before
     * the commit failed (its description says its size and sha256), or completed by a
     * process that died before it could describe it (then its bytes are read back and
     * hashed: rare, and the only proof). Its multipart upload is gone either way, so
     * it could not be completed again.
     */
    const alreadyWritten = (record: FileRecord, content: CheckedContent) =>
      Effect.flatMap(store.head(record.objectKey), (existing) => {
        if (Option.isNone(existing) || existing.value.size !== content.size) return Effect.succeed(false)
        const described = existing.value.metadata["sha256"]
        if (described !== undefined) return Effect.succeed(described === content.sha256)
        return Effect.flatMap(
          store.get(record.objectKey),
          (object) =>
            Stream.runFold(object.body, createHash("sha256"), (hash, chunk) => hash.update(chunk)).pipe(
              Effect.map((hash) => hash.digest("hex") === content.sha256),
              Effect.tap((whole) =>
                whole
                  ? Effect.logWarning("a resumable upload's object was completed but not described; committed as it is")
                    .pipe(Effect.annotateLogs({ key: record.objectKey }))
                  : Effect.void
              )
            )
        ).pipe(Effect.catchTag("ObjectNotFound", () => Effect.succeed(false)))
      })

    /**
     * The last bytes are in: the object is completed (or, for an upload within one
     * part, written with one put), then the file committed together with the end of
     * the upload's state. A file over its owner's quota is not kept.
     */
    const complete = (
      upload: ResumableUpload,
      content: CheckedContent,
      last: Uint8Array,
      receipts: Array<PartReceipt>,
      multipartUploadId: Option.Option<string>
    ) =>
      Effect.gen(function*() {
        const { record } = upload
        const options = {
          contentType: record.contentType,
          metadata: { ...fileMetadata(record), ...contentMetadata(content) }
        }
        const written = yield* alreadyWritten(record, content)
        if (!written && Option.isSome(multipartUploadId)) {
          if (last.byteLength > 0) {
            receipts.push(
              yield* store.resumable.putPart(record.objectKey, multipartUploadId.value, {
                number: receipts.length + 1,
                offset: receipts.length * partSize,
                bytes: last
              })
            )
          }
          yield* store.resumable.complete(record.objectKey, multipartUploadId.value, receipts, options)
        } else if (!written) {
          yield* store.write(record.objectKey, ofBytes(last), {
            ...options,
            ended: Effect.succeed({ sha256: content.sha256, metadata: contentMetadata(content) }),
            onUploadStarted: () => Effect.void
          })
        }
        const committed = yield* Effect.exit(repository.withTransaction(
          Effect.zipLeft(repository.commitPending(record.id, content, quota), repository.dropResumable(record.id))
        ))
        if (Exit.isSuccess(committed) && committed.value === "Committed") {
          yield* Metric.incrementBy(Metrics.storedBytes, content.size)
          return finished(checkedRecord({ ...record, ...content }))
        }
        // A commit that failed, or perhaps succeeded: the object and the upload stay. A
        // retried last PATCH finds the object written and commits it; otherwise the
        // reconciler settles it once the upload expires.
        if (Exit.isFailure(committed)) return yield* Effect.failCause(committed.cause)
        const failure = committed.value === "OverQuota"
          ? new QuotaExceeded({
            maxFiles: Option.getOrUndefined(quota.maxFiles),
            maxBytes: Option.getOrUndefined(quota.maxBytes)
          })
          : new UploadExpired({ id: record.id })
        // The object is no file's: it goes, and the upload with it. (A database failure
        // above leaves both to the reconciler, once the upload expires.)
        yield* discard({ ...upload, multipartUploadId }).pipe(Effect.ignore)
        return yield* Effect.fail(failure)
      }).pipe(Effect.uninterruptible)

    const outcomeOf = (status: UploadStatus) => Option.isSome(status.file) ? "finished" : "ok"

    return {
      create: (owner: Owner, declared: DeclaredFile, length: number) =>
        create(owner, declared, length).pipe(Metrics.measureResumable("create", outcomeOf)),
      status,
      append: <E>(
        owner: Owner,
        id: FileId,
        offset: number,
        body: ContentReader<E>,
        checksum: Option.Option<Checksum>
      ) => append(owner, id, offset, body, checksum).pipe(Metrics.measureResumable("patch", outcomeOf)),
      terminate: (owner: Owner, id: FileId) =>
        terminate(owner, id).pipe(Metrics.measureResumable("terminate", () => "ok")),
      maxBytes: policy.maxBytes
    } as const
  })
}) {}
