/**
 * The ObjectStore port as the workflow sees it, the same over every store: writes
 * of any size from a content reader, what a failed or interrupted write leaves,
 * and discard. (How each backend behaves beneath it: ObjectBackend.contract.test.ts.)
 */
import { describe, expect, layer } from "@effect/vitest"
import { Chunk, Context, Deferred, Effect, Either, Fiber, Layer, Option, Stream } from "effect"
import type { Scope } from "effect"
import { createHash, randomUUID } from "node:crypto"
import * as LocalDiskObjectStore from "../src/adapters/objects/LocalDiskObjectStore.js"
import * as MemoryObjectStore from "../src/adapters/objects/MemoryObjectStore.js"
import type { ObjectBackend } from "../src/adapters/objects/ObjectBackend.js"
import { concatBytes, toObjectStore } from "../src/adapters/objects/ObjectBackend.js"
import * as S3ObjectStore from "../src/adapters/objects/S3ObjectStore.js"
import type { S3Settings } from "../src/adapters/objects/S3ObjectStore.js"
import { ObjectKey } from "../src/domain/FileRecord.js"
import type { ContentReader } from "../src/ports/ContentReader.js"
import type { PartReceipt } from "../src/ports/ObjectStore.js"
import { ObjectStore } from "../src/ports/ObjectStore.js"
import { Backend } from "./support/Backends.js"
import * as Backends from "./support/Backends.js"
import { fromChunks } from "./support/Content.js"
import * as FauxqsTestServer from "./support/FauxqsTestServer.js"
import { readAll } from "./support/ReadAll.js"
import * as S3TestServer from "./support/S3TestServer.js"
import * as TempDirectory from "./support/TempDirectory.js"

const textPlain = { contentType: "text/plain", metadata: {} }
const MiB = 1024 * 1024
/** S3's smallest part: the S3 servers are written to with it; memory and disk with small parts. */
const S3_PART = 5 * MiB

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
const freshKey = () => ObjectKey.make(`w-${randomUUID()}/object`)
const bytesOf = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 7) % 253)

/** Content that is never complete: it breaks once `size` bytes were read. */
const breaksAfter = (size: number): ContentReader<string> => {
  let sent = 0
  return {
    read: (maxBytes) =>
      Effect.suspend(() => {
        if (sent >= size) return Effect.fail("the source broke")
        const chunk = bytesOf(Math.min(maxBytes, size - sent, 256 * 1024))
        sent += chunk.byteLength
        return Effect.succeed({ chunks: [chunk], ended: false })
      })
  }
}

/** Content that stops after `size` bytes and never answers again (a stalled client). */
const stallsAfter = (size: number): ContentReader<never> => {
  let sent = 0
  return {
    read: (maxBytes) =>
      Effect.suspend(() => {
        if (sent >= size) return Effect.never
        const chunk = bytesOf(Math.min(maxBytes, size - sent, 256 * 1024))
        sent += chunk.byteLength
        return Effect.succeed({ chunks: [chunk], ended: false })
      })
  }
}

/** Bytes that differ from part to part (and from bytesOf), so a part out of place shows. */
const partBytes = (size: number, seed: number) => {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = (i * 13 + seed * 41) % 251
  return bytes
}

/**
 * Another backend over the same storage, as another process (a replica, a restart)
 * has: a second S3 client, a second LocalDisk backend on the same directory. Memory's
 * is the same backend (memory is one process).
 */
class Replica extends Context.Tag("test/Replica")<Replica, ObjectBackend>() {}

type Limitation = "abortMultipart" | "copyContentType"

