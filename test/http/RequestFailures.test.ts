/**
 * Every failed request is logged once, at the level its status calls for, with the
 * error's fields: a warning for what the client caused, info for a 404, an error
 * with its cause for a 5xx (and the compensation that failed, naming its key).
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, HashMap, Layer, Logger, LogLevel } from "effect"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as Backends from "../support/Backends.js"
import * as FaultInjection from "../support/FaultInjection.js"
import { request, textOfSize, upload } from "../support/Http.js"
import * as TestServer from "../support/TestServer.js"

interface Entry {
  readonly level: LogLevel.LogLevel
  readonly message: unknown
  readonly annotations: Record<string, unknown>
  readonly hasCause: boolean
}

/** A test server whose log entries are recorded instead of printed. */
const capturing = Effect.gen(function*() {
  const entries: Array<Entry> = []
  const logger = Logger.make<unknown, void>(({ annotations, cause, logLevel, message }) => {
    entries.push({
      level: logLevel,
      message: Array.isArray(message) ? message[0] : message,
      annotations: Object.fromEntries(HashMap.toEntries(annotations)),
      hasCause: !Cause.isEmpty(cause)
    })
  })
  const server = TestServer.layerWith(
    FaultInjection.layer(Layer.merge(Backends.memory, MemoryFileRepository.layer), {
      partSize: TestServer.testPartSize
    }),
    TestServer.defaultSettings,
    Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(LogLevel.All))
  )
  return { entries, server }
})

const failures = (entries: ReadonlyArray<Entry>) => entries.filter((e) => e.annotations.status !== undefined)

describe("request failure logging", () => {
  it.live("a refused upload is one warning carrying the error's tag, fields and status", () =>
    Effect.gen(function*() {
      const { entries, server } = yield* capturing
      yield* Effect.gen(function*() {
        const response = yield* upload(yield* TestServer.baseUrl, "a.txt", "text/plain", textOfSize(100))
        expect(response.status).toBe(422)
      }).pipe(Effect.provide(server))
      const [entry, ...more] = failures(entries)
      expect(more).toEqual([])
      expect(entry?.level).toBe(LogLevel.Warning)
      expect(entry?.annotations).toMatchObject({
        error: "FileTooSmall",
        size: 100,
        minBytes: 512,
        status: 422,
        method: "POST"
      })
      expect(String(entry?.annotations.detail)).toContain("minimum is 512")
    }))

  it.live("a missing file, and an id that is not one, are each one info line", () =>
    Effect.gen(function*() {
      const { entries, server } = yield* capturing
      yield* Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        expect((yield* request(`${base}/files/6f1c1a52-7a4a-4c55-9a0e-2b1d2d0b9c11`)).status).toBe(404)
        expect((yield* request(`${base}/files/not-an-id`)).status).toBe(404)
      }).pipe(Effect.provide(server))
      expect(failures(entries).map((e) => [e.level, e.annotations.error, e.annotations.id])).toEqual([
        [LogLevel.Info, "FileNotFound", "6f1c1a52-7a4a-4c55-9a0e-2b1d2d0b9c11"],
        [LogLevel.Info, "FileNotFound", "not-an-id"]
      ])
    }))

  it.live("a storage failure whose compensation failed is an error with its cause; the compensation is one too, naming the key", () =>
    Effect.gen(function*() {
      const { entries, server } = yield* capturing
      const orphanKey = yield* Effect.gen(function*() {
        const plan = yield* FaultInjection.FaultPlan
        yield* plan.inject([{ call: "repo.commitPending", kind: "fail" }, { call: "store.delete", kind: "fail" }])
        const response = yield* upload(yield* TestServer.baseUrl, "a.txt", "text/plain", textOfSize(1024))
        expect(response.status).toBe(503)
        const [key] = yield* plan.faultedKeys("store.delete")
        yield* plan.clear
        return key
      }).pipe(Effect.provide(server))
      const cleanup = failures(entries).find((e) => e.annotations.error === "CleanupFailed")
      expect(cleanup?.level).toBe(LogLevel.Error)
      expect(cleanup?.hasCause).toBe(true)
      expect(cleanup?.annotations).toMatchObject({ key: orphanKey, status: 503 })
      expect(String(cleanup?.annotations.original)).toContain("repo.commitPending")
      const compensation = entries.find((e) => String(e.message).includes("compensation failed"))
      expect(compensation?.level).toBe(LogLevel.Error)
      expect(compensation?.annotations.key).toBe(orphanKey)
    }))
})
