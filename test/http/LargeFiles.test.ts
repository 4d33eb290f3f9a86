import { describe, expect, layer } from "@effect/vitest"
import { DateTime, Effect, Fiber, Layer } from "effect"
import { createHash } from "node:crypto"
import * as PgFileRepository from "../../src/adapters/database/PgFileRepository.js"
import { Reconciler } from "../../src/app/Reconciler.js"
import * as UploadSettings from "../../src/app/UploadSettings.js"
import {
  FileId,
  FileName,
  FileRecord,
  LOCAL_OWNER,
  MediaType,
  ObjectKey,
  Sha256Hex
} from "../../src/domain/FileRecord.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import { FileRepository, noQuota } from "../../src/ports/FileRepository.js"
import * as Backends from "../support/Backends.js"
import * as FaultInjection from "../support/FaultInjection.js"
import { rawRequest, request } from "../support/Http.js"
import { snapshot } from "../support/Snapshot.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestServer from "../support/TestServer.js"

const textPlain = { contentType: "text/plain", metadata: {} }
const MiB = 1024 * 1024
const maxBytes = 16 * MiB
const partSize = 5 * MiB

const settings = UploadSettings.layer({
  policy: new UploadPolicy({ minBytes: 512, maxBytes, contentTypes: ["text/plain"], extensions: ["txt"] }),
  keyPrefix: TestServer.testPrefix,
  quota: noQuota
})

/**
 * `size` bytes of ASCII text in 64 KiB chunks, generated as sent; `poison` puts an
 * invalid UTF-8 byte there; `stallAfter` stops sending (without ending) after that many bytes.
 */
const textChunks = (size: number, options: { readonly poison?: number; readonly stallAfter?: number } = {}) => {
  const chunkSize = 64 * 1024
  return async function*() {
    for (let offset = 0; offset < size; offset += chunkSize) {
      if (options.stallAfter !== undefined && offset >= options.stallAfter) {
        // The client stops sending and never finishes: the test hangs up on it.
        await new Promise(() => undefined)
      }
      const chunk = new Uint8Array(Math.min(chunkSize, size - offset))
      for (let i = 0; i < chunk.length; i++) chunk[i] = 0x61 + ((offset + i) % 26)
      if (options.poison !== undefined && options.poison >= offset && options.poison < offset + chunk.length) {
        chunk[options.poison - offset] = 0xff
      }
      yield chunk
    }
  }
}

const expectedSha256 = async (size: number) => {
  const hash = createHash("sha256")
  for await (const chunk of textChunks(size)()) hash.update(chunk)
  return hash.digest("hex")
}

const boundary = "large-file-boundary"
const encoder = new TextEncoder()

