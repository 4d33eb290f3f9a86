/**
 * The ObjectStore port as the workflow sees it, the same over every store: writes
 * of any size from a content reader, what a failed or interrupted write leaves,
 * and discard. (How each backend behaves beneath it: ObjectBackend.contract.test.ts.)
 */
import { expect, layer } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, Option } from "effect"
import { createHash, randomUUID } from "node:crypto"
import * as S3ObjectStore from "../src/adapters/objects/S3ObjectStore.js"
import { ObjectKey } from "../src/domain/FileRecord.js"
import type { ContentReader } from "../src/ports/ContentReader.js"
import { ObjectStore } from "../src/ports/ObjectStore.js"
import { Backend } from "./support/Backends.js"
import * as Backends from "./support/Backends.js"
import { fromChunks } from "./support/Content.js"
import * as FauxqsTestServer from "./support/FauxqsTestServer.js"
import { readAll } from "./support/ReadAll.js"
import * as S3TestServer from "./support/S3TestServer.js"

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

type Limitation = "abortMultipart"

const contract = (
  name: string,
  stores: Layer.Layer<ObjectStore | Backend>,
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
  })

/** A backend and the port over it, sharing it. */
const over = (backend: Layer.Layer<Backend>, partSize: number) =>
  Backends.objectStore(partSize).pipe(Layer.provideMerge(backend))

const s3 = (settings: typeof S3TestServer.settings) =>
  Layer.scoped(Backend, Effect.flatMap(settings, S3ObjectStore.makeBackend))

contract("memory", over(Backends.memory, 64 * 1024), 64 * 1024)
contract("local disk", over(Backends.localDisk, 64 * 1024), 64 * 1024)
contract("S3 (fauxqs)", over(s3(FauxqsTestServer.settings), S3_PART), S3_PART)
contract("S3 (s3rver)", over(s3(S3TestServer.settings), S3_PART), S3_PART, {
  abortMultipart: "s3rver 3.7 answers AbortMultipartUpload with 405"
})
