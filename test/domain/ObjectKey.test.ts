import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc, Schema } from "effect"
import { FileId, ObjectKey } from "../../src/domain/FileRecord.js"
import { KeyPrefix, objectKeyFor } from "../../src/domain/ObjectKey.js"
import * as Arb from "../support/Arbitraries.js"

const accepts = (prefix: string) => Either.isRight(Schema.decodeUnknownEither(KeyPrefix)(prefix))

const SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!_.*'()-"

/** A segment of safe characters that is not "." or "..". */
const segment = fc.string({ unit: fc.constantFrom(...SAFE), minLength: 1, maxLength: 12 }).filter((s) =>
  s !== "." && s !== ".."
)

const validPrefix = fc.array(segment, { minLength: 1, maxLength: 4 }).map((segments) =>
  segments.map((s) => `${s}/`).join("")
)

describe("KeyPrefix", () => {
  it("accepts the documented prefixes and refuses the traps", () => {
    for (const prefix of ["files/", "a/b/", "tenant-a/uploads/", "...a/", "a.b/"]) {
      expect(accepts(prefix), prefix).toBe(true)
    }
    for (
      const prefix of [
        "",
        "/",
        "/files/",
        "files",
        "../x/",
        "a/../",
        "./",
        "a/./b/",
        "a//",
        "my files/",
        "fïles/",
        "a\\b/",
        "a/\n/"
      ]
    ) {
      expect(accepts(prefix), JSON.stringify(prefix)).toBe(false)
    }
  })

  it.prop("accepts every run of safe segments, each ending in /", [validPrefix], ([prefix]) => {
    expect(accepts(prefix)).toBe(true)
  })

  it.prop("refuses a prefix with an unsafe character anywhere", [
    validPrefix,
    fc.oneof(
      fc.constantFrom(" ", "\u0000", "\\", "?", "#", "%", "é", "😀", "\u007f"),
      fc.string({ unit: "binary", minLength: 1, maxLength: 1 }).filter((c) => !SAFE.includes(c) && c !== "/")
    ),
    fc.nat()
  ], ([prefix, bad, n]) => {
    const at = n % (prefix.length + 1)
    expect(accepts(prefix.slice(0, at) + bad + prefix.slice(at))).toBe(false)
  })

  it.prop("refuses a . or .. segment, a leading / and a missing trailing /", [
    fc.array(segment, { minLength: 1, maxLength: 4 }),
    fc.constantFrom(".", ".."),
    fc.nat()
  ], ([segments, dots, n]) => {
    const at = n % (segments.length + 1)
    const withDots = [...segments.slice(0, at), dots, ...segments.slice(at)]
    const prefix = segments.map((s) => `${s}/`).join("")
    expect(accepts(withDots.map((s) => `${s}/`).join(""))).toBe(false)
    expect(accepts(`/${prefix}`)).toBe(false)
    expect(accepts(prefix.slice(0, -1))).toBe(false)
  })
})

describe("objectKeyFor", () => {
  it.prop("is the prefix followed by the generated id, and nothing else", [KeyPrefix, FileId], ([prefix, id]) => {
    const key = objectKeyFor(prefix, id)
    expect(key).toBe(`${prefix}${id}`)
    expect(key.startsWith(prefix)).toBe(true)
    expect(key.endsWith(id)).toBe(true)
    expect(Schema.is(ObjectKey)(key)).toBe(true)
  })

  it.prop("never involves the client's file name", [FileId, Arb.withPolicy(Arb.validUploadCase)], ([id, [, file]]) => {
    // The name cannot reach the key: the function takes only the prefix and the id.
    expect(objectKeyFor.length).toBe(2)
    const key = objectKeyFor(KeyPrefix.make("files/"), id)
    expect(key).toBe(`files/${id}`)
    expect(key).not.toContain(file.baseName)
  })
})
