import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck as fc, Schema } from "effect"
import { createHash } from "node:crypto"
import { MAX_UPLOAD_BYTES, UploadPolicy, validateDeclaration } from "../../src/domain/UploadPolicy.js"
import * as Arb from "../support/Arbitraries.js"
import { validateContent, validateUpload } from "../support/Content.js"

/** The refusal's `_tag`, or "accepted". */
const verdict = <A, E extends { readonly _tag: string }>(effect: Effect.Effect<A, E>): string =>
  Either.match(Effect.runSync(Effect.either(effect)), { onLeft: (error) => error._tag, onRight: () => "accepted" })

const refusal = <A, E>(effect: Effect.Effect<A, E>): E =>
  Either.match(Effect.runSync(Effect.either(effect)), {
    onLeft: (error) => error,
    onRight: () => expect.fail("expected a refusal, the file was accepted")
  })

/** Independent oracle: valid UTF-8 is exactly what survives Node's decode and re-encode unchanged. */
const nodeSaysUtf8 = (bytes: Uint8Array): boolean =>
  Buffer.from(Buffer.from(bytes).toString("utf8"), "utf8").equals(bytes)

/** The policy's UTF-8 verdict alone: a policy that accepts any size. */
const anySize = new UploadPolicy({
  minBytes: 0,
  maxBytes: MAX_UPLOAD_BYTES,
  contentTypes: ["text/plain"],
  extensions: ["txt"]
})
const isUtf8 = (bytes: Uint8Array): boolean =>
  Either.isRight(Effect.runSync(Effect.either(validateContent(anySize, bytes))))

const declarationTags: ReadonlyArray<string> = ["InvalidFileName", "ContentTypeNotAllowed", "ExtensionNotAllowed"]

describe("UploadPolicy.default", () => {
  it("is the original design's 512 to 2048 bytes of text/plain in .txt files", () => {
    expect(Schema.encodeSync(UploadPolicy)(UploadPolicy.default)).toEqual({
      minBytes: 512,
      maxBytes: 2048,
      contentTypes: ["text/plain"],
      extensions: ["txt"]
    })
  })
})

describe("valid files are accepted", () => {
  it.effect.prop(
    "by validateUpload, under the default and random policies",
    [Arb.withPolicy(Arb.validUploadCase)],
    ([[policy, file]]) =>
      Effect.gen(function*() {
        const accepted = yield* validateUpload(policy, file, file.bytes)
        expect(accepted).toEqual({
          name: file.baseName,
          contentType: file.mediaType,
          extension: file.extension,
          bytes: file.bytes,
          size: file.bytes.byteLength,
          sha256: createHash("sha256").update(file.bytes).digest("hex")
        })
      })
  )

  it.prop(
    "by validateDeclaration and validateContent on their own",
    [Arb.withPolicy(Arb.validUploadCase)],
    ([[policy, file]]) => {
      expect(verdict(validateDeclaration(policy, file))).toBe("accepted")
      expect(verdict(validateContent(policy, file.bytes))).toBe("accepted")
    }
  )

  it.effect("names behind browser path prefixes keep only their last segment", () =>
    Effect.gen(function*() {
      const declared = { name: "C:\\fakepath\\Notes.TXT", contentType: "Text/Plain; charset=UTF-8" }
      const accepted = yield* validateDeclaration(UploadPolicy.default, declared)
      expect(accepted).toEqual({ name: "Notes.TXT", contentType: "text/plain", extension: "txt" })
    }))
})

