import { Effect, Option } from "effect"
import type { ObjectKey } from "../../domain/FileRecord.js"
import type { ObjectStoreUnavailable } from "../../domain/StorageErrors.js"
import type { ContentReader } from "../../ports/ContentReader.js"
import type { ObjectStore, PartReceipt, PutOptions, ResumablePart, WriteOptions } from "../../ports/ObjectStore.js"

/** A multipart upload in progress: its id, as the store knows it, is what must be aborted after a crash. */
export interface MultipartUpload {
  readonly key: ObjectKey
  readonly uploadId: string
}

/**
 * S3's object operations, as each store provides them (S3 itself, a directory,
 * memory). `toObjectStore` builds the ObjectStore port on top, so the rules of
 * writing in parts live in one place, whatever holds the bytes.
 */
export interface ObjectBackend {
  /**
   * Replaces the whole object atomically: readers see the old bytes or the new, never
   * a mix. With `sha256` (hex), a store that checks refuses bytes that do not match it.
   */
  readonly put: (
    key: ObjectKey,
    bytes: Uint8Array,
    options: PutOptions & { readonly sha256?: string }
  ) => Effect.Effect<void, ObjectStoreUnavailable>
  /**
   * A large object in parts (S3 multipart upload): nothing is visible at `key`
   * until `completeMultipart`; `abortMultipart` discards the parts (and succeeds
   * for an upload that is already gone or was never known; a completed upload's
   * object stays). Parts are numbered from 1, at least 5 MiB each but the last
   * (S3's rule; memory and disk accept any size), and uploaded one at a time in
   * order: any other number than the next is refused, and a part that failed may be
   * sent again. `parts` is how many were uploaded; `options` are the object's final
   * content type and metadata (S3 sets them by copying the object onto itself, since a
   * multipart upload's metadata is fixed when it is created). Only the process that created an
   * upload can add parts to it or complete it (the adapters keep its parts' state in
   * memory); any process can abort it. A store does not hold on to a part's `bytes`
   * once `uploadPart` is done: the caller reuses the buffer.
   */
  readonly createMultipart: (
    key: ObjectKey,
    options: PutOptions
  ) => Effect.Effect<MultipartUpload, ObjectStoreUnavailable>
  readonly uploadPart: (
    upload: MultipartUpload,
    partNumber: number,
    bytes: Uint8Array
  ) => Effect.Effect<void, ObjectStoreUnavailable>
  readonly completeMultipart: (
    upload: MultipartUpload,
    parts: number,
    options: PutOptions
  ) => Effect.Effect<void, ObjectStoreUnavailable>
  readonly abortMultipart: (upload: MultipartUpload) => Effect.Effect<void, ObjectStoreUnavailable>
  /**
   * A part of an upload whose parts' state the caller keeps (ResumableWrites): any
   * process may send it, again too (the last sent counts, and a later part sent
   * before it is dropped: the upload is the bytes up to this part's end). The
   * receipt is what `completeWith` needs of it.
   */
  readonly uploadPartAt: (
    upload: MultipartUpload,
    part: ResumablePart
  ) => Effect.Effect<PartReceipt, ObjectStoreUnavailable>
  /** Completes an upload from its parts' receipts (1..n, in order), in any process. */
  readonly completeWith: (
    upload: MultipartUpload,
    receipts: ReadonlyArray<PartReceipt>,
    options: PutOptions
  ) => Effect.Effect<void, ObjectStoreUnavailable>
  readonly get: ObjectStore["Type"]["get"]
  readonly head: ObjectStore["Type"]["head"]
  readonly delete: ObjectStore["Type"]["delete"]
  readonly list: ObjectStore["Type"]["list"]
  readonly ping: ObjectStore["Type"]["ping"]
}

/** S3's bounds for a multipart upload's parts (all but the last). */
export const MIN_PART_SIZE = 5 * 1024 ** 2
export const MAX_PART_SIZE = 5 * 1024 ** 3
export const DEFAULT_PART_SIZE = 8 * 1024 ** 2

export interface WriteSettings {
  /**
   * Objects up to this size are written with one put, once all their bytes are in;
   * larger ones in parts of exactly this size but the last.
   */
  readonly partSize: number
}

/** The most a part is filled with in one read, so chunks are copied soon after they arrive. */
const READ_SLICE_BYTES = 1024 * 1024

export const concatBytes = (chunks: Iterable<Uint8Array>): Uint8Array => {
  const list = Array.from(chunks)
  const out = new Uint8Array(list.reduce((size, chunk) => size + chunk.byteLength, 0))
  let offset = 0
  for (const chunk of list) {
    out.set(chunk, offset)
    offset += chunk.byteLength
  }
  return out
}

/** One part of a multipart upload: a view of the shared buffer, valid until the next part is read. */
export interface Part {
  readonly bytes: Uint8Array
  /** No part follows. */
  readonly last: boolean
}

