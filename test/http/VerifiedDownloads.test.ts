/**
 * Downloads are verified: a whole file is hashed as it streams and its last chunk
 * held back until it matches, so a store that flips a byte, or truncates, never
 * yields a clean 200 with wrong bytes (the response is cut before its last byte);
 * a ranged read checks the object's size first.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import * as http from "node:http"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as MemoryObjectStore from "../../src/adapters/objects/MemoryObjectStore.js"
import type { ObjectBackend } from "../../src/adapters/objects/ObjectBackend.js"
import * as Backends from "../support/Backends.js"
import { textOfSize, upload } from "../support/Http.js"
import * as TestServer from "../support/TestServer.js"

/** flip: one byte changed; short: the body ends a byte early; shrunk: the object is a byte short, and says so. */
type Damage = "none" | "flip" | "short" | "shrunk"

/** A memory backend whose reads can be damaged on demand. */
const damaging = Effect.gen(function*() {
  const inner = yield* MemoryObjectStore.makeBackend
  let damage: Damage = "none"
  const backend: ObjectBackend = {
    ...inner,
    get: (key, range) =>
      Effect.map(inner.get(key, range), (object) => {
        if (damage === "none") return object
        const bytes = Stream.runCollect(object.body).pipe(
          Effect.map((chunks) => Buffer.concat(Array.from(chunks))),
          Effect.map((all) => {
            if (damage !== "flip") return all.subarray(0, all.byteLength - 1)
            const copy = Buffer.from(all)
            copy[copy.byteLength - 1] = (copy[copy.byteLength - 1] ?? 0) ^ 0x01
            return copy
          })
        )
        // Several chunks, as a real store streams them.
        const chunks = Stream.flatMap(Stream.fromEffect(bytes), (all) =>
          Stream.fromIterable(Array.from({ length: Math.ceil(all.byteLength / 256) }, (_, i) =>
            all.subarray(i * 256, (i + 1) * 256))))
        return { ...object, size: damage === "shrunk" ? object.size - 1 : object.size, body: chunks }
      })
  }
  return { backend, damage: (next: Damage) => Effect.sync(() => void (damage = next)) }
})

/** What a plain client gets: status, the announced length, the bytes that came, and whether the body ended cleanly. */
const fetchRaw = (url: string, headers: Record<string, string> = {}) =>
  Effect.async<{ status: number; length: number; received: number; complete: boolean }>((resume) => {
    http.get(url, { headers }, (res) => {
      let received = 0
      res.on("data", (chunk: Buffer) => (received += chunk.byteLength))
      const done = (complete: boolean) =>
        resume(
          Effect.succeed({
            status: res.statusCode ?? 0,
            length: Number(res.headers["content-length"]),
            received,
            complete
          })
        )
      res.on("end", () => done(res.complete))
      res.on("aborted", () => done(false))
      res.on("error", () => done(false))
    }).on("error", () => resume(Effect.succeed({ status: 0, length: 0, received: 0, complete: false })))
  })

describe("verified downloads", () => {
  it.live("a flipped byte or a truncated object never reaches the client as a clean 200: the body is cut short", () =>
    Effect.gen(function*() {
      const { backend, damage } = yield* damaging
      const stores = Backends.objectStore(TestServer.testPartSize).pipe(
        Layer.provide(Layer.succeed(Backends.Backend, backend)),
        Layer.merge(MemoryFileRepository.layer)
      )
      yield* Effect.gen(function*() {
        const base = yield* TestServer.baseUrl
        const created = yield* upload(base, "a.txt", "text/plain", textOfSize(2000))
        const { id } = created.json as { id: string }
        const url = `${base}/files/${id}/content`
        expect(yield* fetchRaw(url)).toEqual({ status: 200, length: 2000, received: 2000, complete: true })
        // Whole downloads are checked as they stream.
        for (const kind of ["flip", "short"] as const) {
          yield* damage(kind)
          const got = yield* fetchRaw(url)
          yield* damage("none")
          expect(got.complete, kind).toBe(false)
          expect(got.received, kind).toBeLessThan(2000)
        }
        // An object whose size is not the record's is refused before anything is sent, whole or ranged.
        yield* damage("shrunk")
        const whole = yield* fetchRaw(url)
        const ranged = yield* fetchRaw(url, { range: "bytes=10-19" })
        yield* damage("none")
        expect(whole).toMatchObject({ status: 500, complete: true })
        expect(ranged).toMatchObject({ status: 500, complete: true })
      }).pipe(Effect.provide(TestServer.layer(stores)))
    }))
})
