import { beforeAll, describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { createSHA256, type IHasher } from "hash-wasm"
import { ContentCheck } from "../../src/domain/ContentCheck.js"
import { incompleteSequence, ResumableContentCheck } from "../../src/domain/ResumableContentCheck.js"
import type { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import * as Arb from "../support/Arbitraries.js"
import { split } from "../support/Content.js"

const whole = (policy: UploadPolicy, bytes: Uint8Array) => {
  const check = new ContentCheck(policy)
  return Either.mapLeft(Either.flatMap(check.update(bytes), () => check.finish()), (error) => error._tag)
}

let hash: IHasher
beforeAll(async () => {
  hash = await createSHA256()
})

/**
 * Each chunk in "another process": the state saved after the chunk before, loaded
 * into a fresh check (the hasher reset first, so nothing survives but the state).
 */
const resumed = (policy: UploadPolicy, length: number, chunks: ReadonlyArray<Uint8Array>) => {
  hash.init()
  let saved = ResumableContentCheck.start(policy, length, hash).save()
  for (const chunk of chunks) {
    hash.init()
    const check = ResumableContentCheck.restore(policy, length, hash, saved)
    if (check === undefined) throw new Error("a saved state did not restore")
    const step = check.update(chunk)
    if (Either.isLeft(step)) return Either.left(step.left._tag)
    saved = check.save()
  }
  hash.init()
  const last = ResumableContentCheck.restore(policy, length, hash, saved)
  if (last === undefined) throw new Error("a saved state did not restore")
  return Either.mapLeft(last.finish(), (error) => error._tag)
}

describe("ResumableContentCheck", () => {
  it.prop(
    "saved and restored between any chunks, its verdict, size and sha256 are ContentCheck's over the whole",
    [
      Arb.uploadPolicy,
      fc.oneof(Arb.anyBytes, fc.uint8Array({ maxLength: 3000 }), Arb.utf8Between(0, 3000)),
      fc.array(fc.nat(), { maxLength: 12 })
    ],
    ([policy, bytes, cuts]) => {
      expect(resumed(policy, bytes.byteLength, split(bytes, cuts))).toEqual(whole(policy, bytes))
    }
  )

  it.prop(
    "bytes past the declared length are refused (FileTooLarge), wherever the cuts fall",
    [Arb.utf8Between(2, 2000), fc.array(fc.nat(), { maxLength: 6 }), fc.nat()],
    ([bytes, cuts, shorter]) => {
      const policy = { minBytes: 0, maxBytes: 5000, contentTypes: ["text/plain"], extensions: ["txt"] } as UploadPolicy
      const length = shorter % bytes.byteLength
      expect(resumed(policy, length, split(bytes, cuts))).toEqual(Either.left("FileTooLarge"))
    }
  )

  it("a state that is not one is refused rather than misread", () => {
    hash.init()
    const policy = { minBytes: 0, maxBytes: 10, contentTypes: ["text/plain"], extensions: ["txt"] } as UploadPolicy
    expect(ResumableContentCheck.restore(policy, 10, hash, new Uint8Array(3))).toBeUndefined()
    const saved = ResumableContentCheck.start(policy, 10, hash).save()
    saved[0] = 99
    expect(ResumableContentCheck.restore(policy, 10, hash, saved)).toBeUndefined()
  })

  it("incompleteSequence: the start of an unfinished character, nothing for a finished one", () => {
    const bytes = (...values: Array<number>) => new Uint8Array(values)
    expect(incompleteSequence(bytes(0x61, 0x62))).toEqual(bytes())
    expect(incompleteSequence(bytes(0x61, 0xc3))).toEqual(bytes(0xc3))
    expect(incompleteSequence(bytes(0xc3, 0xa9))).toEqual(bytes())
    expect(incompleteSequence(bytes(0x61, 0xe2, 0x82))).toEqual(bytes(0xe2, 0x82))
    expect(incompleteSequence(bytes(0xe2, 0x82, 0xac))).toEqual(bytes())
    expect(incompleteSequence(bytes(0xf0, 0x9f, 0x98))).toEqual(bytes(0xf0, 0x9f, 0x98))
    expect(incompleteSequence(bytes(0x9f, 0x98, 0x80))).toEqual(bytes())
    expect(incompleteSequence(bytes())).toEqual(bytes())
  })
})
