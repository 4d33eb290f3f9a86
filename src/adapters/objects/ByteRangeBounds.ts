import { Option } from "effect"
import type { ByteRange } from "../../ports/ObjectStore.js"

/** Integer offsets with start <= end: a range S3 would not silently ignore. */
export const isWellFormed = (range: ByteRange): boolean =>
  Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.start <= range.end

/**
 * The [start, end) offsets a range reads in an object of `size` bytes, as S3 reads it:
 * an end past the object is clamped to its last byte; a start at or past the end is
 * unsatisfiable (none).
 */
export const boundsOf = (range: ByteRange, size: number): Option.Option<readonly [number, number]> =>
  isWellFormed(range) && range.start < size
    ? Option.some([range.start, Math.min(range.end, size - 1) + 1] as const)
    : Option.none()