describe("names are kept in one form", () => {
  it.effect.prop(
    "however a name's characters are composed (NFC, NFD), it is kept composed: one name, one record",
    [Arb.withPolicy((p) => fc.tuple(Arb.validName(p), Arb.validContentType(p)))],
    ([[policy, [name, type]]]) =>
      Effect.gen(function*() {
        const composed = yield* validateDeclaration(policy, { name: name.name, contentType: type.contentType })
        const decomposed = yield* validateDeclaration(policy, {
          name: name.name.normalize("NFD"),
          contentType: type.contentType
        })
        expect(decomposed.name).toBe(composed.name)
        expect(composed.name).toBe(name.baseName)
      })
  )

  it.effect("a decomposed é is stored as the one character U+00E9", () =>
    Effect.gen(function*() {
      const accepted = yield* validateDeclaration(UploadPolicy.default, {
        name: "Cafe\u0301.txt",
        contentType: "text/plain"
      })
      expect(accepted.name).toBe("Caf\u00e9.txt")
    }))

  it("a format character anywhere (bidi override, zero-width, BOM) is InvalidFileName", () => {
    for (const name of ["a\u202Egpj.txt", "in\u200Bvoice.txt", "\uFEFFnotes.txt", "x\u2066y.txt", "a\u00ADb.txt"]) {
      expect(verdict(validateDeclaration(UploadPolicy.default, { name, contentType: "text/plain" })), name).toBe(
        "InvalidFileName"
      )
    }
  })
})

describe("invalid files are refused with the right variant", () => {
  it.prop(
    "following the precedence name, content type, extension, not UTF-8, too large, too small",
    [Arb.withPolicy(Arb.invalidUpload)],
    ([[policy, file]]) => {
      expect(verdict(validateUpload(policy, file, file.bytes))).toBe(file.expected)
      const declarationVerdict = declarationTags.includes(file.expected) ? file.expected : "accepted"
      expect(verdict(validateDeclaration(policy, file))).toBe(declarationVerdict)
    }
  )

  it.prop(
    "too small: FileTooSmall with the size and the minimum",
    [Arb.withPolicy((p) => Arb.contentFor(p, "tooSmall", false), Arb.uploadPolicy.filter((p) => p.minBytes > 0))],
    ([[policy, bytes]]) => {
      expect(refusal(validateContent(policy, bytes))).toMatchObject({
        _tag: "FileTooSmall",
        size: bytes.byteLength,
        minBytes: policy.minBytes
      })
    }
  )

  it.prop(
    "too large: FileTooLarge with the maximum",
    [Arb.withPolicy((p) => Arb.contentFor(p, "tooLarge", false))],
    ([[policy, bytes]]) => {
      expect(refusal(validateContent(policy, bytes))).toMatchObject({ _tag: "FileTooLarge", maxBytes: policy.maxBytes })
    }
  )

  it.prop("a type not allowed: ContentTypeNotAllowed with the declared type", [
    Arb.withPolicy((p) => fc.record({ name: Arb.validName(p).map((n) => n.name), contentType: Arb.badContentType(p) }))
  ], ([[policy, declared]]) => {
    expect(refusal(validateDeclaration(policy, declared))).toMatchObject({
      _tag: "ContentTypeNotAllowed",
      contentType: declared.contentType,
      allowed: policy.contentTypes
    })
  })

  it.prop("an extension not allowed or missing: ExtensionNotAllowed with the extension", [
    Arb.withPolicy((p) => fc.tuple(Arb.nameWithBadExtension(p), Arb.validContentType(p)))
  ], ([[policy, [name, type]]]) => {
    expect(refusal(validateDeclaration(policy, { name: name.name, contentType: type.contentType }))).toMatchObject({
      _tag: "ExtensionNotAllowed",
      extension: name.extension,
      allowed: policy.extensions
    })
  })

  it.prop(
    "content that is not UTF-8: NotUtf8",
    [Arb.withPolicy((p) => Arb.contentFor(p, "none", true))],
    ([[policy, bytes]]) => {
      expect(verdict(validateContent(policy, bytes))).toBe("NotUtf8")
    }
  )

  it.prop("an empty, control-character, lone-surrogate or over-long name: InvalidFileName", [
    Arb.withPolicy((p) => fc.tuple(Arb.invalidName(p), Arb.validContentType(p)))
  ], ([[policy, [name, type]]]) => {
    expect(verdict(validateDeclaration(policy, { name, contentType: type.contentType }))).toBe("InvalidFileName")
  })

  it("names are measured in UTF-8 bytes: 255 pass, 256 do not", () => {
    const declare = (name: string) =>
      verdict(validateDeclaration(UploadPolicy.default, { name, contentType: "text/plain" }))
    expect(declare(`${"a".repeat(251)}.txt`)).toBe("accepted")
    expect(declare(`${"a".repeat(252)}.txt`)).toBe("InvalidFileName")
    expect(declare(`a${"é".repeat(125)}.txt`)).toBe("accepted")
    expect(declare(`${"é".repeat(126)}.txt`)).toBe("InvalidFileName")
    expect(declare(`${"😀".repeat(62)}aaa.txt`)).toBe("accepted")
    expect(declare(`${"😀".repeat(63)}.txt`)).toBe("InvalidFileName")
    for (
      const name of [
        "",
        "dir/",
        "C:\\fakepath\\",
        ".",
        "..",
        "a/..",
        "a\u0000.txt",
        "a\nb.txt",
        "a\u007f.txt",
        "\ud800.txt"
      ]
    ) {
      expect(declare(name), JSON.stringify(name)).toBe("InvalidFileName")
    }
  })

  it("a wildcard admits only well-formed subtypes", () => {
    const policy = new UploadPolicy({ minBytes: 0, maxBytes: 10, contentTypes: ["text/*"], extensions: ["txt"] })
    const declare = (contentType: string) => verdict(validateDeclaration(policy, { name: "a.txt", contentType }))
    expect(declare("text/markdown; charset=utf-8")).toBe("accepted")
    for (
      const contentType of ["text/", "text/*", "text/a b", "text/x\r\nx-injected: 1", "text/é", "text/a/b", "image/png"]
    ) {
      expect(declare(contentType), JSON.stringify(contentType)).toBe("ContentTypeNotAllowed")
    }
  })
})

