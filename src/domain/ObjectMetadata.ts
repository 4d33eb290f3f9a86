import { DateTime, Option } from "effect"

/**
 * S3 user metadata travels as HTTP headers: ASCII only, no control characters, and
 * at most 2 KB for all keys and values together. The database keeps the exact
 * original name; the metadata copy is only a hint for someone browsing the bucket.
 */
export const MAX_METADATA_BYTES = 2048

const KEY_UNSAFE = /[^a-z0-9-]/g

/** Lowercase letters, digits and dashes; anything else becomes a dash. */
export const sanitizeMetadataKey = (key: string): string => key.toLowerCase().replace(KEY_UNSAFE, "-")

/**
 * Printable ASCII stays; `%` and everything else is percent-encoded as UTF-8, so the
 * value stays readable and can be decoded with decodeURIComponent.
 */
const PRINTABLE_ASCII_BUT_PERCENT = /^[\x20-\x24\x26-\x7e]*$/

export const sanitizeMetadataValue = (value: string): string => {
  // Most values (ids, timestamps, digests, ASCII names) need no escape at all.
  if (PRINTABLE_ASCII_BUT_PERCENT.test(value)) return value
  let out = ""
  for (const char of value) {
    const code = char.codePointAt(0) ?? 0
    if (code >= 0x20 && code <= 0x7e && char !== "%") out += char
    else if (code >= 0xd800 && code <= 0xdfff) out += "%EF%BF%BD" // a lone surrogate: U+FFFD
    else out += encodeURIComponent(char)
  }
  return out
}

const decodes = (value: string): boolean => {
  try {
    decodeURIComponent(value)
    return true
  } catch {
    return false
  }
}

/**
 * Cuts a sanitized value to at most `max` characters without splitting a %XX escape,
 * nor the escapes of one character (up to four: %F0%9F%98%80), so it still decodes.
 */
const truncateEscaped = (value: string, max: number): string => {
  if (value.length <= max) return value
  let cut = value.slice(0, Math.max(0, max))
  const percent = cut.lastIndexOf("%")
  if (percent !== -1 && percent > cut.length - 3) cut = cut.slice(0, percent)
  while (!decodes(cut)) cut = cut.slice(0, cut.lastIndexOf("%"))
  return cut
}

/**
 * Sanitizes every entry and keeps the total within S3's limit: entries are taken in
 * order, and the last one that does not fit is truncated; later ones are dropped.
 * Entries whose key sanitizes to nothing are dropped.
 */
export const sanitizeMetadata = (metadata: Readonly<Record<string, string>>): Record<string, string> => {
  const out: Record<string, string> = {}
  let budget = MAX_METADATA_BYTES
  for (const [rawKey, rawValue] of Object.entries(metadata)) {
    const key = sanitizeMetadataKey(rawKey)
    if (key.length === 0 || Object.hasOwn(out, key) || key.length >= budget) continue
    const value = truncateEscaped(sanitizeMetadataValue(rawValue), budget - key.length)
    out[key] = value
    budget -= key.length + value.length
  }
  return out
}

/**
 * What a file's object says of it, beside its content type: enough to rebuild its
 * record should the database lose it (`npm run reconcile -- --restore`). The id, the
 * original name and when it was uploaded are known when the upload starts; the size
 * and sha256 once its bytes have all been read (`contentMetadata`).
 */
export const fileMetadata = (file: {
  readonly id: string
  readonly owner: string
  readonly name: string
  readonly createdAt: DateTime.Utc
}): Record<string, string> =>
  sanitizeMetadata({
    "file-id": file.id,
    "original-name": file.name,
    "created-at": DateTime.formatIso(file.createdAt),
    owner: file.owner
  })

export const contentMetadata = (content: { readonly size: number; readonly sha256: string }): Record<string, string> =>
  sanitizeMetadata({ size: String(content.size), sha256: content.sha256 })

const decodeOption = (value: string): Option.Option<string> => {
  try {
    return Option.some(decodeURIComponent(value))
  } catch {
    return Option.none()
  }
}

/** The file an object's metadata describes, if it describes one whole (see fileMetadata). */
export const describedFile = (metadata: Readonly<Record<string, string>>): Option.Option<{
  readonly id: string
  readonly owner: string
  readonly name: string
  readonly createdAt: DateTime.Utc
  readonly size: number
  readonly sha256: string
}> =>
  Option.gen(function*() {
    const id = yield* Option.fromNullable(metadata["file-id"])
    const owner = yield* Option.flatMap(Option.fromNullable(metadata["owner"]), decodeOption)
    const name = yield* Option.flatMap(Option.fromNullable(metadata["original-name"]), decodeOption)
    const createdAt = yield* Option.flatMap(Option.fromNullable(metadata["created-at"]), (iso) => DateTime.make(iso))
    const size = Number(yield* Option.fromNullable(metadata["size"]))
    const sha256 = yield* Option.fromNullable(metadata["sha256"])
    if (!Number.isSafeInteger(size) || size < 0) return yield* Option.none()
    return { id, owner, name, createdAt: DateTime.toUtc(createdAt), size, sha256 }
  })
