/**
 * FastCheck generators for uploads, shared by the tests. `validUpload(policy)` gives
 * files the policy must accept; `invalidUpload(policy)` gives files it must refuse,
 * with the `_tag` the refusal must carry under the documented precedence.
 */
import { FastCheck as fc } from "effect"
import type { UploadRejected } from "../../src/domain/UploadErrors.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"

/** What a client sends: a name, a Content-Type header and the bytes. */
export interface Upload {
  readonly name: string
  readonly contentType: string
  readonly bytes: Uint8Array
}

/** A valid upload and what the policy must make of it. */
export interface ValidUploadCase extends Upload {
  readonly baseName: string
  readonly mediaType: string
  readonly extension: string
}

export type RejectionTag = UploadRejected["_tag"]

/** An invalid upload and the refusal it must get. */
export interface InvalidUpload extends Upload {
  readonly expected: RejectionTag
}

const encoder = new TextEncoder()
export const utf8Length = (text: string): number => encoder.encode(text).byteLength

const chars = (alphabet: string) => fc.constantFrom(...alphabet)
const LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
const codePointIn = (min: number, max: number) => fc.integer({ min, max }).map((cp) => String.fromCodePoint(cp))

// ---------------------------------------------------------------- policies

/** A `type` or `subtype` token as the policy's syntax allows it. */
export const mediaTypeToken = fc.string({ unit: chars(`${LOWER_ALNUM}!#$&^_.+-`), minLength: 1, maxLength: 12 })

/** An entry of a policy's allow-list: `type/subtype` or `type/*`. */
export const allowedContentType = fc.oneof(
  fc.constantFrom("text/plain", "text/*", "application/json", "text/csv"),
  fc.tuple(mediaTypeToken, mediaTypeToken).map(([type, subtype]) => `${type}/${subtype}`),
  mediaTypeToken.map((type) => `${type}/*`)
)

/** A lowercase extension without the dot. */
export const allowedExtension = fc.tuple(
  chars(LOWER_ALNUM),
  fc.string({ unit: chars(`${LOWER_ALNUM}_+-`), maxLength: 9 })
)
  .map(([first, rest]) => first + rest)

const nonEmpty = <A>(arb: fc.Arbitrary<A>) =>
  fc.tuple(arb, fc.array(arb, { maxLength: 3 })).map(([head, tail]): readonly [A, ...Array<A>] => [head, ...tail])

/**
 * Random policies small enough to generate content for: at least 4 bytes may be
 * sent (room for any invalid UTF-8 sequence), at most 3072.
 */
export const randomPolicy: fc.Arbitrary<UploadPolicy> = fc.record({
  minBytes: fc.integer({ min: 0, max: 1024 }),
  span: fc.integer({ min: 0, max: 2048 }),
  contentTypes: nonEmpty(allowedContentType),
  extensions: nonEmpty(allowedExtension)
}).map(({ contentTypes, extensions, minBytes, span }) =>
  new UploadPolicy({ minBytes, maxBytes: Math.max(minBytes + span, 4), contentTypes, extensions })
)

/** The default policy now and then, random ones otherwise. */
export const uploadPolicy: fc.Arbitrary<UploadPolicy> = fc.oneof(
  { arbitrary: fc.constant(UploadPolicy.default), weight: 1 },
  { arbitrary: randomPolicy, weight: 3 }
)