describe("size bounds are exact", () => {
  it.prop(
    "default policy: 511 too small, 512 and 2048 accepted, 2049 too large",
    [Arb.utf8OfLength(511), Arb.utf8OfLength(512), Arb.utf8OfLength(2048), Arb.utf8OfLength(2049)],
    ([b511, b512, b2048, b2049]) => {
      const upload = (bytes: Uint8Array) =>
        verdict(validateUpload(UploadPolicy.default, { name: "notes.txt", contentType: "text/plain" }, bytes))
      expect([upload(b511), upload(b512), upload(b2048), upload(b2049)]).toEqual([
        "FileTooSmall",
        "accepted",
        "accepted",
        "FileTooLarge"
      ])
    }
  )

  it.prop("random policies: min-1 too small, min and max accepted, max+1 too large", [Arb.withPolicy((p) =>
    fc.record({
      below: p.minBytes > 0 ? Arb.utf8OfLength(p.minBytes - 1) : fc.constant(undefined),
      atMin: Arb.utf8OfLength(p.minBytes),
      atMax: Arb.utf8OfLength(p.maxBytes),
      above: Arb.utf8OfLength(p.maxBytes + 1)
    }), Arb.randomPolicy)], ([[policy, sizes]]) => {
    const check = (bytes: Uint8Array) => verdict(validateContent(policy, bytes))
    if (sizes.below !== undefined) expect(check(sizes.below)).toBe("FileTooSmall")
    expect(check(sizes.atMin)).toBe("accepted")
    expect(check(sizes.atMax)).toBe("accepted")
    expect(check(sizes.above)).toBe("FileTooLarge")
  })
})

describe("strict UTF-8 (validateContent)", () => {
  it.prop("agrees with Node's decode/re-encode round trip", [Arb.anyBytes], ([bytes]) => {
    expect(isUtf8(bytes)).toBe(nodeSaysUtf8(bytes))
  }, { fastCheck: { numRuns: 2000 } })

  it.prop("accepts any valid text, multi-byte characters included", [Arb.utf8Between(0, 256)], ([bytes]) => {
    expect(nodeSaysUtf8(bytes)).toBe(true)
    expect(isUtf8(bytes)).toBe(true)
  })

  it.prop("refuses text with an invalid sequence anywhere", [
    fc.integer({ min: 1, max: 256 }).chain(Arb.invalidUtf8OfLength)
  ], ([bytes]) => {
    expect(nodeSaysUtf8(bytes)).toBe(false)
    expect(isUtf8(bytes)).toBe(false)
  }, { fastCheck: { numRuns: 1000 } })

  it("keeps a byte order mark and refuses the classic traps", () => {
    expect(isUtf8(Uint8Array.of(0xef, 0xbb, 0xbf, 0x41))).toBe(true)
    for (const bytes of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0x80], [0xf5, 0x80, 0x80, 0x80], [0xff]]) {
      expect(isUtf8(Uint8Array.from(bytes)), JSON.stringify(bytes)).toBe(false)
    }
  })
})

