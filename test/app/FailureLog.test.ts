import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, HashMap, Layer, Logger, LogLevel } from "effect"
import * as MemoryFileRepository from "../../src/adapters/MemoryFileRepository.js"
import * as MemoryObjectStore from "../../src/adapters/MemoryObjectStore.js"
import { FileService } from "../../src/app/FileService.js"
import * as FaultInjection from "../support/FaultInjection.js"
import { textOfSize } from "../support/Http.js"
import * as TestServer from "../support/TestServer.js"

interface Entry {
  readonly level: LogLevel.LogLevel
  readonly message: unknown
  readonly annotations: Record<string, unknown>
  readonly hasCause: boolean
}

/** Runs `self` with a logger that records entries instead of printing them. */
const captureLogs = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const entries: Array<Entry> = []
    const logger = Logger.make<unknown, void>(({ annotations, cause, logLevel, message }) => {
      entries.push({
        level: logLevel,
        message: Array.isArray(message) ? message[0] : message,
        annotations: Object.fromEntries(HashMap.toEntries(annotations)),
        hasCause: !Cause.isEmpty(cause)
      })
    })
    yield* Effect.exit(self.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger))))
    return entries
  })

const services = FileService.Default.pipe(
  Layer.provideMerge(Layer.merge(
    FaultInjection.layer(Layer.merge(MemoryObjectStore.layer, MemoryFileRepository.layer)),
    TestServer.defaultSettings
  ))
)

describe("failure logging", () => {
  it.effect("a refused upload is a warning carrying the error's tag and fields", () =>
    Effect.gen(function*() {
      const files = yield* FileService
      const entries = yield* captureLogs(files.uploadBytes({ name: "a.txt", contentType: "text/plain" }, textOfSize(100)))
      const entry = entries.find((e) => e.annotations.error === "FileTooSmall")
      expect(entry?.level).toBe(LogLevel.Warning)
      expect(entry?.annotations).toMatchObject({ size: 100, minBytes: 512, operation: "upload" })
      expect(String(entry?.annotations.detail)).toContain("minimum is 512")
    }).pipe(Effect.provide(services)))

  it.live("a storage failure is an error with its cause; a failed compensation is one too, naming the key", () =>
    Effect.gen(function*() {
      const files = yield* FileService
      const plan = yield* FaultInjection.FaultPlan
      yield* plan.inject([{ call: "repo.commitPending", kind: "fail" }, { call: "store.delete", kind: "fail" }])
      const entries = yield* captureLogs(files.uploadBytes({ name: "a.txt", contentType: "text/plain" }, textOfSize(1024)))
      const [orphanKey] = yield* plan.faultedKeys("store.delete")
      yield* plan.clear
      const cleanup = entries.find((e) => e.annotations.error === "CleanupFailed")
      expect(cleanup?.level).toBe(LogLevel.Error)
      expect(cleanup?.hasCause).toBe(true)
      expect(cleanup?.annotations.key).toBe(orphanKey)
      expect(String(cleanup?.annotations.original)).toContain("repo.commitPending")
      const compensation = entries.find((e) => String(e.message).includes("compensation failed"))
      expect(compensation?.level).toBe(LogLevel.Error)
      expect(compensation?.annotations.key).toBe(orphanKey)
    }).pipe(Effect.provide(services)))
})
