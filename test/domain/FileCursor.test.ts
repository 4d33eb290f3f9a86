import { describe, expect, it } from "@effect/vitest"
import { DateTime, Encoding, FastCheck as fc, Option } from "effect"
import { decodeCursor, encodeCursor, type FileCursor } from "../../src/domain/FileCursor.js"
import { FileId } from "../../src/domain/FileRecord.js"

/** Creation times from the epoch to DateTime's last representable millisecond. */
const millis = fc.oneof(
  fc.integer({ min: 0, max: 8_640_000_000_000_000 }),
  fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 })
)

const cursorAt = (ms: number, id: FileId): FileCursor => ({ createdAt: DateTime.unsafeMake(ms), id })

const plain = (cursor: FileCursor) => [DateTime.toEpochMillis(cursor.createdAt), cursor.id] as const

const base64Url = (text: string) => Encoding.encodeBase64Url(text)

const UUID = /^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/i

const isCursorJson = (value: unknown): boolean =>
  Array.isArray(value) && value.length === 2 && typeof value[0] === "number" && Number.isSafeInteger(value[0]) &&
  value[0] >= 0 && typeof value[1] === "string" && UUID.test(value[1])

/** JSON that is not `[non-negative integer, uuid]`. */
const wrongJson = fc.oneof(
  fc.jsonValue(),
  fc.tuple(fc.oneof(fc.integer({ max: -1 }), fc.double({ noInteger: true }), fc.string()), fc.uuid()),
  fc.tuple(fc.nat(), fc.string().filter((s) => !UUID.test(s))),
  fc.tuple(fc.nat(), fc.uuid(), fc.jsonValue())
).filter((value) => !isCursorJson(value))

describe("FileCursor", () => {
  it.prop("decodeCursor(encodeCursor(c)) gives c back", [millis, FileId], ([ms, id]) => {
    const cursor = cursorAt(ms, id)
    const token = encodeCursor(cursor)
    expect(token).toMatch(/^[A-Za-z0-9_-]{1,200}$/)
    const decoded = decodeCursor(token)
    expect(Option.map(decoded, plain)).toEqual(Option.some(plain(cursor)))
    expect(Option.map(decoded, (c) => DateTime.isUtc(c.createdAt))).toEqual(Option.some(true))
  })

  it.prop("never throws on arbitrary text, and whatever it accepts is a valid cursor", [fc.oneof(
    fc.string({ unit: "binary" }),
    fc.string({
      unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="),
      maxLength: 120
    }),
    fc.jsonValue().map((value) => base64Url(JSON.stringify(value))),
    fc.uint8Array({ maxLength: 120 }).map((bytes) => Encoding.encodeBase64Url(bytes)),
    // valid cursors written differently: spaced JSON, upper-case ids
    fc.tuple(millis, fc.uuid()).map(([ms, id]) => base64Url(JSON.stringify([ms, id.toUpperCase()], null, 1)))
  )], ([text]) => {
    const decoded = decodeCursor(text)
    if (Option.isSome(decoded)) {
      const [ms] = plain(decoded.value)
      expect(Number.isSafeInteger(ms) && ms >= 0).toBe(true)
      expect(Option.map(decodeCursor(encodeCursor(decoded.value)), plain)).toEqual(Option.some(plain(decoded.value)))
    }
  })

  it.prop("refuses base64url of JSON that is not [millis, uuid]", [wrongJson], ([value]) => {
    expect(decodeCursor(base64Url(JSON.stringify(value)))).toEqual(Option.none())
  })

  it.prop("refuses text with characters outside base64url", [
    fc.tuple(fc.string(), fc.constantFrom("=", "+", "/", " ", ".", "%", "é", "\u0000", "\n"), fc.string()).map((
      parts
    ) => parts.join("")),
    fc.nat()
  ], ([text, n]) => {
    const token = encodeCursor(cursorAt(1_700_000_000_000, FileId.make("3f2504e0-4f89-41d3-9a0c-0305e82c3301")))
    const at = n % (token.length + 1)
    expect(decodeCursor(text)).toEqual(Option.none())
    expect(decodeCursor(token.slice(0, at) + text + token.slice(at))).toEqual(Option.none())
  })

  it.prop("refuses times DateTime cannot represent and over-long tokens", [
    fc.integer({ min: 8_640_000_000_000_001, max: Number.MAX_SAFE_INTEGER }),
    fc.uuid()
  ], ([ms, id]) => {
    expect(decodeCursor(base64Url(JSON.stringify([ms, id])))).toEqual(Option.none())
    expect(decodeCursor("A".repeat(201))).toEqual(Option.none())
    expect(decodeCursor("")).toEqual(Option.none())
  })
})