describe("UploadPolicy schema", () => {
  const decode = Schema.decodeUnknownEither(UploadPolicy)
  const fields = { minBytes: 0, maxBytes: 10, contentTypes: ["text/plain"], extensions: ["txt"] }

  it.prop("random valid policies survive encoding and decoding", [Arb.uploadPolicy], ([policy]) => {
    const encoded = Schema.encodeSync(UploadPolicy)(policy)
    expect(Schema.encodeSync(UploadPolicy)(Schema.decodeUnknownSync(UploadPolicy)(encoded))).toEqual(encoded)
  })

  it.prop(
    "minBytes above maxBytes fails",
    [fc.nat({ max: MAX_UPLOAD_BYTES - 1 }), fc.integer({ min: 1, max: 1000 })],
    ([max, excess]) => {
      expect(Either.isLeft(decode({ ...fields, minBytes: max + excess, maxBytes: max }))).toBe(true)
    }
  )

  it.prop(
    "maxBytes above 5 GiB fails",
    [fc.integer({ min: MAX_UPLOAD_BYTES + 1, max: Number.MAX_SAFE_INTEGER })],
    ([maxBytes]) => {
      expect(Either.isLeft(decode({ ...fields, maxBytes }))).toBe(true)
      expect(Either.isRight(decode({ ...fields, maxBytes: MAX_UPLOAD_BYTES }))).toBe(true)
    }
  )

  it.prop("content types outside the `type/subtype` or `type/*` syntax fail", [fc.oneof(
    fc.constantFrom(
      "text",
      "text/",
      "/plain",
      "*/*",
      "text/plain; charset=utf-8",
      " text/plain",
      "text/pl ain",
      "text/a/b",
      ""
    ),
    fc.string().filter((s) => !/^[a-z0-9!#$&^_.+-]+\/(\*|[a-z0-9!#$&^_.+-]+)$/.test(s.toLowerCase()))
  )], ([contentType]) => {
    expect(Either.isLeft(decode({ ...fields, contentTypes: [contentType] }))).toBe(true)
    expect(Either.isLeft(decode({ ...fields, contentTypes: ["text/plain", contentType] }))).toBe(true)
  })

  it.prop(
    "mixed-case entries decode to lowercase",
    [fc.mixedCase(Arb.allowedContentType), fc.mixedCase(Arb.allowedExtension)],
    ([contentType, extension]) => {
      const policy = Schema.decodeUnknownSync(UploadPolicy)({
        ...fields,
        contentTypes: [contentType],
        extensions: [extension]
      })
      expect([policy.contentTypes, policy.extensions]).toEqual([[contentType.toLowerCase()], [extension.toLowerCase()]])
    }
  )

  it("bad extensions, empty allow-lists and bad sizes fail", () => {
    const bad = [
      ...[".txt", "", "t xt", "-txt", "tx.t", "tèxt"].map((e) => ({ ...fields, extensions: [e] })),
      { ...fields, extensions: [] },
      { ...fields, contentTypes: [] },
      { ...fields, minBytes: -1 },
      { ...fields, maxBytes: 1.5 }
    ]
    for (const input of bad) expect(Either.isLeft(decode(input)), JSON.stringify(input)).toBe(true)
    expect(
      Either.isRight(
        decode({ ...fields, contentTypes: ["text/*", "application/vnd.a+json"], extensions: ["md", "c++"] })
      )
    ).toBe(true)
  })
})
