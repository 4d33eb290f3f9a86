import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as PgFileRepository from "../../src/adapters/database/PgFileRepository.js"
import * as LocalDiskObjectStore from "../../src/adapters/objects/LocalDiskObjectStore.js"
import * as MemoryObjectStore from "../../src/adapters/objects/MemoryObjectStore.js"
import type { FileRepository } from "../../src/ports/FileRepository.js"
import type { ObjectStore } from "../../src/ports/ObjectStore.js"
import { fileForm, rawRequest, request, textOfSize, upload } from "../support/Http.js"
import * as S3TestServer from "../support/S3TestServer.js"
import { snapshot } from "../support/Snapshot.js"
import * as TempDirectory from "../support/TempDirectory.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestServer from "../support/TestServer.js"

/** The stores agree: every object is a listed file's, and no intent is left. */
const expectConsistent = Effect.map(snapshot, (found) => {
  expect(found.objects).toEqual(found.files)
  expect(found.intents).toEqual([])
  return found.objects.length
})

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** A form with one part, byte for byte: `part` is its headers, a blank line and its content. */
const rawForm = (base: string, boundary: string, part: string) =>
  request(`${base}/files`, {
    method: "POST",
    headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
    body: `--${boundary}\r\n${part}\r\n--${boundary}--\r\n`
  })

interface OpenApiDocument {
  readonly paths: Record<
    string,
    Record<string, {
      readonly parameters?: ReadonlyArray<{ readonly name: string; readonly schema: unknown }>
      readonly responses?: Record<string, unknown>
      readonly security?: ReadonlyArray<Record<string, ReadonlyArray<string>>>
    }>
  >
  readonly components?: { readonly securitySchemes?: Record<string, unknown> }
}

const MemoryStores = Layer.merge(MemoryObjectStore.layer, MemoryFileRepository.layer)

