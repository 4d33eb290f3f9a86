import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { type ContentBatch, type ContentReader, cutParts } from "../../src/app/ContentReader.js"
import { concatBytes } from "../../src/ports/ObjectStore.js"

/** A reader that hands out the given batches, whatever size is asked for, as a socket would. */
const scripted = (batches: ReadonlyArray<ReadonlyArray<Uint8Array>>): ContentReader<never> => {
  let next = 0
  return {
    read: () =>
      Effect.sync((): ContentBatch => {
        const chunks = batches[next] ?? []
        next += 1
        return { chunks, ended: next >= batches.length }
      })
  }
}

const chunk = fc.uint8Array({ minLength: 1, maxLength: 40 })

describe("cutParts", () => {
  it.effect.prop(
    "parts rebuild the content; all but the last have exactly partSize bytes; every chunk is checked once",
    [fc.array(chunk, { maxLength: 5 }), fc.array(fc.array(chunk, { maxLength: 4 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 64 })],
    ([pending, batches, partSize]) =>
      Effect.gen(function*() {
        const checked: Array<Uint8Array> = []
        const nextPart = cutParts(scripted(batches), partSize, (c) => Effect.sync(() => void checked.push(c)), [...pending])
        const parts: Array<Uint8Array> = []
        for (let last = false; !last;) {
          const part = yield* nextPart
          last = part.last
          parts.push(part.bytes.slice()) // the buffer is reused by the next part
        }
        const expected = concatBytes([...pending, ...batches.flat()])
        expect(concatBytes(parts)).toEqual(expected)
        for (const part of parts.slice(0, -1)) expect(part.byteLength).toBe(partSize)
        expect((parts.at(-1) ?? new Uint8Array()).byteLength).toBeLessThanOrEqual(partSize)
        expect(checked).toEqual(batches.flat())
      })
  )

  it.effect("a failed check stops the parts", () =>
    Effect.gen(function*() {
      const nextPart = cutParts(scripted([[Uint8Array.of(1, 2)], [Uint8Array.of(3)]]), 2, (c) => c[0] === 3 ? Effect.fail("bad") : Effect.void, [])
      expect((yield* nextPart).bytes).toEqual(Uint8Array.of(1, 2))
      expect(yield* Effect.flip(nextPart)).toBe("bad")
    }))
})
