import type { Option } from "effect"
import { Context, type Effect, Schema, type Stream } from "effect"
import type { ObjectKey } from "../domain/FileRecord.js"
import type { ObjectStoreUnavailable } from "../domain/StorageErrors.js"
import type { ContentReader } from "./ContentReader.js"

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

/** What is known of an object's content only once all of it was read. */
export interface EndOfContent {
  /** Lowercase hex SHA-256 of the bytes: a store sends it with them, so that one that checks refuses corrupted bytes. */
  readonly sha256: string
  /** Metadata that completes the object's description (sanitized, as PutOptions' own). */
  readonly metadata: Readonly<Record<string, string>>
}

export interface WriteOptions<E> extends PutOptions {
  /**
   * Given once the content has ended (and not before): the store records it with the
   * object, so that the object describes itself whole.
   */
  readonly ended: Effect.Effect<EndOfContent>
  /**
   * Called once if the store writes the object in parts (a multipart upload), with
   * the upload's id, before its first part: the caller records it, so that an
   * upload left unfinished by a crash can be aborted by whoever finds it. A
   * failure here fails the write.
   */
  readonly onUploadStarted: (uploadId: string) => Effect.Effect<void, E>
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

/**
 * A part of a resumable upload as the store acknowledged it: what completing the
 * upload must name. Opaque and serializable (the caller keeps it in its database),
 * so any process can complete an upload that others sent parts of.
 */
export type PartReceipt = string

/** One part of a resumable upload: the object's bytes [offset, offset + bytes.length). */
export interface ResumablePart {
  /** From 1, in the order of the object's bytes. */
  readonly number: number
  readonly offset: number
  readonly bytes: Uint8Array
}

/**
 * A multipart upload whose state lives with the caller, not in this process: a
 * resumable upload's parts arrive over hours, through any replica, across
 * restarts. Parts are at least 5 MiB (S3's rule) but the last, all but the last of
 * one size; a part may be sent again (after a crash, say), and the last one sent
 * counts. Nothing is visible at `key` until `complete`; `discard(key, uploadId)`
 * aborts it.
 */
export interface ResumableWrites {
  readonly start: (key: ObjectKey, options: PutOptions) => Effect.Effect<string, ObjectStoreUnavailable>
  readonly putPart: (
    key: ObjectKey,
    uploadId: string,
    part: ResumablePart
  ) => Effect.Effect<PartReceipt, ObjectStoreUnavailable>
  /** Makes the object of parts 1..n (their receipts, in order) visible, with its final content type and metadata. */
  readonly complete: (
    key: ObjectKey,
    uploadId: string,
    receipts: ReadonlyArray<PartReceipt>,
    options: PutOptions
  ) => Effect.Effect<void, ObjectStoreUnavailable>
}

/**
 * Where file bytes live: S3, a local directory, or memory. Keys are opaque; an
 * object appears whole or not at all (readers never see part of a write); delete
 * of a missing key succeeds.
 */
export class ObjectStore extends Context.Tag("ports/ObjectStore")<ObjectStore, {
  /**
   * Writes the object at `key` from `content`, read to its end, in constant memory
   * whatever its size: how (one request, or a multipart upload) is the store's
   * business, and `options.onUploadStarted` hears of a multipart upload before its
   * first part. Nothing is visible at `key` unless the write succeeds. A write that
   * fails, or is interrupted, may leave bytes behind (a part, an upload, an object
   * whose last answer was lost): `discard` removes them.
   */
  readonly write: <E, E2>(
    key: ObjectKey,
    content: ContentReader<E>,
    options: WriteOptions<E2>
  ) => Effect.Effect<void, E | E2 | ObjectStoreUnavailable>
  /**
   * Removes whatever a write to `key` may have left: the multipart upload `uploadId`
   * names (recorded by a process that may have crashed since), any unfinished one this
   * process started for `key`, and the object. Succeeds when there is nothing to remove.
   */
  readonly discard: (key: ObjectKey, uploadId: Option.Option<string>) => Effect.Effect<void, ObjectStoreUnavailable>
  /** The object, or the byte range of it (see ByteRange). */
  readonly get: (
    key: ObjectKey,
    range?: ByteRange
  ) => Effect.Effect<StoredObject, ObjectNotFound | ObjectStoreUnavailable>
  readonly head: (key: ObjectKey) => Effect.Effect<Option.Option<ObjectInfo>, ObjectStoreUnavailable>
  readonly delete: (key: ObjectKey) => Effect.Effect<void, ObjectStoreUnavailable>
  /** Every key that starts with `prefix`, in ascending (UTF-8 byte) order. */
  readonly list: (prefix: string) => Stream.Stream<ObjectKey, ObjectStoreUnavailable>
  /** Succeeds when the store can be reached (readiness). */
  readonly ping: Effect.Effect<void, ObjectStoreUnavailable>
  /** Multipart uploads whose parts any process may send (resumable uploads). */
  readonly resumable: ResumableWrites
}>() {}
