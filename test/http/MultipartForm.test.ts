import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import { Readable } from "node:stream"
import * as MultipartForm from "../../src/adapters/http/MultipartForm.js"
import { concatBytes } from "../../src/ports/ObjectStore.js"

const limits = { maxParts: 8, maxFieldBytes: 1024, maxFileBytes: 10_000 }

/** A request body delivered in chunks of `chunkSize` bytes. */
const request = (body: string | Uint8Array, chunkSize = 7) => {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body
  const chunks: Array<Uint8Array> = []
  for (let i = 0; i < bytes.byteLength; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize))
  return Object.assign(Readable.from(chunks), { headers: { "content-type": "multipart/form-data; boundary=B" } })
}

const filePart = (name: string, content: string, type = "text/plain") =>
  `--B\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n${content}\r\n`

/** Every part, with each file's content read in order. */
const readAll = (body: string | Uint8Array, chunkSize?: number) =>
  MultipartForm.parts(request(body, chunkSize), limits).pipe(
    Stream.mapEffect((part) =>
      part._tag === "Field"
        ? Effect.succeed({ field: part.field })
        : Effect.map(Stream.runCollect(part.content), (chunks) => ({
          field: part.field,
          filename: part.filename,
          contentType: part.contentType,
          text: new TextDecoder().decode(concatBytes(Chunk.toReadonlyArray(chunks)))
        }))
    ),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray)
  )

describe("MultipartForm", () => {
  for (const chunkSize of [1, 7, 100_000]) {
    it.effect(`reads files and fields in order with UTF-8 names (chunks of ${chunkSize})`, () =>
      Effect.gen(function*() {
        const body = `--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n` +
          filePart("отчёт 📄.txt", "x".repeat(600)) + filePart("b.txt", "second", "text/csv") + "--B--\r\n"
        expect(yield* readAll(body, chunkSize)).toEqual([
          { field: "note" },
          { field: "file", filename: "отчёт 📄.txt", contentType: "text/plain", text: "x".repeat(600) },
          { field: "file", filename: "b.txt", contentType: "text/csv", text: "second" }
        ])
      }))
  }

  it.effect("a body without its closing boundary fails as malformed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(readAll(filePart("a.txt", "x".repeat(100)).slice(0, -2)))
      expect(error._tag).toBe("MalformedMultipart")
    }))

  it.effect("a request that is not multipart fails as NotMultipart", () =>
    Effect.gen(function*() {
      const req = Object.assign(Readable.from([]), { headers: { "content-type": "application/json" } })
      const error = yield* Effect.flip(Stream.runDrain(MultipartForm.parts(req, limits)))
      expect(error._tag).toBe("NotMultipart")
    }))
})
