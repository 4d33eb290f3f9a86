import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import {
  MAX_METADATA_BYTES,
  sanitizeMetadata,
  sanitizeMetadataKey,
  sanitizeMetadataValue
} from "../../src/domain/ObjectMetadata.js"

/** Any UTF-16 code unit, so lone surrogates turn up too. */
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit))

/** Mostly 4-byte characters (12 escaped characters each): long enough to need truncation. */
const longText = fc.limitShrink(fc.string({ unit: "binary", minLength: 150, maxLength: 400, size: "max" }), 200)

/** Unicode text, well-formed or not, short or long enough to need truncation. */
const anyText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: codeUnit, maxLength: 40 }),
  longText
)

const wellFormed = fc.oneof(fc.string({ unit: "binary" }), fc.string({ unit: "grapheme" }), fc.string())

const anyMetadata = fc.dictionary(anyText, anyText, { maxKeys: 8, size: "max" })

const printableWithoutPercent = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c))
})
  .map((s) => s.replace(/%/g, ""))

const cleanKey = fc.oneof(
  fc.constantFrom("constructor", "original-name", "sha256", "content-type"),
  fc.stringMatching(/^[a-z0-9-]{1,20}$/)
)

const totalSize = (metadata: Record<string, string>) =>
  Object.entries(metadata).reduce((sum, [key, value]) => sum + key.length + value.length, 0)

/** The replacement a lone surrogate gets: U+FFFD. */
const replaceLoneSurrogates = (text: string) => text.replace(/\p{Surrogate}/gu, "\ufffd")

const BROKEN_ESCAPE = /%(?![0-9A-F]{2})/

describe("sanitizeMetadata", () => {
  it.prop("yields header-safe keys and values within S3's 2 KB", [anyMetadata], ([metadata]) => {
    const out = sanitizeMetadata(metadata)
    for (const [key, value] of Object.entries(out)) {
      expect(key).toMatch(/^[a-z0-9-]+$/)
      expect(value).toMatch(/^[\x20-\x7e]*$/)
      expect(value).not.toMatch(BROKEN_ESCAPE)
    }
    expect(totalSize(out)).toBeLessThanOrEqual(MAX_METADATA_BYTES)
  })

  it.prop("keeps entries that are already clean and fit", [
    fc.dictionary(cleanKey, printableWithoutPercent, { maxKeys: 6 })
  ], ([metadata]) => {
    fc.pre(totalSize(metadata) <= MAX_METADATA_BYTES)
    expect(sanitizeMetadata(metadata)).toEqual(metadata)
  })

  it("keeps a key named like an Object.prototype member", () => {
    expect(sanitizeMetadata({ constructor: "x", "original-name": "notes.txt" })).toEqual({
      constructor: "x",
      "original-name": "notes.txt"
    })
  })

  it.prop("truncates a long value to a decodable prefix, cut as late as possible", [
    cleanKey,
    longText,
    fc.string({ unit: "binary", minLength: 1, maxLength: 4 })
  ], ([key, value, tail]) => {
    const full = sanitizeMetadataValue(value + tail)
    const room = MAX_METADATA_BYTES - key.length
    const out = sanitizeMetadata({ [key]: value + tail })[key] ?? ""
    expect(full.startsWith(out)).toBe(true)
    expect(out).not.toMatch(BROKEN_ESCAPE)
    expect((value + tail).startsWith(decodeURIComponent(out))).toBe(true)
    // At most one character's escapes (up to 12 characters, %F0%9F%98%80) are given up.
    expect(out.length).toBeGreaterThan(Math.min(full.length, room) - 12)
  })

  it("truncation gives up a whole character, not part of its UTF-8 sequence", () => {
    for (let pad = 2030; pad <= 2047; pad++) {
      const out = sanitizeMetadata({ k: `${"a".repeat(pad)}€😀` }).k ?? ""
      expect(() => decodeURIComponent(out), `pad ${pad}: ${out.slice(-14)}`).not.toThrow()
      expect(out.length).toBeLessThanOrEqual(MAX_METADATA_BYTES - 1)
    }
  })
})

describe("sanitizeMetadataKey", () => {
  it.prop("is lowercase letters, digits and dashes, one per UTF-16 unit", [anyText], ([key]) => {
    const out = sanitizeMetadataKey(key)
    expect(out).toMatch(/^[a-z0-9-]*$/)
    expect(out.length).toBe(key.toLowerCase().length)
  })
})

describe("sanitizeMetadataValue", () => {
  it.prop("decodes back to the original with decodeURIComponent", [wellFormed], ([value]) => {
    expect(decodeURIComponent(sanitizeMetadataValue(value))).toBe(value)
  })

  it.prop("is printable ASCII, and lone surrogates come back as U+FFFD", [anyText], ([value]) => {
    const out = sanitizeMetadataValue(value)
    expect(out).toMatch(/^[\x20-\x7e]*$/)
    expect(decodeURIComponent(out)).toBe(replaceLoneSurrogates(value))
  })

  it.prop("leaves printable ASCII without % unchanged", [printableWithoutPercent], ([value]) => {
    expect(sanitizeMetadataValue(value)).toBe(value)
  })
})
