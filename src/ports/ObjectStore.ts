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

export interface StoredObject extends ObjectInfo {
  /** The bytes, read lazily; run it once. */
  readonly body: Stream.Stream<Uint8Array, ObjectStoreUnavailable>
}

/**
 * Where file bytes live: S3, a local directory, or memory. Keys are opaque; a put
 * replaces the whole object atomically (readers see the old bytes or the new, never
 * a mix); delete of a missing key succeeds.
 */
export class ObjectStore extends Context.Tag("ports/ObjectStore")<ObjectStore, {
  readonly put: (key: ObjectKey, bytes: Uint8Array, options: PutOptions) => Effect.Effect<void, ObjectStoreUnavailable>
  readonly get: (key: ObjectKey) => Effect.Effect<StoredObject, ObjectNotFound | ObjectStoreUnavailable>
  readonly head: (key: ObjectKey) => Effect.Effect<Option.Option<ObjectInfo>, ObjectStoreUnavailable>
  readonly delete: (key: ObjectKey) => Effect.Effect<void, ObjectStoreUnavailable>
  /** Every key that starts with `prefix`, in ascending order. */
  readonly list: (prefix: string) => Stream.Stream<ObjectKey, ObjectStoreUnavailable>
  /** Succeeds when the store can be reached (readiness). */
  readonly ping: Effect.Effect<void, ObjectStoreUnavailable>
}>() {}

/** Reads a whole object into memory: for tests and small files only. */
export const readAll = (store: ObjectStore["Type"], key: ObjectKey) =>
  Effect.flatMap(store.get(key), (object) =>
    Effect.map(Stream.runCollect(object.body), (chunks) => ({ ...object, bytes: concatBytes(chunks) })))

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
