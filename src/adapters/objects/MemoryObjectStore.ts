import { Effect, HashMap, Layer, Option, Ref, Stream } from "effect"
import { createHash, randomUUID } from "node:crypto"
import type { ObjectKey } from "../../domain/FileRecord.js"
import { ObjectStoreUnavailable } from "../../domain/StorageErrors.js"
import type { ByteRange, ObjectInfo, PutOptions, StoredObject } from "../../ports/ObjectStore.js"
import { ObjectNotFound, ObjectStore } from "../../ports/ObjectStore.js"
import { boundsOf } from "./ByteRangeBounds.js"
import type { MultipartUpload, ObjectBackend, WriteSettings } from "./ObjectBackend.js"
import { concatBytes, DEFAULT_PART_SIZE, toObjectStore } from "./ObjectBackend.js"

interface Entry {
  readonly bytes: Uint8Array
  readonly contentType: string
  readonly metadata: Readonly<Record<string, string>>
}

/** An upload in progress: its parts so far, in order. */
interface Pending {
  readonly key: ObjectKey
  readonly options: PutOptions
  readonly parts: ReadonlyArray<Uint8Array>
}

/** S3 orders keys by their UTF-8 bytes, which differs from JS string order for some characters. */
const byUtf8 = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))

const infoOf = (key: ObjectKey, entry: Entry): ObjectInfo => ({
  key,
  size: entry.bytes.byteLength,
  contentType: entry.contentType,
  metadata: { ...entry.metadata }
})

const refused = (operation: string, key: string, reason: string) =>
  new ObjectStoreUnavailable({ operation, key, cause: new Error(reason) })

/**
 * Objects in a Ref: for tests and local runs. Bytes are copied in and out.
 * Multipart uploads behave as S3's (invisible until complete, parts in order) but
 * accept parts of any size.
 */
export const makeBackend = Effect.gen(function*() {
  const objects = yield* Ref.make(HashMap.empty<ObjectKey, Entry>())
  const uploads = yield* Ref.make(HashMap.empty<string, Pending>())

  /** As S3 does with a checksum: bytes that do not match it are refused, and nothing is stored. */
  const put = (key: ObjectKey, bytes: Uint8Array, options: PutOptions & { readonly sha256?: string }) =>
    options.sha256 !== undefined && createHash("sha256").update(bytes).digest("hex") !== options.sha256
      ? Effect.fail(refused("put", key, "The bytes do not match their SHA-256."))
      : Ref.update(objects, (map) => {
        const entry: Entry = {
          bytes: bytes.slice(),
          contentType: options.contentType,
          metadata: { ...options.metadata }
        }
        return HashMap.set(map, key, entry)
      })

  const createMultipart = (key: ObjectKey, options: PutOptions) =>
    Effect.gen(function*() {
      const uploadId: string = randomUUID()
      const pending: Pending = {
        key,
        options: { contentType: options.contentType, metadata: { ...options.metadata } },
        parts: []
      }
      yield* Ref.update(uploads, HashMap.set(uploadId, pending))
      const upload: MultipartUpload = { key, uploadId }
      return upload
    })

  /** The upload, if it exists and belongs to `upload.key`. */
  const pendingOf = (operation: string, upload: MultipartUpload) =>
    Effect.flatMap(
      Ref.get(uploads),
      (map) =>
        Option.match(Option.filter(HashMap.get(map, upload.uploadId), (pending) => pending.key === upload.key), {
          onNone: () => Effect.fail(refused(operation, upload.key, `No multipart upload ${upload.uploadId}.`)),
          onSome: Effect.succeed
        })
    )

  const uploadPart = (upload: MultipartUpload, partNumber: number, bytes: Uint8Array) =>
    Effect.gen(function*() {
      const pending = yield* pendingOf("uploadPart", upload)
      const expected = pending.parts.length + 1
      if (partNumber !== expected) {
        return yield* Effect.fail(
          refused("uploadPart", upload.key, `Part ${partNumber} out of order: expected ${expected}.`)
        )
      }
      const next: Pending = { ...pending, parts: [...pending.parts, bytes.slice()] }
      yield* Ref.update(uploads, HashMap.set(upload.uploadId, next))
    })

  const completeMultipart = (upload: MultipartUpload, parts: number, options: PutOptions) =>
    Effect.gen(function*() {
      const pending = yield* pendingOf("completeMultipart", upload)
      if (parts < 1 || parts !== pending.parts.length) {
        return yield* Effect.fail(
          refused(
            "completeMultipart",
            upload.key,
            `Asked to complete ${parts} parts, ${pending.parts.length} uploaded.`
          )
        )
      }
      yield* Ref.update(uploads, HashMap.remove(upload.uploadId))
      yield* put(upload.key, concatBytes(pending.parts), options)
    })

  const abortMultipart = (upload: MultipartUpload) => Ref.update(uploads, HashMap.remove(upload.uploadId))

  const get = (key: ObjectKey, range?: ByteRange) =>
    Effect.gen(function*() {
      const entry = HashMap.get(yield* Ref.get(objects), key)
      if (Option.isNone(entry)) return yield* Effect.fail(new ObjectNotFound({ key }))
      const bytes = entry.value.bytes
      const bounds = range === undefined
        ? Option.some([0, bytes.byteLength] as const)
        : boundsOf(range, bytes.byteLength)
      if (Option.isNone(bounds)) {
        return yield* Effect.fail(
          refused("get", key, `Range ${range?.start}-${range?.end} is outside ${bytes.byteLength} bytes.`)
        )
      }
      const [start, end] = bounds.value
      const object: StoredObject = {
        ...infoOf(key, entry.value),
        body: start === end ? Stream.empty : Stream.sync(() => bytes.slice(start, end))
      }
      return object
    })

  const head = (key: ObjectKey) =>
    Effect.map(Ref.get(objects), (map) => Option.map(HashMap.get(map, key), (entry) => infoOf(key, entry)))

  const remove = (key: ObjectKey) => Ref.update(objects, HashMap.remove(key))

  const list = (prefix: string) =>
    Stream.unwrap(Effect.map(Ref.get(objects), (map) =>
      Stream.fromIterable(
        Array.from(HashMap.keys(map))
          .filter((key) => key.startsWith(prefix))
          .sort(byUtf8)
      )))

  const backend: ObjectBackend = {
    put,
    createMultipart,
    uploadPart,
    completeMultipart,
    abortMultipart,
    get,
    head,
    delete: remove,
    list,
    ping: Effect.void
  }
  return backend
})

/** An in-memory store; each build starts empty. */
export const layerWith = (settings: WriteSettings): Layer.Layer<ObjectStore> =>
  Layer.effect(ObjectStore, Effect.map(makeBackend, (backend) => toObjectStore(backend, settings)))

export const layer: Layer.Layer<ObjectStore> = layerWith({ partSize: DEFAULT_PART_SIZE })
