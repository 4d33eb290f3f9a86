/**
 * The upload page checks files before sending them (src/adapters/http/page/rules.ts);
 * here its verdicts are held to the server's own (UploadPolicy.validateDeclaration,
 * then ContentCheck), tag and message alike, on generated names, content types,
 * contents and chunkings: a file the page refuses is one the server would refuse,
 * for the same reason, told in the same words.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck as fc } from "effect"
import { contentCheck, declarationRefusal, type Policy, type Refusal } from "../../src/adapters/http/page/rules.js"
import { ContentCheck } from "../../src/domain/ContentCheck.js"
import { type UploadPolicy, validateDeclaration } from "../../src/domain/UploadPolicy.js"
import * as Arb from "../support/Arbitraries.js"

const asPage = (policy: UploadPolicy): Policy => ({ ...policy, authentication: "none" })

const accepted = "accepted"

/** The server's verdict: the first rule the file breaks, as its tag and message. */
const serverVerdict = (
  policy: UploadPolicy,
  name: string,
  contentType: string,
  chunks: ReadonlyArray<Uint8Array>
): Refusal | typeof accepted => {
  const declared = Effect.runSync(Effect.either(validateDeclaration(policy, { name, contentType })))
  if (Either.isLeft(declared)) return { tag: declared.left._tag, message: declared.left.message }
  const check = new ContentCheck(policy)
  for (const chunk of chunks) {
    const step = check.update(chunk)
    if (Either.isLeft(step)) return { tag: step.left._tag, message: step.left.message }
  }
  const end = check.finish()
  return Either.isLeft(end) ? { tag: end.left._tag, message: end.left.message } : accepted
}

const pageVerdict = (
  policy: Policy,
  name: string,
  contentType: string,
  chunks: ReadonlyArray<Uint8Array>
): Refusal | typeof accepted => {
  const declared = declarationRefusal(policy, name, contentType)
  if (declared !== undefined) return declared
  const check = contentCheck(policy)
  for (const chunk of chunks) {
    const refused = check.update(chunk)
    if (refused !== undefined) return refused
  }
  return check.finish() ?? accepted
}

const name = fc.oneof(
  fc.constantFrom(
    "notes.txt",
    "NOTES.TXT",
    "C:\\fakepath\\notes.txt",
    "dir/notes.txt",
    "",
    ".",
    "..",
    ".txt",
    "notes",
    "notes.",
    "a\u202Egpj.txt",
    "zero\u200Bwidth.txt",
    "bell\u0007.txt",
    "lone\uD800.txt",
    "e\u0301.txt",
    `${"é".repeat(127)}.txt`,
    `${"x".repeat(252)}.txt`,
    `${"x".repeat(251)}.txt`
  ),
  fc.tuple(fc.string({ unit: "binary", maxLength: 12 }), fc.constantFrom(".txt", ".md", ".TXT", "", ".json")).map((
    [stem, extension]
  ) => stem + extension),
  fc.tuple(fc.string({ maxLength: 10 }), Arb.allowedExtension).map(([stem, extension]) => `${stem}.${extension}`)
)

const contentType = fc.oneof(
  fc.constantFrom(
    "text/plain",
    "Text/Plain; charset=UTF-8",
    "text/markdown",
    "image/png",
    "application/octet-stream",
    "",
    "text/a b",
    "text/",
    "*/*"
  ),
  Arb.allowedContentType
)

const content = fc.oneof(
  Arb.utf8Between(0, 3100),
  fc.integer({ min: 1, max: 3100 }).chain((length) => Arb.invalidUtf8OfLength(length)),
  fc.uint8Array({ maxLength: 64 })
)

/** The bytes cut at random places, as a browser's stream or a socket delivers them. */
const chunked = (bytes: Uint8Array) =>
  fc.uniqueArray(fc.integer({ min: 0, max: bytes.length }), { maxLength: 6 }).map((cuts) => {
    const at = [0, ...cuts.sort((a, b) => a - b), bytes.length]
    return at.slice(1).map((end, i) => bytes.subarray(at[i] ?? 0, end))
  })

describe("the upload page's rules", () => {
  it("agree with the server's, tag and message, on every file", () => {
    fc.assert(
      fc.property(
        Arb.uploadPolicy,
        name,
        contentType,
        content.chain(chunked),
        (policy, name, contentType, chunks) => {
          expect(pageVerdict(asPage(policy), name, contentType, chunks)).toEqual(
            serverVerdict(policy, name, contentType, chunks)
          )
        }
      ),
      { numRuns: 2000 }
    )
  })

  it("accept a valid upload of any allowed kind", () => {
    fc.assert(
      fc.property(Arb.uploadPolicy.chain((policy) => fc.tuple(fc.constant(policy), Arb.validUpload(policy))), (
        [policy, upload]
      ) => {
        expect(pageVerdict(asPage(policy), upload.name, upload.contentType, [upload.bytes])).toBe(accepted)
      }),
      { numRuns: 300 }
    )
  })
})
