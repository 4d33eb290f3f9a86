import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as MemoryObjectStore from "../../src/adapters/objects/MemoryObjectStore.js"
import { baseName } from "../../src/domain/UploadPolicy.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import type { RejectionTag, Upload } from "../support/Arbitraries.js"
import { invalidUpload, validUpload } from "../support/Arbitraries.js"
import { request } from "../support/Http.js"
import * as TestServer from "../support/TestServer.js"

/** The statuses the README promises, written out independently of ErrorMapping.ts. */
const statusOf: Record<RejectionTag, number> = {
  InvalidFileName: 422,
  ContentTypeNotAllowed: 415,
  ExtensionNotAllowed: 422,
  FileTooLarge: 413,
  FileTooSmall: 422,
  NotUtf8: 422
}

const encoder = new TextEncoder()

/**
 * One file part, byte for byte as a client would send it. Names travel as UTF-8 in a
 * quoted filename, so those a quoted string cannot carry (quotes, backslashes,
 * control characters, lone surrogates) are left to the domain tests.
 */
const sendable = (upload: Upload) =>
  !/["\\\u0000-\u001f\u007f-\u009f]|\p{Surrogate}/u.test(upload.name) &&
  /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(upload.contentType) &&
  // A part whose Content-Type cannot be parsed counts as text/plain (see the test below).
  /^[!#$%&'*+.^\w|~-]+\/[!#$%&'*+.^\w|~-]+(?:\s*;\s*[!#$%&'*+.^\w|~-]+=(?:[!#$%&'*+.^\w|~-]+|"[^"\\]*"))*\s*$/.test(
    upload.contentType
  )

const multipartBody = (upload: Upload): Uint8Array => {
  const head = encoder.encode(
    `--tandem-boundary\r\nContent-Disposition: form-data; name="file"; filename="${upload.name}"\r\n` +
      `Content-Type: ${upload.contentType}\r\n\r\n`
  )
  const tail = encoder.encode("\r\n--tandem-boundary--\r\n")
  const body = new Uint8Array(head.byteLength + upload.bytes.byteLength + tail.byteLength)
  body.set(head, 0)
  body.set(upload.bytes, head.byteLength)
  body.set(tail, head.byteLength + upload.bytes.byteLength)
  return body
}

const send = (base: string, upload: Upload) =>
  request(`${base}/files`, {
    method: "POST",
    headers: { "content-type": "multipart/form-data; boundary=tandem-boundary" },
    body: multipartBody(upload)
  })

const policy = UploadPolicy.default

layer(TestServer.layer(Layer.merge(MemoryObjectStore.layer, MemoryFileRepository.layer)), {
  excludeTestServices: true
})(
  "HTTP API under generated uploads",
  (it) => {
    it.effect.prop(
      "every valid file is stored as sent: 201, its exact name and size",
      [validUpload(policy).filter(sendable)],
      ([upload]) =>
        Effect.gen(function*() {
          const base = yield* TestServer.baseUrl
          const response = yield* send(base, upload)
          expect(response.status).toBe(201)
          expect(response.json).toMatchObject({ name: baseName(upload.name), size: upload.bytes.byteLength })
          const id = (response.json as { id: string }).id
          const content = yield* request(`${base}/files/${id}/content`)
          expect(content.bytes).toEqual(upload.bytes)
        }),
      { fastCheck: { numRuns: 60 } }
    )

    it.effect("a part whose Content-Type cannot be parsed counts as text/plain, the multipart default", () =>
      Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const bytes = new TextEncoder().encode("x".repeat(600))
        const response = yield* send(base, { name: "a.txt", contentType: "text /plain", bytes })
        expect(response.status).toBe(201)
        expect(response.json).toMatchObject({ contentType: "text/plain" })
      }))

    it.effect.prop(
      "every invalid file gets the status of its refusal and the tag in the body, never a 500",
      [invalidUpload(policy).filter(sendable)],
      ([upload]) =>
        Effect.gen(function*() {
          const base = yield* TestServer.baseUrl
          const response = yield* send(base, upload)
          if (upload.name === "") {
            // `filename=""` is how a form says "no file chosen".
            expect(response.json).toMatchObject({ error: "MissingFilePart" })
            expect(response.status).toBe(400)
          } else {
            expect(response.json).toMatchObject({ error: upload.expected })
            expect(response.status).toBe(statusOf[upload.expected])
          }
        }),
      { fastCheck: { numRuns: 150 } }
    )
  }
)
