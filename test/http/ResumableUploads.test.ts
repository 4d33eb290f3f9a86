import { describe, expect, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as PgFileRepository from "../../src/adapters/database/PgFileRepository.js"
import * as MemoryObjectStore from "../../src/adapters/objects/MemoryObjectStore.js"
import { Reconciler } from "../../src/app/Reconciler.js"
import * as UploadSettings from "../../src/app/UploadSettings.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import type { FileRepository } from "../../src/ports/FileRepository.js"
import { noQuota } from "../../src/ports/FileRepository.js"
import type { ObjectStore } from "../../src/ports/ObjectStore.js"
import * as FauxqsTestServer from "../support/FauxqsTestServer.js"
import { request, textOfSize } from "../support/Http.js"
import { expectSettled, snapshot } from "../support/Snapshot.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestServer from "../support/TestServer.js"

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
const base64 = (text: string) => Buffer.from(text, "utf8").toString("base64")

const TUS = { "tus-resumable": "1.0.0" }
const metadata = (name: string, type = "text/plain") => `filename ${base64(name)},filetype ${base64(type)}`

/** The expiry the tests run with: short, so one can be watched to pass. */
const EXPIRY = Duration.seconds(2)

const settingsFor = (partSize: number) =>
  UploadSettings.layer({
    policy: new UploadPolicy({
      minBytes: 512,
      maxBytes: 64 * 1024 ** 2,
      contentTypes: ["text/plain"],
      extensions: ["txt"]
    }),
    keyPrefix: TestServer.testPrefix,
    quota: noQuota,
    resumable: { expiry: EXPIRY, partSize }
  })

const create = (base: string, length: number, name = "notes.txt", headers: Record<string, string> = {}) =>
  request(`${base}/uploads`, {
    method: "POST",
    headers: { ...TUS, "upload-length": String(length), "upload-metadata": metadata(name), ...headers }
  })

const patch = (url: string, offset: number, bytes: Uint8Array, headers: Record<string, string> = {}) =>
  request(url, {
    method: "PATCH",
    headers: {
      ...TUS,
      "content-type": "application/offset+octet-stream",
      "upload-offset": String(offset),
      ...headers
    },
    body: bytes
  })

/** HEAD: its headers (a HEAD response has no body, even an error's). */
const head = (url: string) =>
  Effect.promise(() => fetch(url, { method: "HEAD", headers: TUS })).pipe(
    Effect.map((response) => ({ status: response.status, headers: response.headers }))
  )

/** The upload's URL from a creation's Location. */
const urlOf = (base: string, created: { readonly headers: Headers }) => `${base}${created.headers.get("location")}`

const settled = Effect.map(snapshot, expectSettled)

/** Bytes that are valid UTF-8 wherever they are cut, with multibyte characters across every boundary. */
const text = (size: number) => textOfSize(size, "héllo wörld – ünïcode ")

export const describeResumable = <E>(
  backend: string,
  stores: Layer.Layer<ObjectStore | FileRepository, E>,
  partSize: number
) =>
  layer(
    Reconciler.Default.pipe(Layer.provideMerge(TestServer.layerWith(stores, settingsFor(partSize)))),
    { timeout: 120_000, excludeTestServices: true }
  )(`tus over ${backend}`, (it) => {
    it.effect("OPTIONS advertises tus 1.0.0, its extensions, the maximum size and the checksums", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const options = yield* request(`${base}/uploads`, { method: "OPTIONS" })
        expect(options.status).toBe(204)
        expect(options.headers.get("tus-version")).toBe("1.0.0")
        expect(options.headers.get("tus-resumable")).toBe("1.0.0")
        expect(options.headers.get("tus-extension")?.split(",").sort()).toEqual(
          ["checksum", "creation", "creation-with-upload", "expiration", "termination"]
        )
        expect(options.headers.get("tus-max-size")).toBe(String(64 * 1024 ** 2))
        expect(options.headers.get("tus-checksum-algorithm")).toBe("sha1,sha256")
      }))

    it.effect("an upload in PATCHes across part boundaries becomes a file: same bytes, sha256, nothing else left", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = text(2 * partSize + 12_345)
        const created = yield* create(base, bytes.byteLength)
        expect(created.status).toBe(201)
        expect(created.headers.get("upload-offset")).toBe("0")
        expect(Date.parse(created.headers.get("upload-expires") ?? "")).toBeGreaterThan(Date.now())
        const url = urlOf(base, created)
        // Cuts that fall inside multibyte characters, a part boundary inside a PATCH, and one exactly on one.
        const cuts = [0, 1001, partSize - 7, partSize, 2 * partSize + 5, bytes.byteLength]
        let location: string | null = null
        for (let i = 0; i + 1 < cuts.length; i++) {
          const from = cuts[i] ?? 0
          const to = cuts[i + 1] ?? 0
          const response = yield* patch(url, from, bytes.subarray(from, to))
          expect(response.status).toBe(204)
          expect(response.headers.get("upload-offset")).toBe(String(to))
          location = response.headers.get("location")
          if (to < bytes.byteLength) {
            const status = yield* head(url)
            expect(status.status).toBe(200)
            expect(status.headers.get("upload-offset")).toBe(String(to))
            expect(status.headers.get("upload-length")).toBe(String(bytes.byteLength))
            expect(status.headers.get("cache-control")).toBe("no-store")
            // Not a file until the last byte.
            expect((yield* request(`${base}/files/${url.split("/").pop()}`)).status).toBe(404)
          }
        }
        const id = url.split("/").pop()
        expect(location).toBe(`/files/${id}`)
        const file = yield* request(`${base}/files/${id}`)
        expect(file.status).toBe(200)
        expect(file.json).toMatchObject({ id, name: "notes.txt", size: bytes.byteLength, sha256: sha256(bytes) })
        const content = yield* request(`${base}/files/${id}/content`)
        expect(sha256(content.bytes)).toBe(sha256(bytes))
        // A finished upload reports its whole length: a client resuming it knows it is done.
        const done = yield* head(url)
        expect(done.status).toBe(200)
        expect(done.headers.get("upload-offset")).toBe(String(bytes.byteLength))
        expect(yield* settled).toEqual({ intents: [], strayObjects: [] })
        expect((yield* request(`${base}/files/${id}`, { method: "DELETE" })).status).toBe(204)
        // Counted by request and outcome.
        const metrics = new TextDecoder().decode((yield* request(`${base}/metrics`)).bytes)
        expect(metrics).toMatch(/tandem_resumable_requests_total\{[^}]*outcome="finished"[^}]*\} [1-9]/)
        expect(metrics).toMatch(/tandem_resumable_requests_total\{[^}]*request="create"[^}]*\} [1-9]/)
      }))

    it.effect("creation-with-upload: the POST's body is the first PATCH", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = text(4096)
        const created = yield* request(`${base}/uploads`, {
          method: "POST",
          headers: {
            ...TUS,
            "upload-length": String(bytes.byteLength),
            "upload-metadata": metadata("whole.txt"),
            "content-type": "application/offset+octet-stream"
          },
          body: bytes
        })
        expect(created.status).toBe(201)
        expect(created.headers.get("upload-offset")).toBe(String(bytes.byteLength))
        const id = created.headers.get("location")?.split("/").pop()
        const file = yield* request(`${base}/files/${id}`)
        expect(file.json).toMatchObject({ name: "whole.txt", size: 4096, sha256: sha256(bytes) })
        expect((yield* request(`${base}/files/${id}`, { method: "DELETE" })).status).toBe(204)
      }))

    it.effect("POST is validated as POST /files is, before any byte: same status, same JSON", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const tooLarge = yield* create(base, 64 * 1024 ** 2 + 1)
        expect(tooLarge.status).toBe(413)
        expect(tooLarge.json).toMatchObject({ error: "FileTooLarge" })
        const tooSmall = yield* create(base, 100)
        expect(tooSmall.status).toBe(422)
        expect(tooSmall.json).toMatchObject({ error: "FileTooSmall" })
        const extension = yield* create(base, 1000, "notes.exe")
        expect(extension.status).toBe(422)
        expect(extension.json).toMatchObject({ error: "ExtensionNotAllowed" })
        const type = yield* request(`${base}/uploads`, {
          method: "POST",
          headers: { ...TUS, "upload-length": "1000", "upload-metadata": metadata("a.txt", "image/png") }
        })
        expect(type.status).toBe(415)
        expect(type.json).toMatchObject({ error: "ContentTypeNotAllowed" })
        const noVersion = yield* request(`${base}/uploads`, { method: "POST", headers: { "upload-length": "1000" } })
        expect(noVersion.status).toBe(412)
        expect(noVersion.json).toMatchObject({ error: "TusVersionUnsupported" })
        const noLength = yield* request(`${base}/uploads`, { method: "POST", headers: TUS })
        expect(noLength.status).toBe(400)
        expect(noLength.json).toMatchObject({ error: "InvalidHeader" })
        const badMetadata = yield* create(base, 1000, "a.txt", { "upload-metadata": "filename ***" })
        expect(badMetadata.status).toBe(400)
        expect(yield* settled).toEqual({ intents: [], strayObjects: [] })
      }))

    it.effect("a wrong offset gets 409 and changes nothing; offsets never go backwards", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = text(3000)
        const url = urlOf(base, yield* create(base, bytes.byteLength))
        expect((yield* patch(url, 0, bytes.subarray(0, 1000))).status).toBe(204)
        for (const offset of [0, 999, 1001, 5000]) {
          const wrong = yield* patch(url, offset, bytes.subarray(offset, offset + 10))
          expect(wrong.status).toBe(409)
          expect(wrong.json).toMatchObject({ error: "OffsetMismatch" })
        }
        expect((yield* head(url)).headers.get("upload-offset")).toBe("1000")
        expect((yield* request(url, { method: "DELETE", headers: TUS })).status).toBe(204)
      }))

    it.effect("a checksum mismatch gets 460 and the PATCH's bytes are dropped; a matching one is kept", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = text(partSize + 3000)
        const url = urlOf(base, yield* create(base, bytes.byteLength))
        const first = bytes.subarray(0, partSize + 1000)
        const wrong = yield* patch(url, 0, first, {
          "upload-checksum": `sha256 ${createHash("sha256").update("other bytes").digest("base64")}`
        })
        expect(wrong.status).toBe(460)
        expect(wrong.json).toMatchObject({ error: "ChecksumMismatch" })
        expect((yield* head(url)).headers.get("upload-offset")).toBe("0")
        const right = yield* patch(url, 0, first, {
          "upload-checksum": `sha1 ${createHash("sha1").update(first).digest("base64")}`
        })
        expect(right.status).toBe(204)
        expect(right.headers.get("upload-offset")).toBe(String(first.byteLength))
        const unsupported = yield* patch(url, first.byteLength, bytes.subarray(first.byteLength), {
          "upload-checksum": "md5 AAAAAAAAAAAAAAAAAAAAAA=="
        })
        expect(unsupported.status).toBe(400)
        const end = yield* patch(url, first.byteLength, bytes.subarray(first.byteLength), {
          "upload-checksum": `sha256 ${createHash("sha256").update(bytes.subarray(first.byteLength)).digest("base64")}`
        })
        expect(end.status).toBe(204)
        const id = url.split("/").pop()
        expect((yield* request(`${base}/files/${id}`)).json).toMatchObject({ sha256: sha256(bytes) })
        expect((yield* request(`${base}/files/${id}`, { method: "DELETE" })).status).toBe(204)
      }))

    it.effect("bad UTF-8 in the third PATCH: 422 NotUtf8, the upload is terminated, nothing is left", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = text(partSize + 5000)
        bytes[partSize + 2000] = 0xff
        const url = urlOf(base, yield* create(base, bytes.byteLength))
        expect((yield* patch(url, 0, bytes.subarray(0, 1000))).status).toBe(204)
        expect((yield* patch(url, 1000, bytes.subarray(1000, partSize + 1000))).status).toBe(204)
        const third = yield* patch(url, partSize + 1000, bytes.subarray(partSize + 1000))
        expect(third.status).toBe(422)
        expect(third.json).toMatchObject({ error: "NotUtf8" })
        expect((yield* head(url)).status).toBe(404)
        expect(yield* settled).toEqual({ intents: [], strayObjects: [] })
      }))

    it.effect("a PATCH past Upload-Length: 413, the upload is terminated", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = text(2000)
        const url = urlOf(base, yield* create(base, 1500))
        const over = yield* patch(url, 0, bytes)
        expect(over.status).toBe(413)
        expect(over.json).toMatchObject({ error: "FileTooLarge" })
        expect((yield* head(url)).status).toBe(404)
        expect(yield* settled).toEqual({ intents: [], strayObjects: [] })
      }))

    it.effect("termination: DELETE removes the upload and all it stored", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = text(partSize + 100)
        const url = urlOf(base, yield* create(base, bytes.byteLength + 5000))
        expect((yield* patch(url, 0, bytes)).status).toBe(204)
        const deleted = yield* request(url, { method: "DELETE", headers: TUS })
        expect(deleted.status).toBe(204)
        expect((yield* head(url)).status).toBe(404)
        expect((yield* patch(url, bytes.byteLength, text(10))).status).toBe(404)
        expect(yield* settled).toEqual({ intents: [], strayObjects: [] })
      }))

    it.effect("expiry: an idle upload expires (404), and the reconciler removes its intent, parts and tail", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = text(partSize + 100)
        const url = urlOf(base, yield* create(base, bytes.byteLength + 5000))
        const patched = yield* patch(url, 0, bytes)
        expect(patched.status).toBe(204)
        const expires = Date.parse(patched.headers.get("upload-expires") ?? "")
        expect(expires - Date.now()).toBeLessThanOrEqual(Duration.toMillis(EXPIRY) + 1000)
        expect((yield* snapshot).intents).toHaveLength(1)
        yield* Effect.sleep(Duration.sum(EXPIRY, Duration.millis(500)))
        expect((yield* head(url)).status).toBe(404)
        expect((yield* patch(url, bytes.byteLength, text(10))).status).toBe(404)
        const reconciler = yield* Reconciler
        yield* reconciler.pass({ dryRun: false, grace: Duration.hours(1), maxOrphans: 1000 })
        expect(yield* settled).toEqual({ intents: [], strayObjects: [] })
      }))

    it.effect("two PATCHes at once: one is written, the other gets 409", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = text(4000)
        const url = urlOf(base, yield* create(base, bytes.byteLength))
        // A PATCH whose body trickles, holding the upload while the second arrives.
        let release: () => void = () => undefined
        const held = new Promise<void>((resolve) => {
          release = resolve
        })
        const slow = new ReadableStream<Uint8Array>({
          async start(controller) {
            controller.enqueue(bytes.subarray(0, 100))
            await held
            controller.enqueue(bytes.subarray(100, 2000))
            controller.close()
          }
        })
        const first = Effect.promise(() =>
          fetch(url, {
            method: "PATCH",
            headers: { ...TUS, "content-type": "application/offset+octet-stream", "upload-offset": "0" },
            body: slow,
            duplex: "half"
          } as RequestInit)
        ).pipe(Effect.fork)
        const firstFiber = yield* first
        yield* Effect.sleep("300 millis")
        const second = yield* patch(url, 0, bytes.subarray(0, 2000))
        expect(second.status).toBe(409)
        expect(second.json).toMatchObject({ error: "UploadBusy" })
        release()
        const firstResponse = yield* firstFiber.await.pipe(Effect.flatten)
        expect(firstResponse.status).toBe(204)
        expect(firstResponse.headers.get("upload-offset")).toBe("2000")
        expect((yield* request(url, { method: "DELETE", headers: TUS })).status).toBe(204)
      }))
  })

describe("resumable uploads (tus)", () => {
  describeResumable("in-memory stores", Layer.merge(MemoryObjectStore.layer, MemoryFileRepository.layer), 64 * 1024)
  if (Option.isSome(TestDatabase.serverUrl)) {
    describeResumable(
      "PostgreSQL and S3 (fauxqs)",
      Layer.merge(
        FauxqsTestServer.layer,
        PgFileRepository.layer.pipe(Layer.provide(TestDatabase.freshDatabase(TestDatabase.serverUrl.value)))
      ),
      5 * 1024 ** 2
    )
  }
})
