import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Option } from "effect"
import { PassThrough, Readable } from "node:stream"
import * as MultipartForm from "../../src/adapters/http/MultipartForm.js"
import { concatBytes } from "../../src/adapters/objects/ObjectBackend.js"

const limits = { maxParts: 8, maxFieldBytes: 1024, maxBytesBesideFile: 4096, maxFileBytes: 10_000 }

/** A request body delivered in chunks of `chunkSize` bytes. */
const request = (body: string | Uint8Array, chunkSize = 7) => {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body
  const chunks: Array<Uint8Array> = []
  for (let i = 0; i < bytes.byteLength; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize))
  return Object.assign(Readable.from(chunks), { headers: { "content-type": "multipart/form-data; boundary=B" } })
}

const filePart = (name: string, content: string, type = "text/plain") =>
  `--B\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n${content}\r\n`

/**
 * The first file part with its content read in batches of at most about `batchBytes`,
 * and whether another file follows (the read that would end the content fails then).
 */
const readForm = (
  body: string | Uint8Array,
  options: { readonly chunkSize?: number; readonly batchBytes?: number } = {}
) =>
  Effect.scoped(Effect.gen(function*() {
    const form = yield* MultipartForm.open(request(body, options.chunkSize), limits)
    const first = yield* form.firstFile
    if (Option.isNone(first)) return Option.none()
    const batches: Array<number> = []
    const chunks: Array<Uint8Array> = []
    let anotherFile = false
    for (let ended = false; !ended;) {
      const read = yield* Effect.either(first.value.content.read(options.batchBytes ?? 1 << 20))
      if (Either.isLeft(read) && read.left._tag === "TooManyFiles") {
        anotherFile = true
        break
      }
      const batch = yield* read
      if (batch.chunks.length > 0) batches.push(batch.chunks.reduce((n, c) => n + c.byteLength, 0))
      chunks.push(...batch.chunks)
      ended = batch.ended
    }
    return Option.some({
      field: first.value.field,
      filename: first.value.filename,
      contentType: first.value.contentType,
      text: new TextDecoder().decode(concatBytes(chunks)),
      batches,
      anotherFile
    })
  }))

