import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { createHash } from "node:crypto"
import { ContentCheck } from "../../src/domain/ContentCheck.js"
import * as Arb from "../support/Arbitraries.js"
import { split, type validateContent } from "../support/Content.js"

const streamed = (policy: Parameters<typeof validateContent>[0], chunks: ReadonlyArray<Uint8Array>) => {
  const check = new ContentCheck(policy)
  for (const chunk of chunks) {
    const step = check.update(chunk)
    if (Either.isLeft(step)) return Either.left(step.left._tag)
  }
  return Either.map(Either.mapLeft(check.finish(), (error) => error._tag), (content) => content)
}

const whole = (policy: Parameters<typeof validateContent>[0], bytes: Uint8Array) => {
  const check = new ContentCheck(policy)
  return Either.mapLeft(Either.flatMap(check.update(bytes), () => check.finish()), (error) => error._tag)
}

describe("ContentCheck", () => {
  it.prop(
    "the verdict, size and sha256 do not depend on how the bytes are chunked",
    [
      Arb.uploadPolicy,
      fc.oneof(Arb.anyBytes, fc.uint8Array({ maxLength: 3000 })),
      fc.array(fc.nat(), { maxLength: 12 })
    ],
    ([policy, bytes, cuts]) => {
      expect(streamed(policy, split(bytes, cuts))).toEqual(whole(policy, bytes))
    }
  )

  it.prop(
    "an accepted file's size and sha256 are those of its bytes",
    [Arb.withPolicy((policy) => Arb.contentFor(policy, "none", false)), fc.array(fc.nat(), { maxLength: 12 })],
    ([[policy, bytes], cuts]) => {
      const verdict = streamed(policy, split(bytes, cuts))
      expect(verdict).toEqual(Either.right({
        size: bytes.byteLength,
        sha256: createHash("sha256").update(bytes).digest("hex")
      }))
    }
  )
})
