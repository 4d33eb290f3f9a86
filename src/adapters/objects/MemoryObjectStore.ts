import { Effect, Either, HashMap, Layer, Option, Ref, Schema, Stream } from "effect"
import { createHash, randomUUID } from "node:crypto"
import type { ObjectKey } from "../../domain/FileRecord.js"
import { ObjectStoreUnavailable } from "../../domain/StorageErrors.js"
import type {
  ByteRange,
  ObjectInfo,
  PartReceipt,
  PutOptions,
  ResumablePart,
  StoredObject
} from "../../ports/ObjectStore.js"
import { ObjectNotFound, ObjectStore } from "../../ports/ObjectStore.js"
import { boundsOf } from "./ByteRangeBounds.js"
import type { MultipartUpload, ObjectBackend, WriteSettings } from "./ObjectBackend.js"
import { concatBytes, DEFAULT_PART_SIZE, toObjectStore } from "./ObjectBackend.js"

interface Entry {
  readonly bytes: Uint8Array
  readonly contentType: string
  readonly metadata: Readonly<Record<string, string>>
}

/**
 * A resumable upload's part, as its receipt names it: its number and its bytes'
 * SHA-256 (as S3's ETag, so a receipt of bytes since replaced is refused).
 */
const Receipt = Schema.parseJson(Schema.Struct({
  number: Schema.Int.pipe(Schema.positive()),
  sha256: Schema.String
}))
const encodeReceipt = Schema.encodeSync(Receipt)
const decodeReceipt = Schema.decodeUnknownEither(Receipt)

const sha256Of = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** An upload in progress: its parts so far, in order (part n at n - 1). */
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
 * accept parts of any size. A resumable upload's parts are kept with the upload, in
 * this Ref (memory is one process anyway).
 */
export const makeBackend = Effect.gen(function*() {
  const objects = yield* Ref.make(HashMap.empty<ObjectKey, Entry>())
  const uploads = yield* Ref.make(HashMap.empty<string, Pending>())

  /** As S3 does with a checksum: bytes that do not match it are refused, and nothing is stored. */
  const put = (key: ObjectKey, bytes: Uint8Array, options: PutOptions & { readonly sha256?: string }) =>
    options.sha256 !== undefined && sha256Of(bytes) !== options.sha256
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

  /** The upload's parts become the object at its key; the upload is gone. */
  const finish = (upload: MultipartUpload, parts: ReadonlyArray<Uint8Array>, options: PutOptions) =>
    Effect.zipRight(
      Ref.update(uploads, HashMap.remove(upload.uploadId)),
      put(upload.key, concatBytes(parts), options)
    )

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
      yield* finish(upload, pending.parts, options)
    })

  /**
   * Sets part `number` (sent again, it replaces the earlier one) and drops the parts
   * after it, as a resumable upload's part does; a part after a missing one is refused.
   */
  const uploadPartAt = (upload: MultipartUpload, part: ResumablePart) =>
    Effect.gen(function*() {
      const pending = yield* pendingOf("uploadPartAt", upload)
      if (!Number.isSafeInteger(part.number) || part.number < 1 || part.number > pending.parts.length + 1) {
        return yield* Effect.fail(
          refused(
            "uploadPartAt",
            upload.key,
            `Part ${part.number} out of order: ${pending.parts.length} parts were uploaded.`
          )
        )
      }
      const bytes = part.bytes.slice()
      const next: Pending = { ...pending, parts: [...pending.parts.slice(0, part.number - 1), bytes] }
      yield* Ref.update(uploads, HashMap.set(upload.uploadId, next))
      const receipt: PartReceipt = encodeReceipt({ number: part.number, sha256: sha256Of(bytes) })
      return receipt
    })

  /** Parts 1..n as the receipts name them, each still the bytes its receipt was given for. */
  const completeWith = (upload: MultipartUpload, receipts: ReadonlyArray<PartReceipt>, options: PutOptions) =>
    Effect.gen(function*() {
      const pending = yield* pendingOf("completeWith", upload)
      if (receipts.length === 0) {
        return yield* Effect.fail(refused("completeWith", upload.key, "No parts to complete."))
      }
      const parts: Array<Uint8Array> = []
      for (const [index, receipt] of receipts.entries()) {
        const decoded = decodeReceipt(receipt)
        if (Either.isLeft(decoded)) {
          return yield* Effect.fail(
            new ObjectStoreUnavailable({ operation: "completeWith", key: upload.key, cause: decoded.left })
          )
        }
        const part = pending.parts[index]
        if (decoded.right.number !== index + 1 || part === undefined || sha256Of(part) !== decoded.right.sha256) {
          return yield* Effect.fail(
            refused("completeWith", upload.key, `Receipt ${index + 1} does not name part ${index + 1} as uploaded.`)
          )
        }
        parts.push(part)
      }
      yield* finish(upload, parts, options)
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
    uploadPartAt,
    completeWith,
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