export const describeHttpApi = <E>(backend: string, stores: Layer.Layer<ObjectStore | FileRepository, E>) =>
  layer(TestServer.layer(stores), { timeout: 60_000, excludeTestServices: true })(`HTTP API over ${backend}`, (it) => {
    it.effect("a 1 KB text upload round-trips: 201, metadata, exact bytes, list, delete", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = textOfSize(1024, "héllo wörld ")
        const created = yield* upload(base, "notes.TXT", "text/plain; charset=utf-8", bytes)
        expect(created.status).toBe(201)
        const body = created.json as {
          id: string
          name: string
          size: number
          contentType: string
          sha256: string
          createdAt: string
        }
        expect(created.headers.get("location")).toBe(`/files/${body.id}`)
        expect(body).toMatchObject({ name: "notes.TXT", size: 1024, contentType: "text/plain", sha256: sha256(bytes) })
        expect(Number.isNaN(Date.parse(body.createdAt))).toBe(false)

        const fetched = yield* request(`${base}/files/${body.id}`)
        expect(fetched.status).toBe(200)
        expect(fetched.json).toEqual(body)

        const content = yield* request(`${base}/files/${body.id}/content`)
        expect(content.status).toBe(200)
        expect(content.bytes).toEqual(bytes)
        expect(content.headers.get("content-type")).toBe("text/plain; charset=utf-8")
        expect(content.headers.get("content-length")).toBe("1024")
        expect(content.headers.get("etag")).toBe(`"${body.sha256}"`)

        // HEAD: the same headers, and no body.
        const head = yield* request(`${base}/files/${body.id}/content`, { method: "HEAD" })
        expect(head.status).toBe(200)
        expect([head.headers.get("content-length"), head.headers.get("etag"), head.bytes.byteLength]).toEqual([
          "1024",
          `"${body.sha256}"`,
          0
        ])

        const notModified = yield* request(`${base}/files/${body.id}/content`, {
          headers: { "if-none-match": `W/"other", "${body.sha256}"` }
        })
        expect(notModified.status).toBe(304)

        const listed = yield* request(`${base}/files?limit=100`)
        expect(listed.status).toBe(200)
        expect((listed.json as { items: Array<{ id: string }> }).items.map((f) => f.id)).toContain(body.id)
        expect(yield* expectConsistent).toBeGreaterThan(0)

        const deleted = yield* request(`${base}/files/${body.id}`, { method: "DELETE" })
        expect(deleted.status).toBe(204)
        for (const path of [`/files/${body.id}`, `/files/${body.id}/content`]) {
          const gone = yield* request(`${base}${path}`)
          expect(gone.status).toBe(404)
          expect(gone.json).toMatchObject({ error: "FileNotFound" })
        }
        expect((yield* request(`${base}/files/${body.id}`, { method: "DELETE" })).status).toBe(404)
        const { objects } = yield* snapshot
        expect(objects.some((key) => key.endsWith(body.id))).toBe(false)
        yield* expectConsistent
      }))

    const refusals: ReadonlyArray<{
      readonly title: string
      readonly status: number
      readonly error: string
      readonly send: (base: string) => ReturnType<typeof request>
    }> = [
      {
        title: "a JSON body",
        status: 400,
        error: "NotMultipart",
        send: (base) =>
          request(`${base}/files`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })
      },
      {
        title: "a form without a file",
        status: 400,
        error: "MissingFilePart",
        send: (base) => {
          const form = new FormData()
          form.append("note", "hello")
          return request(`${base}/files`, { method: "POST", body: form })
        }
      },
      {
        title: "an empty file input (no file chosen: filename=\"\", application/octet-stream, no bytes)",
        status: 400,
        error: "MissingFilePart",
        send: (base) =>
          rawForm(
            base,
            "b",
            "Content-Disposition: form-data; name=\"file\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n\r\n"
          )
      },
      {
        title: "a file part without a file name",
        status: 400,
        error: "MissingFilePart",
        send: (base) =>
          rawForm(
            base,
            "b",
            "Content-Disposition: form-data; name=\"file\"\r\nContent-Type: application/octet-stream\r\n\r\nabc"
          )
      },
      {
        title: "a field larger than the form allows beside its file",
        status: 400,
        error: "MalformedMultipart",
        // Sent without a length, as a stream, so the refusal comes from the parser's count.
        send: (base) =>
          rawRequest(`${base}/files`, {
            method: "POST",
            headers: { "content-type": "multipart/form-data; boundary=b", "transfer-encoding": "chunked" },
            body: (async function*() {
              const encoder = new TextEncoder()
              yield encoder.encode(
                `--b\r\nContent-Disposition: form-data; name="note"\r\n\r\n${"n".repeat(70 * 1024)}\r\n`
              )
              yield encoder.encode(`--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n`)
              yield textOfSize(1024)
              yield encoder.encode("\r\n--b--\r\n")
            })()
          }).pipe(Effect.map(({ json, status }) => ({ status, json, headers: new Headers(), bytes: new Uint8Array() })))
      },
      {
        title: "a boundary over 70 characters",
        status: 400,
        error: "MalformedMultipart",
        send: (base) =>
          rawForm(base, "b".repeat(71), "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc")
      },
      {
        title: "a file part with another name",
        status: 400,
        error: "MissingFilePart",
        send: (base) =>
          request(`${base}/files`, {
            method: "POST",
            body: fileForm([{ field: "upload", name: "a.txt", type: "text/plain", bytes: textOfSize(600) }])
          })
      },
      {
        title: "two files",
        status: 400,
        error: "TooManyFiles",
        send: (base) =>
          request(`${base}/files`, {
            method: "POST",
            body: fileForm([
              { field: "file", name: "a.txt", type: "text/plain", bytes: textOfSize(600) },
              { field: "file", name: "b.txt", type: "text/plain", bytes: textOfSize(600) }
            ])
          })
      },
      {
        title: "a body that is not valid multipart",
        status: 400,
        error: "MalformedMultipart",
        send: (base) =>
          request(`${base}/files`, {
            method: "POST",
            headers: { "content-type": "multipart/form-data; boundary=xyz" },
            body: "--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n" +
              `Content-Type: text/plain\r\n\r\n${"a".repeat(600)} and no closing boundary`
          })
      },
      {
        title: "a file one byte over the maximum",
        status: 413,
        error: "FileTooLarge",
        send: (base) => upload(base, "a.txt", "text/plain", textOfSize(2049))
      },
      {
        title: "a disallowed content type",
        status: 415,
        error: "ContentTypeNotAllowed",
        send: (base) => upload(base, "a.txt", "image/png", textOfSize(1024))
      },
      {
        title: "a file one byte under the minimum",
        status: 422,
        error: "FileTooSmall",
        send: (base) => upload(base, "a.txt", "text/plain", textOfSize(511))
      },
      {
        title: "a disallowed extension",
        status: 422,
        error: "ExtensionNotAllowed",
        send: (base) => upload(base, "a.exe", "text/plain", textOfSize(1024))
      },
      {
        title: "content that is not UTF-8",
        status: 422,
        error: "NotUtf8",
        send: (base) => {
          const bytes = textOfSize(1024)
          bytes[700] = 0xc0
          bytes[701] = 0x80
          return upload(base, "a.txt", "text/plain", bytes)
        }
      },
      {
        title: "a file name longer than 255 bytes",
        status: 422,
        error: "InvalidFileName",
        send: (base) => upload(base, `${"ä".repeat(130)}.txt`, "text/plain", textOfSize(1024))
      },
      {
        title: "an unknown id",
        status: 404,
        error: "FileNotFound",
        send: (base) => request(`${base}/files/6f1c1a52-7a4a-4c55-9a0e-2b1d2d0b9c11`)
      },
      {
        title: "an id that is not a UUID",
        status: 404,
        error: "FileNotFound",
        send: (base) => request(`${base}/files/'%20OR%201=1--/content`)
      },
      {
        title: "a page size out of range",
        status: 400,
        error: "InvalidQuery",
        send: (base) => request(`${base}/files?limit=0`)
      },
      {
        title: "a forged cursor",
        status: 400,
        error: "InvalidQuery",
        send: (base) => request(`${base}/files?cursor=bm90LWEtY3Vyc29y`)
      }
    ]

    for (const refusal of refusals) {
      it.effect(`${refusal.title} gets ${refusal.status} ${refusal.error} and leaves nothing behind`, () =>
        Effect.gen(function*() {
          const base = yield* TestServer.baseUrl
          const before = yield* snapshot
          const response = yield* refusal.send(base)
          expect(response.status).toBe(refusal.status)
          expect(response.json).toMatchObject({ error: refusal.error })
          expect(typeof (response.json as { message: unknown }).message).toBe("string")
          expect(yield* snapshot).toEqual(before)
        }))
    }

    it.effect("a text field of 20 KiB before a 1 KiB file is no reason to refuse it: fields are bounded apart from the file", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const form = new FormData()
        form.append("note", "n".repeat(20 * 1024))
        form.append("file", new Blob([textOfSize(1024)], { type: "text/plain" }), "with-note.txt")
        const response = yield* request(`${base}/files`, { method: "POST", body: form })
        expect(response.status).toBe(201)
        expect(response.json).toMatchObject({ name: "with-note.txt", size: 1024 })
        yield* expectConsistent
      }))

    it.effect("an announced oversize body is refused with 413 before it is read", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const size = 64 * 1024 * 1024
        const chunk = new Uint8Array(64 * 1024).fill(0x61)
        const body = (async function*() {
          for (let sent = 0; sent < size; sent += chunk.byteLength) yield chunk
        })()
        const response = yield* rawRequest(`${base}/files`, {
          method: "POST",
          headers: { "content-type": "multipart/form-data; boundary=b", "content-length": String(size) },
          body
        })
        expect(response.status).toBe(413)
        expect(response.json).toMatchObject({ error: "BodyTooLarge" })
        expect(response.sent).toBeLessThan(size)
      }))

    it.effect("an oversize chunked body without a length is cut off at the maximum with 413", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const encoder = new TextEncoder()
        const size = 64 * 1024 * 1024
        const chunk = new Uint8Array(64 * 1024).fill(0x61)
        const body = (async function*() {
          yield encoder.encode(
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\nContent-Type: text/plain\r\n\r\n"
          )
          for (let sent = 0; sent < size; sent += chunk.byteLength) yield chunk
          yield encoder.encode("\r\n--b--\r\n")
        })()
        const before = yield* snapshot
        const response = yield* rawRequest(`${base}/files`, {
          method: "POST",
          headers: { "content-type": "multipart/form-data; boundary=b", "transfer-encoding": "chunked" },
          body
        })
        expect(response.status).toBe(413)
        expect(response.json).toMatchObject({ error: "FileTooLarge" })
        expect(response.sent).toBeLessThan(size)
        expect(yield* snapshot).toEqual(before)
      }))

    it.effect("pages through files newest first with a cursor", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const ids: Array<string> = []
        for (let i = 0; i < 5; i++) {
          const created = yield* upload(base, `page-${i}.txt`, "text/plain", textOfSize(600 + i))
          ids.push((created.json as { id: string }).id)
        }
        const seen: Array<string> = []
        let cursor: string | null = null
        do {
          const url: string = `${base}/files?limit=2${cursor === null ? "" : `&cursor=${cursor}`}`
          const page = yield* request(url)
          expect(page.status).toBe(200)
          const json = page.json as { items: Array<{ id: string }>; nextCursor: string | null }
          expect(json.items.length).toBeLessThanOrEqual(2)
          seen.push(...json.items.map((item) => item.id))
          cursor = json.nextCursor
        } while (cursor !== null)
        const mine = seen.filter((id) => ids.includes(id))
        expect(mine).toEqual([...ids].reverse())
        expect(new Set(seen).size).toBe(seen.length)
        yield* expectConsistent
      }))

    it.effect("serves health, readiness, the OpenAPI document and Swagger UI", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        expect((yield* request(`${base}/healthz`)).json).toEqual({ status: "ok" })
        expect((yield* request(`${base}/readyz`)).json).toEqual({ status: "ready" })
        const openapi = yield* request(`${base}/openapi.json`)
        expect(openapi.status).toBe(200)
        const document = openapi.json as OpenApiDocument
        expect(Object.keys(document.paths)).toEqual(
          expect.arrayContaining([
            "/files",
            "/files/{id}",
            "/files/{id}/content",
            "/files/{id}/links",
            "/healthz",
            "/readyz"
          ])
        )
        // The bearer scheme, on every files route and on no probe.
        expect(document.components?.securitySchemes?.["bearer"]).toMatchObject({ type: "http", scheme: "bearer" })
        for (
          const [path, method] of [
            ["/files", "post"],
            ["/files", "get"],
            ["/files/{id}", "get"],
            ["/files/{id}", "delete"],
            ["/files/{id}/content", "get"],
            ["/files/{id}/links", "post"]
          ] as const
        ) {
          expect(document.paths[path]?.[method]?.security, `${method} ${path}`).toEqual([{ bearer: [] }])
        }
        expect(document.paths["/healthz"]?.["get"]?.security ?? []).toEqual([])
        // Inputs as they are decoded: the id a UUID, the page size an integer from 1 to 100.
        const parameter = (path: string, method: string, name: string) =>
          document.paths[path]?.[method]?.parameters?.find((p) => p.name === name)?.schema
        expect(parameter("/files/{id}", "get", "id")).toMatchObject({ format: "uuid" })
        expect(parameter("/files", "get", "limit")).toMatchObject({ type: "integer", minimum: 1, maximum: 100 })
        // Each route lists its own errors, by status.
        const errorsOf = (path: string, method: string) =>
          Object.keys(document.paths[path]?.[method]?.responses ?? {}).filter((s) => s >= "400")
        // Every files route: 401 (token), 403 (origin, link), 404 (a link's file), 421 (Host), from authentication.
        expect(errorsOf("/files", "post")).toEqual([
          "400",
          "401",
          "403",
          "404",
          "409",
          "413",
          "415",
          "421",
          "422",
          "429",
          "503"
        ])
        expect(errorsOf("/files/{id}", "get")).toEqual(["400", "401", "403", "404", "421", "503"])
        expect(errorsOf("/files/{id}/content", "get")).toEqual(["400", "401", "403", "404", "416", "421", "500", "503"])
        expect(JSON.stringify(document.paths["/files"]?.["post"]?.responses?.["413"])).toContain("FileTooLarge")
        const docs = yield* request(`${base}/docs`)
        expect(docs.status).toBe(200)
        const html = new TextDecoder().decode(docs.bytes)
        expect(html).toContain("SwaggerUIBundle")
        expect(html).not.toMatch(/<script[^>]+src="https?:/)
      }))
  })

const EmbeddedStores = Layer.merge(
  Layer.unwrapScoped(Effect.map(TempDirectory.make("http-objects"), LocalDiskObjectStore.layer)),
  PgFileRepository.layer.pipe(Layer.provide(TestDatabase.embeddedLayer))
)

describe("HTTP API", () => {
  describeHttpApi("in-memory stores", MemoryStores)
  describeHttpApi("local disk and embedded PGlite", EmbeddedStores)
  if (Option.isSome(TestDatabase.serverUrl)) {
    describeHttpApi(
      "S3 (s3rver) and PostgreSQL",
      Layer.merge(
        S3TestServer.layer,
        PgFileRepository.layer.pipe(Layer.provide(TestDatabase.freshDatabase(TestDatabase.serverUrl.value)))
      )
    )
  }
})
