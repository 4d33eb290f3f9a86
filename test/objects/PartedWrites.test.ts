import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck as fc, Option } from "effect"
import { createHash } from "node:crypto"
import * as MemoryObjectStore from "../../src/adapters/objects/MemoryObjectStore.js"
import { concatBytes, cutParts, type ObjectBackend, toObjectStore } from "../../src/adapters/objects/ObjectBackend.js"
import { ObjectKey } from "../../src/domain/FileRecord.js"
import type { ContentBatch, ContentReader } from "../../src/ports/ContentReader.js"
import { readAll } from "../support/ReadAll.js"

/** A reader that hands out the given batches, whatever size is asked for, as a socket would. */
const textPlain = { contentType: "text/plain", metadata: {} }
const scripted = (batches: ReadonlyArray<ReadonlyArray<Uint8Array>>): ContentReader<never> => {
  let next = 0
  return {
    read: () =>
      Effect.sync((): ContentBatch => {
        const chunks = batches[next] ?? []
        next += 1
        return { chunks, ended: next >= batches.length }
      })
  }
}

const chunk = fc.uint8Array({ minLength: 1, maxLength: 40 })

describe("cutParts", () => {
  it.effect.prop(
    "parts rebuild the content; all but the last have exactly partSize bytes",
    [
      fc.array(chunk, { maxLength: 5 }),
      fc.array(fc.array(chunk, { maxLength: 4 }), { minLength: 1, maxLength: 8 }),
      fc.integer({ min: 1, max: 64 })
    ],
    ([pending, batches, partSize]) =>
      Effect.gen(function*() {
        const nextPart = cutParts(scripted(batches), partSize, [...pending])
        const parts: Array<Uint8Array> = []
        for (let last = false; !last;) {
          const part = yield* nextPart
          last = part.last
          parts.push(part.bytes.slice()) // the buffer is reused by the next part
        }
        expect(concatBytes(parts)).toEqual(concatBytes([...pending, ...batches.flat()]))
        for (const part of parts.slice(0, -1)) expect(part.byteLength).toBe(partSize)
        expect((parts.at(-1) ?? new Uint8Array()).byteLength).toBeLessThanOrEqual(partSize)
      })
  )

  it.effect("a failed read stops the parts", () =>
    Effect.gen(function*() {
      let reads = 0
      const failing: ContentReader<string> = {
        read:
          () => (reads++ === 0 ? Effect.succeed({ chunks: [Uint8Array.of(1, 2)], ended: false }) : Effect.fail("bad"))
      }
      const nextPart = cutParts(failing, 2, [])
      expect((yield* nextPart).bytes).toEqual(Uint8Array.of(1, 2))
      expect(yield* Effect.flip(nextPart)).toBe("bad")
    }))
})

/** A memory backend that logs every call it gets, with the part sizes. */
const recorded = Effect.gen(function*() {
  const inner = yield* MemoryObjectStore.makeBackend
  const calls: Array<string> = []
  const backend: ObjectBackend = {
    ...inner,
    put: (key, bytes, options) =>
      Effect.zipRight(Effect.sync(() => calls.push(`put ${bytes.byteLength}`)), inner.put(key, bytes, options)),
    createMultipart: (key, options) =>
      Effect.zipRight(Effect.sync(() => calls.push("create")), inner.createMultipart(key, options)),
    uploadPart: (upload, n, bytes) =>
      Effect.zipRight(
        Effect.sync(() => calls.push(`part ${n} ${bytes.byteLength}`)),
        inner.uploadPart(upload, n, bytes)
      ),
    completeMultipart: (upload, parts, options) =>
      Effect.zipRight(
        Effect.sync(() => calls.push(`complete ${parts}`)),
        inner.completeMultipart(upload, parts, options)
      ),
    abortMultipart: (upload) => Effect.zipRight(Effect.sync(() => calls.push("abort")), inner.abortMultipart(upload)),
    delete: (key) => Effect.zipRight(Effect.sync(() => calls.push("delete")), inner.delete(key))
  }
  return { backend, calls }
})

const k = ObjectKey.make("files/a")
const bytesOf = (size: number) => Uint8Array.from({ length: size }, (_, i) => i % 251)
/** Content in chunks of `chunkSize`, one chunk per read. */
const inChunks = (bytes: Uint8Array, chunkSize: number) =>
  scripted(
    Array.from(
      { length: Math.ceil(bytes.byteLength / chunkSize) },
      (_, i) => [bytes.subarray(i * chunkSize, (i + 1) * chunkSize)]
    )
  )