const contract = (
  name: string,
  stores: Layer.Layer<ObjectStore | Backend | Replica>,
  partSize: number,
  limitations: Partial<Record<Limitation, string>> = {}
) =>
  layer(stores, { timeout: "60 seconds" })(`ObjectStore over ${name}`, (it) => {
    /** Options for writing `size` bytes of bytesOf: what is known at the end is their sha256 and size. */
    const options = (started: Array<string>, size = 0) => ({
      contentType: "text/plain",
      metadata: { "file-id": "x" },
      onUploadStarted: (uploadId: string) => Effect.sync(() => void started.push(uploadId)),
      ended: Effect.sync(() => ({ sha256: sha256(bytesOf(size)), metadata: { size: String(size) } }))
    })
    const large = 2 * partSize + 12345

    it.effect("a small write is whole and visible; no multipart upload is announced", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const k = freshKey()
        const started: Array<string> = []
        yield* store.write(k, fromChunks(bytesOf(5000), 1000), options(started, 5000))
        const read = yield* readAll(store, k)
        expect(read.bytes).toEqual(bytesOf(5000))
        // The metadata known at the start, and what only the end could tell.
        expect([read.contentType, read.metadata]).toEqual(["text/plain", { "file-id": "x", size: "5000" }])
        expect(started).toEqual([])
      }))

    it.effect("a write larger than a part streams through one announced multipart upload and reads back exactly", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const k = freshKey()
        const started: Array<string> = []
        yield* store.write(k, fromChunks(bytesOf(large), 64 * 1024), options(started, large))
        expect(started).toHaveLength(1)
        const read = yield* readAll(store, k)
        expect([read.contentType, read.metadata]).toEqual(["text/plain", { "file-id": "x", size: String(large) }])
        expect(read.bytes.byteLength).toBe(large)
        expect(Buffer.from(read.bytes).equals(Buffer.from(bytesOf(large)))).toBe(true)
      }))

    it.effect("a write whose content breaks midway leaves nothing visible, and discard removes what it left", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const backend = yield* Backend
        const k = freshKey()
        const started: Array<string> = []
        expect(yield* Effect.flip(store.write(k, breaksAfter(partSize + 1000), options(started)))).toBe(
          "the source broke"
        )
        expect(started).toHaveLength(1)
        expect(yield* store.head(k)).toEqual(Option.none())
        const discarded = yield* Effect.either(store.discard(k, Option.none()))
        if (limitations.abortMultipart !== undefined) {
          expect(Either.isLeft(discarded), limitations.abortMultipart).toBe(true)
          return
        }
        expect(Either.isRight(discarded)).toBe(true)
        // The upload is gone: its parts can no longer become an object.
        const upload = { key: k, uploadId: started[0] ?? "" }
        expect(Either.isLeft(yield* Effect.either(backend.completeMultipart(upload, 1, textPlain)))).toBe(true)
        expect(yield* store.head(k)).toEqual(Option.none())
      }))

    it.effect("an interrupted write leaves nothing visible", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const k = freshKey()
        const announced = yield* Deferred.make<void>()
        const fiber = yield* Effect.fork(
          store.write(k, stallsAfter(partSize + 1000), {
            ...options([]),
            onUploadStarted: () => Deferred.succeed(announced, undefined)
          })
        )
        // The write has started its upload; it will wait for bytes that never come.
        yield* Deferred.await(announced)
        yield* Fiber.interrupt(fiber)
        expect(yield* store.head(k)).toEqual(Option.none())
        if (limitations.abortMultipart === undefined) yield* store.discard(k, Option.none())
      }))

    it.effect("discard removes a written object, and succeeds when there is nothing to remove", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const k = freshKey()
        yield* store.write(k, fromChunks(bytesOf(10), 10), options([], 10))
        yield* store.discard(k, Option.none())
        expect(yield* store.head(k)).toEqual(Option.none())
        yield* store.discard(k, Option.none())
      }))

    it.effect("discard aborts an upload another process started and recorded (the reconciler after a crash)", () =>
      Effect.gen(function*() {
        if (limitations.abortMultipart !== undefined) return
        const store = yield* ObjectStore
        const backend = yield* Backend
        const k = freshKey()
        const upload = yield* backend.createMultipart(k, { contentType: "text/plain", metadata: {} })
        yield* backend.uploadPart(upload, 1, bytesOf(partSize))
        yield* store.discard(k, Option.some(upload.uploadId))
        expect(Either.isLeft(yield* Effect.either(backend.completeMultipart(upload, 1, textPlain)))).toBe(true)
        expect(yield* store.head(k)).toEqual(Option.none())
      }))

    describe("resumable writes", () => {
      const started = { contentType: "application/octet-stream", metadata: { "file-id": "x" } }
      const final = (size: number) => ({ contentType: "text/plain", metadata: { "file-id": "x", size: String(size) } })
      const prefixOf = (key: ObjectKey) => key.slice(0, key.indexOf("/") + 1)
      const listed = (store: ObjectStore["Type"], prefix: string) =>
        Effect.map(Stream.runCollect(store.list(prefix)), Chunk.toReadonlyArray)
      /** Parts 1..n of `parts`, in order, each through the store `via` picks; their receipts. */
      const putParts = (
        via: (number: number) => ObjectStore["Type"],
        key: ObjectKey,
        uploadId: string,
        parts: ReadonlyArray<Uint8Array>
      ) =>
        Effect.forEach(parts, (bytes, index) => {
          const offset = parts.slice(0, index).reduce((sum, part) => sum + part.byteLength, 0)
          return via(index + 1).resumable.putPart(key, uploadId, { number: index + 1, offset, bytes })
        })

      it.effect("parts sent through any store complete through another: exact bytes, final type and metadata", () =>
        Effect.gen(function*() {
          const store = yield* ObjectStore
          const replica = toObjectStore(yield* Replica, { partSize })
          const k = freshKey()
          const parts = [partBytes(partSize, 1), partBytes(partSize, 2), partBytes(12345, 3)]
          const size = partSize * 2 + 12345
          const uploadId = yield* store.resumable.start(k, started)
          // Part 2 through the replica: no store needs to have seen the others.
          const receipts = yield* putParts((n) => n === 2 ? replica : store, k, uploadId, parts)
          // Nothing is visible before complete, through either.
          expect(yield* store.head(k)).toEqual(Option.none())
          expect(yield* replica.head(k)).toEqual(Option.none())
          expect(yield* listed(store, prefixOf(k))).toEqual([])
          // Receipts are strings the caller keeps: they go through its database as they are.
          const stored: Array<PartReceipt> = JSON.parse(JSON.stringify(receipts))
          yield* replica.resumable.complete(k, uploadId, stored, final(size))
          const read = yield* readAll(store, k)
          // The content type complete gave, but where the server's CopyObject keeps the original one.
          const contentType = limitations.copyContentType === undefined ? "text/plain" : started.contentType
          expect([read.size, read.contentType, read.metadata], limitations.copyContentType).toEqual([
            size,
            contentType,
            final(size).metadata
          ])
          expect(Buffer.from(read.bytes).equals(Buffer.from(concatBytes(parts)))).toBe(true)
          expect(yield* listed(replica, prefixOf(k))).toEqual([k])
        }))

      it.effect("a part sent again replaces the one before (the last sent wins), and drops the parts after it", () =>
        Effect.gen(function*() {
          const store = yield* ObjectStore
          const replica = toObjectStore(yield* Replica, { partSize })
          const k = freshKey()
          const uploadId = yield* store.resumable.start(k, started)
          const part = (number: number, offset: number, bytes: Uint8Array) => ({ number, offset, bytes })
          yield* store.resumable.putPart(k, uploadId, part(1, 0, partBytes(partSize, 1)))
          // Part 1 again, other bytes of the same size.
          const first = yield* replica.resumable.putPart(k, uploadId, part(1, 0, partBytes(partSize, 4)))
          yield* store.resumable.putPart(k, uploadId, part(2, partSize, partBytes(partSize, 2)))
          yield* store.resumable.putPart(k, uploadId, part(3, 2 * partSize, partBytes(1000, 3)))
          // Part 2 again, shorter, and last now: part 3 no longer counts.
          const second = yield* replica.resumable.putPart(k, uploadId, part(2, partSize, partBytes(777, 5)))
          yield* store.resumable.complete(k, uploadId, [first, second], final(partSize + 777))
          const read = yield* readAll(replica, k)
          expect(read.size).toBe(partSize + 777)
          expect(Buffer.from(read.bytes).equals(Buffer.from(concatBytes([partBytes(partSize, 4), partBytes(777, 5)]))))
            .toBe(true)
        }))

      it.effect("completing with a malformed receipt, or receipts out of order, fails and shows nothing", () =>
        Effect.gen(function*() {
          const store = yield* ObjectStore
          const replica = toObjectStore(yield* Replica, { partSize })
          const k = freshKey()
          const parts = [partBytes(partSize, 1), partBytes(100, 2)]
          const uploadId = yield* store.resumable.start(k, started)
          const [r1 = "", r2 = ""] = yield* putParts(() => store, k, uploadId, parts)
          const refusals = [["not a receipt", r2], ["{}", r2], [r1, r2.slice(0, -1)], [r2, r1], [r2], []]
          for (const receipts of refusals) {
            const failure = yield* Effect.flip(replica.resumable.complete(k, uploadId, receipts, final(0)))
            expect(failure._tag, JSON.stringify(receipts)).toBe("ObjectStoreUnavailable")
            expect(yield* store.head(k)).toEqual(Option.none())
          }
          // The upload is still whole: its true receipts complete it.
          yield* replica.resumable.complete(k, uploadId, [r1, r2], final(partSize + 100))
          const read = yield* readAll(store, k)
          expect(Buffer.from(read.bytes).equals(Buffer.from(concatBytes(parts)))).toBe(true)
        }))

      it.effect("discard with the upload's id, after some parts, leaves nothing", () =>
        Effect.gen(function*() {
          const store = yield* ObjectStore
          const replica = toObjectStore(yield* Replica, { partSize })
          const k = freshKey()
          const uploadId = yield* store.resumable.start(k, started)
          const receipts = yield* putParts(() => store, k, uploadId, [partBytes(partSize, 1), partBytes(partSize, 2)])
          // Through the replica: whoever discards needs only the id the caller recorded.
          const discarded = yield* Effect.either(replica.discard(k, Option.some(uploadId)))
          expect(yield* listed(store, prefixOf(k))).toEqual([])
          if (limitations.abortMultipart !== undefined) {
            expect(Either.isLeft(discarded), limitations.abortMultipart).toBe(true)
            return
          }
          expect(Either.isRight(discarded)).toBe(true)
          // No upload remains: it takes no more parts, and what it had can no longer become an object.
          const more = { number: 3, offset: 2 * partSize, bytes: partBytes(10, 3) }
          expect(Either.isLeft(yield* Effect.either(store.resumable.putPart(k, uploadId, more)))).toBe(true)
          const completed = yield* Effect.either(store.resumable.complete(k, uploadId, receipts, final(2 * partSize)))
          expect(Either.isLeft(completed)).toBe(true)
          expect(yield* store.head(k)).toEqual(Option.none())
          expect(yield* listed(replica, prefixOf(k))).toEqual([])
        }))
    })
  })

