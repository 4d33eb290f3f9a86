import { Option } from "effect"
import type { ByteRange } from "../../ports/ObjectStore.js"

/** What a Range header asks of a file of `size` bytes (RFC 9110, 14.2). */
export type RangeRequest =
  | { readonly _tag: "Whole" }
  | { readonly _tag: "Part"; readonly range: ByteRange }
  | { readonly _tag: "Unsatisfiable" }

const whole: RangeRequest = { _tag: "Whole" }

/**
 * One `bytes=` range: `a-b`, `a-` or the suffix `-n`, offsets of any size (a
 * multi-GB file is read from its middle). A header that does not parse, or asks
 * for several ranges, is ignored and the whole file is sent, as the RFC allows.
 */
export const parseRange = (header: string | undefined, size: number): RangeRequest => {
  if (header === undefined) return whole
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (match === null) return whole
  const [, first = "", last = ""] = match
  if (first === "" && last === "") return whole
  // A start beyond any safe integer is beyond every file.
  if (first !== "" && !Number.isSafeInteger(Number(first))) return { _tag: "Unsatisfiable" }
  const range = first === ""
    ? Option.some({ start: Math.max(0, size - Number(last)), end: size - 1 })
    : Option.some({ start: Number(first), end: last === "" ? size - 1 : Math.min(Number(last), size - 1) })
  return Option.match(Option.filter(range, (r) => Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end)), {
    onNone: () => whole,
    onSome: (r) =>
      (first !== "" && last !== "" && Number(first) > Number(last))
        ? whole
        : r.start >= size || r.end < r.start
        ? { _tag: "Unsatisfiable" }
        : { _tag: "Part", range: r }
  })
}