/** The policy's rule for content types, written independently of UploadPolicy.ts. */
export const contentTypeAllowed = (policy: UploadPolicy, declared: string): boolean => {
  const match = /^([a-z0-9!#$&^_.+-]+)\/([a-z0-9!#$&^_.+-]+)$/.exec((declared.split(";")[0] ?? "").trim().toLowerCase())
  return match !== null && policy.contentTypes.some((allowed) => allowed === match[0] || allowed === `${match[1]}/*`)
}

// ---------------------------------------------------------------- content

/** One character of each UTF-8 length, controls included (they are valid UTF-8). */
export const utf8Char = fc.oneof(
  codePointIn(0x00, 0x7f),
  codePointIn(0x80, 0x7ff),
  fc.oneof(codePointIn(0x800, 0xd7ff), codePointIn(0xe000, 0xffff)),
  codePointIn(0x10000, 0x10ffff)
)

/** Valid UTF-8 text of exactly `length` bytes, multi-byte characters included. */
export const utf8OfLength = (length: number): fc.Arbitrary<Uint8Array> =>
  // Shrinking thousands of characters one by one takes minutes; a bounded shrink is enough.
  fc.tuple(fc.limitShrink(fc.array(utf8Char, { maxLength: length, size: "max" }), 200), codePointIn(0x20, 0x7e)).map(
    ([text, pad]) => {
      let out = ""
      let bytes = 0
      for (const char of text) {
        const size = utf8Length(char)
        if (bytes + size <= length) {
          out += char
          bytes += size
        }
      }
      return encoder.encode(out + pad.repeat(length - bytes))
    }
  )

/** Valid UTF-8 text whose byte length lies in [min, max]. */
export const utf8Between = (min: number, max: number): fc.Arbitrary<Uint8Array> =>
  fc.integer({ min, max }).chain(utf8OfLength)

/** A byte sequence no valid UTF-8 text contains, wherever it is inserted. */
export const invalidUtf8Sequence: fc.Arbitrary<ReadonlyArray<number>> = fc.oneof(
  fc.integer({ min: 0x80, max: 0xbf }).map((b) => [b]), // lone continuation byte
  fc.constantFrom([0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xe0, 0x9f, 0xbf], [0xf0, 0x80, 0x80, 0x80]), // overlongs
  fc.tuple(fc.integer({ min: 0xa0, max: 0xbf }), fc.integer({ min: 0x80, max: 0xbf })).map((
    [b2, b3]
  ) => [0xed, b2, b3]), // surrogates
  fc.tuple(fc.oneof(codePointIn(0x80, 0xd7ff), codePointIn(0xe000, 0x10ffff)), fc.nat()).map(([char, n]) => {
    const bytes = [...encoder.encode(char)] // a multi-byte character cut short
    return bytes.slice(0, 1 + (n % (bytes.length - 1)))
  }),
  fc.integer({ min: 0xf5, max: 0xff }).map((b) => [b]), // never valid
  fc.constant([0xf4, 0x90, 0x80, 0x80]) // beyond U+10FFFF
)

/** Otherwise valid text of exactly `length` (>= 1) bytes with an invalid sequence at a random position. */
export const invalidUtf8OfLength = (length: number, within = length): fc.Arbitrary<Uint8Array> =>
  invalidUtf8Sequence.filter((sequence) => sequence.length <= length).chain((sequence) =>
    fc.tuple(utf8OfLength(length - sequence.length), fc.nat()).map(([valid, n]) => {
      const at = n % (Math.min(valid.length, within) + 1)
      return Uint8Array.from([...valid.subarray(0, at), ...sequence, ...valid.subarray(at)])
    })
  )

/** Bytes of any kind: random, valid text, and valid text with invalid sequences. */
export const anyBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.integer({ min: 0, max: 64 }).chain(utf8OfLength),
  fc.integer({ min: 1, max: 64 }).chain(invalidUtf8OfLength)
)

// ---------------------------------------------------------------- names

const isNameChar = (char: string) =>
  !/[\u0000-\u001f\u007f-\u009f/\\]/u.test(char) && !/\p{Cf}/u.test(char) && char.normalize("NFC") === char

/** Text as tandem keeps a name: in Unicode's composed form (NFC), whatever the client sent. */
const isComposed = (text: string) => text.normalize("NFC") === text

/**
 * A character a file name may hold: no controls, no format characters, no path
 * separators, no lone surrogates; one that NFC leaves alone.
 */
export const nameChar = utf8Char.filter(isNameChar)

/** What browsers and tools put before the name: nothing, `C:\fakepath\`, `../`, random directories. */
export const pathPrefix = fc.oneof(
  fc.constant(""),
  fc.constantFrom("C:\\fakepath\\", "/home/user/", "../../", "..\\", "./", "dir/sub\\"),
  fc.array(fc.tuple(fc.string({ maxLength: 8 }), fc.constantFrom("/", "\\")), { minLength: 1, maxLength: 3 })
    .map((parts) => parts.map(([segment, separator]) => segment.replace(/[/\\]/g, "") + separator).join(""))
)

/** A name of up to 40 characters (at most 160 bytes) before `.extension`. */
export const stem = fc.string({ unit: nameChar, minLength: 1, maxLength: 40 }).filter(isComposed)

/** A name with one of the policy's extensions, in mixed case, maybe behind a path. */
export const validName = (policy: UploadPolicy) =>
  fc.record({
    prefix: pathPrefix,
    stem,
    extension: fc.constantFrom(...policy.extensions).chain((e) => fc.mixedCase(fc.constant(e)))
  }).map(({ extension, prefix, stem }) => ({
    name: `${prefix}${stem}.${extension}`,
    baseName: `${stem}.${extension}`,
    extension: extension.toLowerCase()
  }))

/** A name the policy must refuse with InvalidFileName whatever the extension. */
export const invalidName = (policy: UploadPolicy) => {
  const extension = fc.constantFrom(...policy.extensions)
  return fc.oneof(
    fc.tuple(pathPrefix, fc.constantFrom("", ".", "..")).map(([prefix, base]) => prefix + base),
    fc.tuple(
      stem,
      extension,
      codePointIn(0x00, 0x1f),
      fc.constantFrom("\u0000", "\u007f", "\u0085", "\u009f"),
      fc.nat()
    )
      .map(([s, e, c0, other, n]) => insertAt(`${s}.${e}`, n % 2 === 0 ? c0 : other, n)),
    fc.tuple(stem, extension, fc.integer({ min: 0xd800, max: 0xdfff }), fc.nat())
      .map(([s, e, surrogate, n]) => insertAt(`${s}.${e}`, String.fromCharCode(surrogate), n)),
    // Format characters: bidi overrides, zero-width ones, the byte order mark, the soft hyphen.
    fc.tuple(
      stem,
      extension,
      fc.constantFrom("\u202e", "\u202d", "\u2066", "\u200b", "\u200d", "\ufeff", "\u00ad"),
      fc.nat()
    )
      .map(([s, e, format, n]) => insertAt(`${s}.${e}`, format, n)),
    fc.tuple(nameChar, extension).map(([c, e]) => {
      const tail = `.${e}`
      return c.repeat(Math.ceil((256 - utf8Length(tail)) / utf8Length(c))) + tail // > 255 bytes
    })
  )
}

const insertAt = (text: string, insert: string, n: number): string => {
  const points = [...text]
  const at = n % (points.length + 1)
  return [...points.slice(0, at), insert, ...points.slice(at)].join("")
}

/** A well-formed name whose extension the policy does not allow, or that has none. */
export const nameWithBadExtension = (policy: UploadPolicy) =>
  fc.oneof(
    fc.tuple(pathPrefix, fc.constantFrom(...policy.extensions)).map(([prefix, e]) => ({
      name: `${prefix}.${e}`,
      extension: ""
    })), // a dotfile
    strangeExtension(policy)
  )

const strangeExtension = (policy: UploadPolicy) =>
  fc.tuple(
    pathPrefix,
    stem,
    fc.oneof(
      fc.string({ unit: nameChar, minLength: 1, maxLength: 10 }).filter((e) => !e.includes(".")).map((e) => `.${e}`),
      fc.constantFrom("", ".") // no extension: "notes", "notes."
    )
  )
    .map(([prefix, s, suffix]) => ({ prefix, s: s.replace(/\./g, "_"), suffix }))
    .filter(({ s, suffix }) =>
      !policy.extensions.includes(suffix.slice(1).toLowerCase()) && utf8Length(s + suffix) <= 255 &&
      isComposed(s + suffix)
    )
    .map(({ prefix, s, suffix }) => ({ name: `${prefix}${s}${suffix}`, extension: suffix.slice(1).toLowerCase() }))

// ---------------------------------------------------------------- content types

const parameters = fc.constantFrom(
  "",
  "; charset=utf-8",
  ";charset=UTF-8",
  "; Charset=\"utf-8\"",
  "; format=flowed; charset=us-ascii"
)

/** A Content-Type header the policy allows: mixed case, maybe with parameters and spaces. */
export const validContentType = (policy: UploadPolicy) =>
  fc.constantFrom(...policy.contentTypes)
    .chain((allowed) =>
      allowed.endsWith("/*") ? mediaTypeToken.map((subtype) => allowed.slice(0, -1) + subtype) : fc.constant(allowed)
    )
    .chain((mediaType) =>
      fc.tuple(fc.mixedCase(fc.constant(mediaType)), parameters, fc.constantFrom("", " ")).map((
        [cased, params, space]
      ) => ({
        contentType: `${space}${cased}${params}`,
        mediaType
      }))
    )

/** A Content-Type header the policy does not allow, garbage included. */
export const badContentType = (policy: UploadPolicy) =>
  fc.oneof(
    fc.tuple(mediaTypeToken, mediaTypeToken).map(([type, subtype]) => `${type}/${subtype}`),
    fc.constantFrom("", "text", "text/", "/plain", "text/plain/x", "*/*", "text/*", "text /plain", "text/plain x"),
    // a wildcard's type with a subtype that is not a token
    fc.tuple(fc.constantFrom(...policy.contentTypes), fc.string({ minLength: 1, maxLength: 6 }))
      .map(([allowed, subtype]) => `${allowed.split("/")[0] ?? ""}/${subtype}`),
    fc.string()
  ).filter((contentType) => !contentTypeAllowed(policy, contentType))

// ---------------------------------------------------------------- uploads

/** A file the policy must accept, with the name, media type and extension it must yield. */
export const validUploadCase = (policy: UploadPolicy): fc.Arbitrary<ValidUploadCase> =>
  fc.record({
    name: validName(policy),
    type: validContentType(policy),
    bytes: utf8Between(policy.minBytes, policy.maxBytes)
  }).map(({ bytes, name, type }) => ({
    name: name.name,
    contentType: type.contentType,
    bytes,
    baseName: name.baseName,
    mediaType: type.mediaType,
    extension: name.extension
  }))

/** A file the policy must accept. */
export const validUpload = (policy: UploadPolicy): fc.Arbitrary<Upload> =>
  validUploadCase(policy).map(({ bytes, contentType, name }) => ({ name, contentType, bytes }))

export type SizeDefect = "none" | "tooLarge" | "tooSmall"

/** Content with the given defects; a too-small file needs minBytes >= 1 (>= 2 if also not UTF-8). */
export const contentFor = (policy: UploadPolicy, size: SizeDefect, notUtf8: boolean): fc.Arbitrary<Uint8Array> => {
  const [min, max] = size === "tooLarge"
    ? [policy.maxBytes + 1, policy.maxBytes + 64]
    : size === "tooSmall"
    ? [notUtf8 ? 1 : 0, policy.minBytes - 1]
    : [Math.max(policy.minBytes, notUtf8 ? 1 : 0), policy.maxBytes]
  // Past the maximum only the first maxBytes bytes are read: the bad sequence must lie (and show) within them.
  const within = size === "tooLarge" ? Math.max(0, policy.maxBytes - 4) : Number.MAX_SAFE_INTEGER
  return fc.integer({ min, max }).chain((length) =>
    notUtf8 ? invalidUtf8OfLength(length, within) : utf8OfLength(length)
  )
}

/**
 * A file with at least one defect, and the refusal due under the precedence
 * name, content type, extension, not UTF-8, too large, too small.
 */
export const invalidUpload = (policy: UploadPolicy): fc.Arbitrary<InvalidUpload> =>
  fc.record({
    badName: fc.boolean(),
    badType: fc.boolean(),
    badExtension: fc.boolean(),
    size: fc.constantFrom<SizeDefect>("none", "tooLarge", "tooSmall"),
    notUtf8: fc.boolean()
  })
    .filter((d) => d.badName || d.badType || d.badExtension || d.size !== "none" || d.notUtf8)
    .filter((d) => d.size !== "tooSmall" || policy.minBytes >= (d.notUtf8 ? 2 : 1))
    .filter((d) => !(d.size === "tooLarge" && d.notUtf8) || policy.maxBytes >= 5)
    .chain((d) =>
      fc.record({
        name: d.badName
          ? invalidName(policy)
          : d.badExtension
          ? nameWithBadExtension(policy).map((n) => n.name)
          : validName(policy).map((n) => n.name),
        contentType: d.badType ? badContentType(policy) : validContentType(policy).map((t) => t.contentType),
        bytes: contentFor(policy, d.size, d.notUtf8),
        expected: fc.constant<RejectionTag>(
          d.badName
            ? "InvalidFileName"
            : d.badType
            ? "ContentTypeNotAllowed"
            : d.badExtension
            ? "ExtensionNotAllowed"
            : d.notUtf8
            ? "NotUtf8"
            : d.size === "tooLarge"
            ? "FileTooLarge"
            : "FileTooSmall"
        )
      })
    )

/** A policy together with something generated for it. */
export const withPolicy = <A>(
  make: (policy: UploadPolicy) => fc.Arbitrary<A>,
  policies: fc.Arbitrary<UploadPolicy> = uploadPolicy
): fc.Arbitrary<readonly [UploadPolicy, A]> =>
  policies.chain((policy) => make(policy).map((value) => [policy, value] as const))