describe("MultipartForm", () => {
  for (const chunkSize of [1, 7, 100_000]) {
    it.effect(`skips fields, reads the first file with its UTF-8 name, sees the next (chunks of ${chunkSize})`, () =>
      Effect.gen(function*() {
        const body = `--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n` +
          filePart("отчёт 📄.txt", "x".repeat(600)) + filePart("b.txt", "second", "text/csv") + "--B--\r\n"
        const read = yield* readForm(body, { chunkSize })
        expect(Option.map(read, ({ batches: _, ...rest }) => rest)).toEqual(Option.some({
          field: "file",
          filename: Option.some("отчёт 📄.txt"),
          contentType: "text/plain",
          text: "x".repeat(600),
          anotherFile: true
        }))
      }))
  }

  it.effect("a form with one file has no other; a part without a type is text/plain", () =>
    Effect.gen(function*() {
      const body = `--B\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nabc\r\n--B--\r\n`
      const read = yield* readForm(body)
      expect(Option.map(read, (r) => [r.contentType, r.text, r.anotherFile])).toEqual(
        Option.some(["text/plain", "abc", false])
      )
    }))

  it.effect("a form with fields only has no file", () =>
    Effect.gen(function*() {
      const read = yield* readForm(`--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--B--\r\n`)
      expect(Option.isNone(read)).toBe(true)
    }))

  it.effect("content comes in batches of the size asked for, not one read per chunk", () =>
    Effect.gen(function*() {
      const read = yield* readForm(filePart("a.txt", "y".repeat(5000)) + "--B--\r\n", {
        chunkSize: 100,
        batchBytes: 1000
      })
      const batches = Option.getOrThrow(Option.map(read, (r) => r.batches))
      expect(batches.reduce((a, b) => a + b, 0)).toBe(5000)
      // Every batch but the last holds at least what was asked for, and not much more (chunks are not split).
      for (const size of batches.slice(0, -1)) expect(size).toBeGreaterThanOrEqual(1000)
      for (const size of batches) expect(size).toBeLessThan(1000 + 100)
      expect(batches.length).toBeLessThanOrEqual(6)
    }))

  it.live("a file cut at the size limit while its reader is busy still hands over every byte up to the cut", () =>
    Effect.scoped(Effect.gen(function*() {
      const max = 4096
      const req = Object.assign(new PassThrough(), { headers: { "content-type": "multipart/form-data; boundary=B" } })
      const form = yield* MultipartForm.open(req, { ...limits, maxFileBytes: max + 1 })
      req.write(`--B\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n${"a".repeat(max)}`)
      const file = Option.getOrThrow(yield* form.firstFile)
      const first = yield* file.content.read(max)
      // The client goes on sending while the workflow is busy (an uploadPart, say): the
      // stream is paused, so the parser cuts the part inside the stream's own buffer.
      req.end("a".repeat(max))
      // Every byte sent has reached the parser (and the cut happened) once the request ends.
      yield* Effect.async<void>((resume) => {
        req.once("end", () => resume(Effect.void))
      })
      const second = yield* file.content.read(1024)
      const size = (batch: typeof first) => batch.chunks.reduce((n, c) => n + c.byteLength, 0)
      expect(size(first) + size(second)).toBe(max + 1)
    })))

  it.effect("a body without its closing boundary fails as malformed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(readForm(filePart("a.txt", "x".repeat(100)).slice(0, -2)))
      expect(error._tag).toBe("MalformedMultipart")
    }))

  it.effect("a file that arrived whole is handed over before a parse error after it, which ends its content", () =>
    Effect.scoped(Effect.gen(function*() {
      // One chunk: the file ends and the form breaks before anything is read.
      const form = yield* MultipartForm.open(
        request(filePart("a.txt", "abc") + "--B\r\nContent-Disposition: form", 100_000),
        limits
      )
      const file = Option.getOrThrow(yield* form.firstFile)
      const batch = yield* file.content.read(1 << 20)
      expect([new TextDecoder().decode(concatBytes(batch.chunks)), batch.ended]).toEqual(["abc", false])
      expect((yield* Effect.flip(file.content.read(1 << 20)))._tag).toBe("MalformedMultipart")
    })))

  it.effect("the content of a form's only file ends once the form does; a second file fails the read that would end it", () =>
    Effect.scoped(Effect.gen(function*() {
      const req = Object.assign(new PassThrough(), { headers: { "content-type": "multipart/form-data; boundary=B" } })
      const form = yield* MultipartForm.open(req, limits)
      req.write(filePart("a.txt", "abc"))
      const file = Option.getOrThrow(yield* form.firstFile)
      expect((yield* file.content.read(3)).ended).toBe(false)
      // The part is over, but not the form: the end waits for it.
      const end = yield* Effect.fork(file.content.read(1 << 20))
      req.end(filePart("b.txt", "second") + "--B--\r\n")
      expect((yield* Effect.flip(Fiber.join(end)))._tag).toBe("TooManyFiles")
    })))

  it.effect("too many parts fail as malformed", () =>
    Effect.gen(function*() {
      const fields = Array.from({ length: 10 }, (_, i) =>
        `--B\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\nv\r\n`)
      const error = yield* Effect.flip(readForm(fields.join("") + filePart("a.txt", "abc") + "--B--\r\n"))
      expect(error).toMatchObject({ _tag: "MalformedMultipart", reason: "too many parts" })
    }))

  it.effect("a boundary longer than 70 characters is refused before the body is read", () =>
    Effect.gen(function*() {
      let read = false
      const body = new PassThrough()
      body.on("data", () => (read = true))
      const req = Object.assign(body, {
        headers: { "content-type": `multipart/form-data; boundary="${"b".repeat(71)}"` }
      })
      const error = yield* Effect.flip(Effect.scoped(MultipartForm.open(req, limits)))
      expect(error).toMatchObject({ _tag: "MalformedMultipart", reason: expect.stringContaining("70 characters") })
      expect(read).toBe(false)
      // 70 is still fine.
      const fine = Object.assign(Readable.from([]), {
        headers: { "content-type": `multipart/form-data; boundary=${"b".repeat(70)}` }
      })
      yield* Effect.scoped(MultipartForm.open(fine, limits))
    }))

  it.effect("more bytes beside the file than the form allows (a long preamble, many headers, big fields) fail as malformed, naming the limit", () =>
    Effect.gen(function*() {
      const preamble = "x".repeat(6000) + "\r\n"
      const error = yield* Effect.flip(readForm(preamble + filePart("a.txt", "abc") + "--B--\r\n", { chunkSize: 512 }))
      expect(error).toMatchObject({
        _tag: "MalformedMultipart",
        reason: expect.stringContaining("4096 bytes beside its file")
      })
      // Fields within the bound, and a file far larger than it, are fine: the file is counted apart.
      const fields = Array.from(
        { length: 3 },
        (_, i) => `--B\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\n${"v".repeat(1000)}\r\n`
      )
      const read = yield* readForm(fields.join("") + filePart("a.txt", "y".repeat(9000)) + "--B--\r\n", {
        chunkSize: 700
      })
      expect(Option.map(read, (r) => r.text.length)).toEqual(Option.some(9000))
    }))

  it.effect("a file part with no file name (a file input with nothing chosen) has none", () =>
    Effect.gen(function*() {
      for (const disposition of ["name=\"file\"; filename=\"\"", "name=\"file\""]) {
        const body =
          `--B\r\nContent-Disposition: form-data; ${disposition}\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n`
        const read = yield* readForm(body)
        expect(Option.map(read, (r) => [r.filename, r.text])).toEqual(Option.some([Option.none(), ""]))
      }
    }))

  it.effect("a request that is not multipart fails as NotMultipart", () =>
    Effect.gen(function*() {
      const req = Object.assign(Readable.from([]), { headers: { "content-type": "application/json" } })
      const error = yield* Effect.flip(Effect.scoped(MultipartForm.open(req, limits)))
      expect(error._tag).toBe("NotMultipart")
    }))
})
