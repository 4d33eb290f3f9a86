import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as MemoryObjectStore from "../../src/adapters/objects/MemoryObjectStore.js"
import { FileService } from "../../src/app/FileService.js"
import { FileRecord } from "../../src/domain/FileRecord.js"
import { LOCAL_OWNER } from "../../src/domain/FileRecord.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { uploadBytes } from "../support/Content.js"
import { textOfSize } from "../support/Http.js"
import * as TestServer from "../support/TestServer.js"

const services = FileService.Default.pipe(
  Layer.provideMerge(Layer.mergeAll(MemoryObjectStore.layer, MemoryFileRepository.layer, TestServer.defaultSettings))
)

const fields = Object.keys(FileRecord.fields).sort()

describe("FileService", () => {
  layer(services)((it) => {
    it.effect("a stored file's record holds its fields and nothing else (not the upload's bytes)", () =>
      Effect.gen(function*() {
        const files = yield* FileService
        const record = yield* uploadBytes(files, { name: "a.txt", contentType: "text/plain" }, textOfSize(1024))
        expect(Object.keys(record).sort()).toEqual(fields)
        const stored = Option.getOrThrow(yield* (yield* FileRepository).find(LOCAL_OWNER, record.id))
        expect(Object.keys(stored).sort()).toEqual(fields)
        expect(stored).toEqual(record)
      }))
  })
})
