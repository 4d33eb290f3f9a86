import { DateTime, Effect, Option } from "effect"
import type { Checksum } from "../../app/ResumableUploads.js"
import { InvalidHeader, TusVersionUnsupported } from "./RequestErrors.js"

/** tus 1.0.0's headers (https://tus.io/protocols/resumable-upload), read and written. */

export const TUS_VERSION = "1.0.0"
export const TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
export const TUS_CHECKSUM_ALGORITHMS = "sha1,sha256"
export const OFFSET_OCTET_STREAM = "application/offset+octet-stream"

/** What a browser may read of a tus response across origins (CORS). */
export const EXPOSED_HEADERS = [
  "location",
  "tus-resumable",
  "tus-version",
  "tus-extension",
  "tus-max-size",
  "tus-checksum-algorithm",
  "upload-offset",
  "upload-length",
  "upload-expires"
]

type Headers = Readonly<Record<string, string | undefined>>

/** Every request but OPTIONS must say it speaks tus 1.0.0. */
export const requireVersion = (headers: Headers) => {
  const version = headers["tus-resumable"]
  return version === TUS_VERSION ? Effect.void : Effect.fail(new TusVersionUnsupported({ version: version ?? "" }))
}

const NON_NEGATIVE_INTEGER = /^(0|[1-9][0-9]{0,15})$/

/** Upload-Length or Upload-Offset: a non-negative integer, as decimal digits. */
export const integerHeader = (headers: Headers, name: string) => {
  const value = headers[name]
  if (value === undefined) return Effect.fail(new InvalidHeader({ header: name, reason: "is required" }))
  const number = NON_NEGATIVE_INTEGER.test(value) ? Number(value) : Number.NaN
  return Number.isSafeInteger(number)
    ? Effect.succeed(number)
    : Effect.fail(new InvalidHeader({ header: name, reason: "must be a non-negative integer" }))
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const KEY = /^[^\s,]+$/

/**
 * Upload-Metadata: comma-separated `key base64value` pairs (the value may be left
 * out). Keys are unique; values are decoded as UTF-8.
 */
export const parseMetadata = (header: string | undefined) =>
  Effect.gen(function*() {
    const metadata = new Map<string, string>()
    const invalid = (reason: string) => new InvalidHeader({ header: "upload-metadata", reason })
    if (header === undefined || header.trim() === "") return metadata
    for (const pair of header.split(",")) {
      const [key, value, ...rest] = pair.trim().split(" ")
      if (key === undefined || !KEY.test(key) || rest.length > 0) {
        return yield* invalid("must be comma-separated pairs of a key and a base64 value")
      }
      if (metadata.has(key)) return yield* invalid(`names "${key}" twice`)
      if (value !== undefined && (!BASE64.test(value) || value.length % 4 !== 0)) {
        return yield* invalid(`has a value of "${key}" that is not base64`)
      }
      const bytes = Buffer.from(value ?? "", "base64")
      try {
        metadata.set(key, new TextDecoder("utf-8", { fatal: true }).decode(bytes))
      } catch {
        return yield* invalid(`has a value of "${key}" that is not UTF-8`)
      }
    }
    return metadata
  })

const DIGEST_BYTES = { sha1: 20, sha256: 32 } as const

/** Upload-Checksum: `<algorithm> <base64 digest>`, for sha1 or sha256; none when absent. */
export const parseChecksum = (header: string | undefined): Effect.Effect<Option.Option<Checksum>, InvalidHeader> => {
  if (header === undefined) return Effect.succeedNone
  const invalid = (reason: string) => Effect.fail(new InvalidHeader({ header: "upload-checksum", reason }))
  const [algorithm, digest, ...rest] = header.trim().split(" ")
  if (algorithm !== "sha1" && algorithm !== "sha256") {
    return invalid(`names an algorithm this server does not support (${TUS_CHECKSUM_ALGORITHMS})`)
  }
  if (digest === undefined || rest.length > 0 || !BASE64.test(digest)) {
    return invalid("must be an algorithm and a base64 digest")
  }
  const bytes = Buffer.from(digest, "base64")
  if (bytes.byteLength !== DIGEST_BYTES[algorithm]) return invalid(`is not a ${algorithm} digest`)
  return Effect.succeed(Option.some({ algorithm, digest: bytes }))
}

/** Upload-Expires: an HTTP date (RFC 9110's IMF-fixdate). */
export const httpDate = (at: DateTime.Utc): string => DateTime.toDateUtc(at).toUTCString()