describe("toObjectStore: how a backend is written", () => {
  /** What is known at the start, and once `bytes` have all been read. */
  const options = (started: Array<string>, bytes: Uint8Array = new Uint8Array()) => ({
    contentType: "text/plain",
    metadata: { a: "b" },
    onUploadStarted: (id: string) => Effect.sync(() => void started.push(id)),
    ended: Effect.sync(() => ({ sha256: createHash("sha256").update(bytes).digest("hex"), metadata: { c: "d" } }))
  })

  it.effect("content that ends within a part is one put, and no multipart upload is announced", () =>
    Effect.gen(function*() {
      const { backend, calls } = yield* recorded
      const store = toObjectStore(backend, { partSize: 100 })
      const started: Array<string> = []
      yield* store.write(k, inChunks(bytesOf(100), 30), options(started, bytesOf(100)))
      expect(calls).toEqual(["put 100"])
      expect(started).toEqual([])
      expect((yield* readAll(store, k)).bytes).toEqual(bytesOf(100))
    }))

  it.effect("larger content is announced before its first part, then cut into equal parts", () =>
    Effect.gen(function*() {
      const { backend, calls } = yield* recorded
      const store = toObjectStore(backend, { partSize: 100 })
      const started: Array<string> = []
      const announce = (id: string) => Effect.sync(() => void started.push(`${id} after ${calls.length} call(s)`))
      yield* store.write(k, inChunks(bytesOf(250), 30), { ...options([], bytesOf(250)), onUploadStarted: announce })
      expect(calls).toEqual(["create", "part 1 100", "part 2 100", "part 3 50", "complete 3"])
      expect(started).toHaveLength(1)
      expect(started[0]).toMatch(/after 1 call\(s\)$/)
      const read = yield* readAll(store, k)
      expect(read.bytes).toEqual(bytesOf(250))
      // What is known only at the end joins the metadata as the upload completes.
      expect([read.contentType, read.metadata]).toEqual(["text/plain", { a: "b", c: "d" }])
    }))

  it.effect("a write that fails midway leaves nothing visible; discard aborts the upload it left, unasked", () =>
    Effect.gen(function*() {
      const { backend, calls } = yield* recorded
      const store = toObjectStore(backend, { partSize: 100 })
      let reads = 0
      const breaks: ContentReader<string> = {
        read: () => reads++ < 5 ? Effect.succeed({ chunks: [bytesOf(30)], ended: false }) : Effect.fail("broken")
      }
      const started: Array<string> = []
      expect(yield* Effect.flip(store.write(k, breaks, options(started)))).toBe("broken")
      expect(yield* store.head(k)).toEqual(Option.none())
      yield* store.discard(k, Option.none())
      expect(calls).toEqual(["create", "part 1 100", "abort", "delete"])
      // The upload is gone: it can no longer be completed.
      const upload = { key: k, uploadId: started[0] ?? "" }
      expect(Either.isLeft(yield* Effect.either(backend.completeMultipart(upload, 1, textPlain)))).toBe(true)
    }))

  it.effect("a failed announcement fails the write before any part is sent", () =>
    Effect.gen(function*() {
      const { backend, calls } = yield* recorded
      const store = toObjectStore(backend, { partSize: 100 })
      const error = yield* Effect.flip(
        store.write(k, inChunks(bytesOf(250), 30), {
          ...options([]),
          onUploadStarted: () => Effect.fail("not recorded")
        })
      )
      expect(error).toBe("not recorded")
      expect(calls).toEqual(["create"])
    }))

  it.effect("discard aborts an upload it is told of (one a crashed process recorded), then deletes the object", () =>
    Effect.gen(function*() {
      const { backend, calls } = yield* recorded
      const store = toObjectStore(backend, { partSize: 100 })
      const upload = yield* backend.createMultipart(k, { contentType: "text/plain", metadata: {} })
      yield* store.discard(k, Option.some(upload.uploadId))
      expect(calls).toEqual(["create", "abort", "delete"])
      expect(Either.isLeft(yield* Effect.either(backend.uploadPart(upload, 1, bytesOf(1))))).toBe(true)
      // Nothing to remove is no failure.
      yield* store.discard(ObjectKey.make("files/none"), Option.none())
    }))
})
