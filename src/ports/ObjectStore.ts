import type { Option } from "effect"
import { Context, Effect, Schema, Stream } from "effect"
import type { ObjectKey } from "../domain/FileRecord.js"
import type { ObjectStoreUnavailable } from "../domain/StorageErrors.js"

/** `get` of a key that holds no object. */
export class ObjectNotFound extends Schema.TaggedError<ObjectNotFound>()("ObjectNotFound", {
  key: Schema.String
}) {
  override get message() {
    return `No object at ${this.key}.`
  }
}

export interface PutOptions {
  readonly contentType: string
  /** Already sanitized for S3 (see domain/ObjectMetadata.ts). */
  readonly metadata: Readonly<Record<string, string>>
}

export interface ObjectInfo {
  readonly key: ObjectKey
  readonly size: number
  readonly contentType: string
  readonly metadata: Readonly<Record<string, string>>
}

/** `size` is the whole object's, also when `get` was asked for a range. */
export interface StoredObject extends ObjectInfo {
  /** The bytes (of the range, if one was asked for), read lazily; run it once. */
  readonly body: Stream.Stream<Uint8Array, ObjectStoreUnavailable>
}

/**
 * Bytes `start` to `end`, both inclusive, as in an HTTP Range header; within the object.
 * As S3 does, an `end` past the object is read as its last byte; a `start` at or past
 * the end, or after `end`, fails with ObjectStoreUnavailable.
 */
export interface ByteRange {
  readonly start: number
  readonly end: number
}

/** A multipart upload in progress: its id, as the store knows it, is what must be aborted after a crash. */
export interface MultipartUpload {
  readonly key: ObjectKey
  readonly uploadId: string
}

/**
 * Where file bytes live: S3, a local directory, or memory. Keys are opaque; a put
 * replaces the whole object atomically (readers see the old bytes or the new, never
 * a mix); delete of a missing key succeeds.
 */
export class ObjectStore extends Context.Tag("ports/ObjectStore")<ObjectStore, {
  readonly put: (key: ObjectKey, bytes: Uint8Array, options: PutOptions) => Effect.Effect<void, ObjectStoreUnavailable>
  /**
   * A large object in parts (S3 multipart upload): nothing is visible at `key`
   * until `completeMultipart`; `abortMultipart` discards the parts (and succeeds
   * for an upload that is already gone or was never known; a completed upload's object
   * stays). Parts are numbered from 1,
   * at least 5 MiB each but the last (S3's rule; memory and disk accept any size), and
   * uploaded one at a time in order: any other number than the next is refused, and a
   * part that failed may be sent again. `parts` is how many were uploaded. Only the
   * process that created an upload can add parts to it or complete it (the adapters
   * keep its parts' state in memory); any process can abort it. A store does not
   * hold on to a part's `bytes` once `uploadPart` is done: the caller reuses the buffer.
   */
  readonly createMultipart: (key: ObjectKey, options: PutOptions) => Effect.Effect<MultipartUpload, ObjectStoreUnavailable>
  readonly uploadPart: (
    upload: MultipartUpload,
    partNumber: number,
    bytes: Uint8Array
  ) => Effect.Effect<void, ObjectStoreUnavailable>
  readonly completeMultipart: (upload: MultipartUpload, parts: number) => Effect.Effect<void, ObjectStoreUnavailable>
  readonly abortMultipart: (upload: MultipartUpload) => Effect.Effect<void, ObjectStoreUnavailable>
  /** The object, or the byte range of it (see ByteRange). */
  readonly get: (
    key: ObjectKey,
    range?: ByteRange
  ) => Effect.Effect<StoredObject, ObjectNotFound | ObjectStoreUnavailable>
  readonly head: (key: ObjectKey) => Effect.Effect<Option.Option<ObjectInfo>, ObjectStoreUnavailable>
  readonly delete: (key: ObjectKey) => Effect.Effect<void, ObjectStoreUnavailable>
  /** Every key that starts with `prefix`, in ascending order. */
  readonly list: (prefix: string) => Stream.Stream<ObjectKey, ObjectStoreUnavailable>
  /** Succeeds when the store can be reached (readiness). */
  readonly ping: Effect.Effect<void, ObjectStoreUnavailable>
}>() {}

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