/** A multipart body around `content`, sent chunked (no Content-Length), as a streaming client does. */
const multipartUpload = (base: string, content: () => AsyncIterable<Uint8Array>) =>
  rawRequest(`${base}/files`, {
    method: "POST",
    headers: { "content-type": `multipart/form-data; boundary=${boundary}`, "transfer-encoding": "chunked" },
    body: (async function*() {
      yield encoder.encode(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n` +
          "Content-Type: text/plain\r\n\r\n"
      )
      yield* content()
      yield encoder.encode(`\r\n--${boundary}--\r\n`)
    })()
  })

/** Nothing left: no file, no intent, no object (see Snapshot.ts). */
const expectNothingLeft = Effect.map(snapshot, (found) => {
  expect(found).toEqual({ objects: [], files: [], intents: [] })
})

const describeLargeFiles = <E>(
  name: string,
  backend: Layer.Layer<Backends.Backend>,
  repository: Layer.Layer<FileRepository, E>
) =>
  layer(
    Reconciler.Default.pipe(
      Layer.provideMerge(
        TestServer.layerWith(FaultInjection.layer(Layer.merge(backend, repository), { partSize }), settings)
      ),
      Layer.provide(settings)
    ),
    { excludeTestServices: true, timeout: 120_000 }
  )(`large files over ${name}`, (it) => {
    it.effect("a 12 MiB file streams through a multipart upload and reads back whole and by range", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const plan = yield* FaultInjection.FaultPlan
        yield* plan.clear
        const size = 12 * MiB + 12345
        const created = yield* multipartUpload(base, textChunks(size))
        expect(created.status).toBe(201)
        const { id, sha256 } = created.json as { id: string; sha256: string; size: number }
        expect(created.json).toMatchObject({ size })
        expect(sha256).toBe(yield* Effect.promise(() => expectedSha256(size)))
        const calls = yield* plan.calls
        expect(calls.filter((call) => call === "store.uploadPart")).toHaveLength(3)
        expect(calls).toContain("store.completeMultipart")

        const whole = yield* request(`${base}/files/${id}/content`)
        expect(whole.status).toBe(200)
        expect(createHash("sha256").update(whole.bytes).digest("hex")).toBe(sha256)

        const start = 10 * MiB + 7
        const part = yield* request(`${base}/files/${id}/content`, {
          headers: { range: `bytes=${start}-${start + 99}` }
        })
        expect(part.status).toBe(206)
        expect(part.headers.get("content-range")).toBe(`bytes ${start}-${start + 99}/${size}`)
        expect(part.bytes).toEqual(whole.bytes.subarray(start, start + 100))
        const suffix = yield* request(`${base}/files/${id}/content`, { headers: { range: "bytes=-10" } })
        expect(suffix.status).toBe(206)
        expect(suffix.bytes).toEqual(whole.bytes.subarray(size - 10))
        const outside = yield* request(`${base}/files/${id}/content`, { headers: { range: `bytes=${size}-` } })
        expect(outside.status).toBe(416)
        expect(outside.headers.get("content-range")).toBe(`bytes */${size}`)
        expect((yield* request(`${base}/files/${id}`, { method: "DELETE" })).status).toBe(204)
        yield* expectNothingLeft
      }))

    it.effect("bad UTF-8 at 11 MiB aborts the multipart upload: 422, nothing left", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const plan = yield* FaultInjection.FaultPlan
        yield* plan.clear
        const response = yield* multipartUpload(base, textChunks(14 * MiB, { poison: 11 * MiB + 3 }))
        expect(response.status).toBe(422)
        expect(response.json).toMatchObject({ error: "NotUtf8" })
        expect(yield* plan.calls).toContain("store.abortMultipart")
        yield* expectNothingLeft
      }))

    it.effect("a file that grows past the maximum mid-stream aborts: 413, nothing left", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const plan = yield* FaultInjection.FaultPlan
        yield* plan.clear
        const response = yield* multipartUpload(base, textChunks(maxBytes + 40 * MiB))
        expect(response.status).toBe(413)
        expect(response.json).toMatchObject({ error: "FileTooLarge" })
        // The refusal is read by the client; the rest of the body is not (a bounded drain, then the cut).
        expect(response.sent).toBeLessThan(maxBytes + 40 * MiB)
        expect(yield* plan.calls).toContain("store.abortMultipart")
        yield* expectNothingLeft
      }))

    it.effect("a client that disconnects mid-stream leaves nothing behind", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const plan = yield* FaultInjection.FaultPlan
        yield* plan.clear
        const sending = yield* Effect.fork(multipartUpload(base, textChunks(12 * MiB, { stallAfter: 7 * MiB })))
        // The first part is on its way when the client stops sending; then it hangs up.
        yield* plan.reached("store.uploadPart")
        yield* Fiber.interrupt(sending)
        // The request's fiber notices the closed socket and compensates, the intent last.
        yield* plan.reached("repo.remove")
        expect(yield* plan.calls).toContain("store.abortMultipart")
        yield* expectNothingLeft
      }))

    it.effect("after a crash mid-stream, the reconciler aborts the multipart upload recorded with the intent", () =>
      Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        const backend = yield* Backends.Backend
        const repository = yield* FileRepository
        const reconciler = yield* Reconciler
        // What a process killed after its first part leaves: an intent naming the upload, a part, no object.
        const id = FileId.make(crypto.randomUUID())
        const record = new FileRecord({
          id,
          owner: LOCAL_OWNER,
          name: FileName.make("crashed.txt"),
          size: 0,
          contentType: MediaType.make("text/plain"),
          sha256: Sha256Hex.make("0".repeat(64)),
          objectKey: ObjectKey.make(`${TestServer.testPrefix}${id}`),
          // A minute ago: older than a grace period of 0.
          createdAt: DateTime.subtract(yield* DateTime.now, { minutes: 1 })
        })
        yield* repository.insertPending(record)
        const upload = yield* backend.createMultipart(record.objectKey, { contentType: "text/plain", metadata: {} })
        yield* repository.recordMultipart(id, upload.uploadId)
        yield* backend.uploadPart(upload, 1, new Uint8Array(partSize).fill(0x61))
        yield* plan.clear
        const report = yield* reconciler.pass({ dryRun: false, grace: 0, maxOrphans: 1000 })
        expect(report.abandonedUploads).toEqual([record.objectKey])
        expect(yield* plan.calls).toContain("store.abortMultipart")
        // The upload is gone: it can no longer be completed into an object.
        const completed = yield* Effect.either(backend.completeMultipart(upload, 1, textPlain))
        expect(completed._tag).toBe("Left")
        yield* expectNothingLeft
      }).pipe(Effect.orDie))
  })

describe("large files", () => {
  describeLargeFiles(
    "local disk and embedded PGlite",
    Backends.localDisk,
    PgFileRepository.layer.pipe(Layer.provide(TestDatabase.embeddedLayer))
  )
  describeLargeFiles(
    "S3 (fauxqs) and PostgreSQL",
    Backends.fauxqs,
    PgFileRepository.layer.pipe(Layer.provide(TestDatabase.layer))
  )
})
