import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { parseRange } from "../../src/adapters/http/RangeHeader.js"

describe("parseRange", () => {
  it("reads the three forms of one range, clamped to the file", () => {
    expect(parseRange("bytes=0-9", 100)).toEqual({ _tag: "Part", range: { start: 0, end: 9 } })
    expect(parseRange("bytes=90-", 100)).toEqual({ _tag: "Part", range: { start: 90, end: 99 } })
    expect(parseRange("bytes=-10", 100)).toEqual({ _tag: "Part", range: { start: 90, end: 99 } })
    expect(parseRange("bytes=50-1000", 100)).toEqual({ _tag: "Part", range: { start: 50, end: 99 } })
    expect(parseRange("bytes=-1000", 100)).toEqual({ _tag: "Part", range: { start: 0, end: 99 } })
    expect(parseRange("bytes=4294967296-4294967395", 6_000_000_000)).toEqual({
      _tag: "Part",
      range: { start: 4294967296, end: 4294967395 }
    })
  })

  it("is unsatisfiable past the end, and for an empty suffix", () => {
    expect(parseRange("bytes=100-", 100)).toEqual({ _tag: "Unsatisfiable" })
    expect(parseRange("bytes=-0", 100)).toEqual({ _tag: "Unsatisfiable" })
    expect(parseRange("bytes=99999999999999999999-", 100)).toEqual({ _tag: "Unsatisfiable" })
  })

  it("ignores what it cannot serve as one range: the whole file", () => {
    for (const header of [undefined, "", "bytes=", "bytes=-", "bytes=5-2", "bytes=0-1,5-6", "items=0-1", "bytes=a-b"]) {
      expect(parseRange(header, 100)).toEqual({ _tag: "Whole" })
    }
  })

  it.prop("a satisfiable range lies within the file", [
    fc.nat(10_000),
    fc.nat(10_000),
    fc.integer({ min: 1, max: 10_000 })
  ], ([a, b, size]) => {
    const asked = parseRange(`bytes=${a}-${b}`, size)
    if (asked._tag === "Part") {
      expect(asked.range.start).toBeLessThanOrEqual(asked.range.end)
      expect(asked.range.end).toBeLessThan(size)
    } else {
      expect(a > b || a >= size).toBe(true)
    }
  })
})