/**
 * Cuts content into parts of exactly `partSize` bytes (the last may be shorter, or
 * empty), copied into one buffer that every part reuses: a file of any size holds
 * one part in memory, and every part but the last has the same size (which R2, for
 * one, requires). `pending` are chunks read already; `ended`, whether the content
 * has ended already (it is not read again then).
 */
export const cutParts = <E>(
  content: ContentReader<E>,
  partSize: number,
  pending: Array<Uint8Array>,
  ended = false
): Effect.Effect<Part, E> => {
  const buffer = new Uint8Array(partSize)
  return Effect.gen(function*() {
    let length = 0
    for (;;) {
      while (pending.length > 0 && length < partSize) {
        const chunk = pending[0] as Uint8Array
        const taken = Math.min(chunk.byteLength, partSize - length)
        buffer.set(chunk.subarray(0, taken), length)
        length += taken
        if (taken === chunk.byteLength) pending.shift()
        else pending[0] = chunk.subarray(taken)
      }
      if (length === partSize || ended) {
        return { bytes: buffer.subarray(0, length), last: ended && pending.length === 0 }
      }
      const batch = yield* content.read(Math.min(partSize - length, READ_SLICE_BYTES))
      pending.push(...batch.chunks)
      ended = batch.ended
    }
  })
}

/** Reads until more than `size` bytes are in or the content ends: whether it fits in `size` bytes. */
const readUpTo = <E>(content: ContentReader<E>, size: number) =>
  Effect.gen(function*() {
    const chunks: Array<Uint8Array> = []
    let length = 0
    for (;;) {
      const batch = yield* content.read(size + 1 - length)
      for (const chunk of batch.chunks) {
        chunks.push(chunk)
        length += chunk.byteLength
      }
      if (length > size) return { chunks, fits: false, ended: batch.ended }
      if (batch.ended) return { chunks, fits: true, ended: true }
    }
  })

/**
 * The ObjectStore port over a backend. A write reads the first `partSize` bytes:
 * content that ends within them is written with one put, with its sha256 and its
 * whole metadata; larger content goes to a multipart upload, announced to the caller
 * before its first part, cut into equal parts through one buffer, and given its whole
 * metadata as it completes. The multipart uploads this process leaves
 * unfinished are remembered by key, so `discard` can abort them without being told
 * their id.
 */
export const toObjectStore = (backend: ObjectBackend, settings: WriteSettings): ObjectStore["Type"] => {
  const unfinished = new Map<ObjectKey, MultipartUpload>()

  const writeInParts = <E, E2>(
    key: ObjectKey,
    content: ContentReader<E>,
    options: WriteOptions<E2>,
    first: { readonly chunks: Array<Uint8Array>; readonly ended: boolean }
  ) =>
    Effect.gen(function*() {
      const upload = yield* backend.createMultipart(key, options)
      unfinished.set(key, upload)
      yield* options.onUploadStarted(upload.uploadId)
      const nextPart = cutParts(content, settings.partSize, first.chunks, first.ended)
      let parts = 0
      for (let last = false; !last;) {
        const part = yield* nextPart
        last = part.last
        // The backend is done with the buffer when uploadPart returns (see ObjectBackend).
        if (part.bytes.byteLength > 0) yield* backend.uploadPart(upload, ++parts, part.bytes)
      }
      const end = yield* options.ended
      yield* backend.completeMultipart(upload, parts, {
        contentType: options.contentType,
        metadata: { ...options.metadata, ...end.metadata }
      })
      unfinished.delete(key)
    })

  const write = <E, E2>(key: ObjectKey, content: ContentReader<E>, options: WriteOptions<E2>) =>
    Effect.flatMap(readUpTo(content, settings.partSize), (first) =>
      first.fits
        ? Effect.flatMap(options.ended, (end) =>
          backend.put(key, concatBytes(first.chunks), {
            contentType: options.contentType,
            metadata: { ...options.metadata, ...end.metadata },
            sha256: end.sha256
          }))
        : writeInParts(key, content, options, first))

  const discard = (key: ObjectKey, uploadId: Option.Option<string>) =>
    Effect.gen(function*() {
      const started = unfinished.get(key)
      const ids = new Set([...Option.toArray(uploadId), ...(started === undefined ? [] : [started.uploadId])])
      for (const id of ids) yield* backend.abortMultipart({ key, uploadId: id })
      unfinished.delete(key)
      yield* backend.delete(key)
    })

  return {
    write,
    discard,
    get: backend.get,
    head: backend.head,
    delete: backend.delete,
    list: backend.list,
    ping: backend.ping,
    resumable: {
      start: (key, options) => Effect.map(backend.createMultipart(key, options), (upload) => upload.uploadId),
      putPart: (key, uploadId, part) => backend.uploadPartAt({ key, uploadId }, part),
      complete: (key, uploadId, receipts, options) => backend.completeWith({ key, uploadId }, receipts, options)
    }
  }
}