/** A backend and the port over it, sharing it, and a replica of the backend (see Replica). */
const over = (
  backends: Effect.Effect<{ readonly backend: ObjectBackend; readonly replica: ObjectBackend }, never, Scope.Scope>,
  partSize: number
) =>
  Backends.objectStore(partSize).pipe(Layer.provideMerge(Layer.scopedContext(Effect.map(
    backends,
    ({ backend, replica }) => Context.make(Backend, backend).pipe(Context.add(Replica, replica))
  ))))

const memory = Effect.map(MemoryObjectStore.makeBackend, (backend) => ({ backend, replica: backend }))

/** Two backends on one fresh directory. */
const localDisk = Effect.gen(function*() {
  const directory = yield* TempDirectory.make("objects")
  const backend = yield* Effect.orDie(LocalDiskObjectStore.makeBackend(directory))
  const replica = yield* Effect.orDie(LocalDiskObjectStore.makeBackend(directory))
  return { backend, replica }
})

/** Two clients of one fresh server. */
const s3 = (settings: Effect.Effect<S3Settings, never, Scope.Scope>) =>
  Effect.gen(function*() {
    const server = yield* settings
    const backend = yield* S3ObjectStore.makeBackend(server)
    const replica = yield* S3ObjectStore.makeBackend(server)
    return { backend, replica }
  })

contract("memory", over(memory, 64 * 1024), 64 * 1024)
contract("local disk", over(localDisk, 64 * 1024), 64 * 1024)
contract("S3 (fauxqs)", over(s3(FauxqsTestServer.settings), S3_PART), S3_PART, {
  copyContentType: "fauxqs 1.9.2's CopyObject keeps the source's content type, even with MetadataDirective REPLACE"
})
contract("S3 (s3rver)", over(s3(S3TestServer.settings), S3_PART), S3_PART, {
  abortMultipart: "s3rver 3.7 answers AbortMultipartUpload with 405"
})
