/**
 * A client that goes away mid-upload, after its bytes reached the object store:
 * the request's fiber is interrupted, the upload compensates, and nothing is left
 * (no intent, no object, no open multipart upload). Each step is awaited through a
 * hook (the store's calls), not a sleep.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Option, Schedule } from "effect"
import * as http from "node:http"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as PgFileRepository from "../../src/adapters/database/PgFileRepository.js"
import * as UploadSettings from "../../src/app/UploadSettings.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import type { FileRepository } from "../../src/ports/FileRepository.js"
import { noQuota } from "../../src/ports/FileRepository.js"
import * as Backends from "../support/Backends.js"
import * as FaultInjection from "../support/FaultInjection.js"
import { request } from "../support/Http.js"
import { expectSettled, snapshot } from "../support/Snapshot.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestServer from "../support/TestServer.js"

const PART = TestServer.testPartSize
const settings = UploadSettings.layer({
  policy: new UploadPolicy({ minBytes: 512, maxBytes: 1024 * 1024, contentTypes: ["text/plain"], extensions: ["txt"] }),
  keyPrefix: TestServer.testPrefix,
  quota: noQuota
})

/** Starts a chunked upload that sends `size` bytes of text, then waits (never ends); gives a way to hang up. */
const startUpload = (base: string, size: number) =>
  Effect.sync(() => {
    const req = http.request(`${base}/files`, {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=b", "transfer-encoding": "chunked" }
    })
    req.on("error", () => undefined)
    req.write(
      "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n"
    )
    req.write("x".repeat(size))
    return { hangUp: Effect.sync(() => req.destroy()) }
  })

const describeDisconnects = <E>(
  name: string,
  backend: Layer.Layer<Backends.Backend>,
  repository: Layer.Layer<FileRepository, E>
) =>
  layer(
    TestServer.layerWith(FaultInjection.layer(Layer.merge(backend, repository), { partSize: PART }), settings),
    { excludeTestServices: true, timeout: 60_000 }
  )(`a client that disconnects, over ${name}`, (it) => {
    it.effect("after its first part was sent: the upload is aborted, nothing is left, the server carries on", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const plan = yield* FaultInjection.FaultPlan
        yield* plan.clear
        const upload = yield* startUpload(base, 3 * PART)
        yield* plan.reached("store.uploadPart")
        yield* upload.hangUp
        // The request's fiber is interrupted; compensation ends by dropping the intent.
        yield* plan.reached("repo.remove")
        const calls = yield* plan.calls
        expect(calls).toEqual(
          expect.arrayContaining([
            "repo.insertPending",
            "store.createMultipart",
            "repo.recordMultipart",
            "store.abortMultipart"
          ])
        )
        expect(expectSettled(yield* snapshot)).toEqual({ intents: [], strayObjects: [] })
        expect(yield* plan.openUploads).toEqual([])
        expect((yield* request(`${base}/healthz`)).status).toBe(200)
      }))

    it.effect("before its file was whole (a small one): its intent is dropped, nothing was written", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const plan = yield* FaultInjection.FaultPlan
        yield* plan.clear
        const upload = yield* startUpload(base, 700)
        yield* plan.reached("repo.insertPending")
        yield* upload.hangUp
        yield* plan.reached("repo.remove")
        expect(yield* plan.calls).not.toContain("store.put")
        // The hook fires as the DELETE is sent; the snapshot must follow its commit.
        yield* snapshot.pipe(Effect.repeat({
          schedule: Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds")),
          until: (found) => found.intents.length === 0
        }))
        expect(expectSettled(yield* snapshot)).toEqual({ intents: [], strayObjects: [] })
      }))
  })

describe("disconnects", () => {
  describeDisconnects("memory", Backends.memory, MemoryFileRepository.layer)
  describeDisconnects(
    "local disk and embedded PGlite",
    Backends.localDisk,
    PgFileRepository.layer.pipe(Layer.provide(TestDatabase.embeddedLayer))
  )
  if (Option.isSome(TestDatabase.serverUrl)) {
    describeDisconnects(
      "S3 (fauxqs) and PostgreSQL",
      Backends.fauxqs,
      PgFileRepository.layer.pipe(Layer.provide(TestDatabase.freshDatabase(TestDatabase.serverUrl.value)))
    )
  }
})
