/**
 * The upload policy as the page checks it before sending a byte: the server's rules
 * (src/domain/UploadPolicy.ts, ContentCheck.ts), in the same order and told in the
 * same words (src/domain/UploadErrors.ts), so a file is refused in the page exactly
 * as the server would refuse it. The server still decides; this is early feedback.
 * test/http/UploadPageRules.test.ts holds the two to agreement. No DOM and no
 * imports: it runs in the browser and in the tests alike.
 */

/** What GET /policy answers: what an upload must be, and whether a token is needed. */
export interface Policy {
  readonly minBytes: number
  readonly maxBytes: number
  readonly contentTypes: ReadonlyArray<string>
  readonly extensions: ReadonlyArray<string>
  readonly authentication: "bearer" | "none"
}

/** Why a file would be refused: the server's error tag and message. */
export interface Refusal {
  readonly tag: string
  readonly message: string
}

const MAX_NAME_BYTES = 255
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/u
const LONE_SURROGATE = /\p{Surrogate}/u
const FORMAT_CHARACTERS = /\p{Cf}/u
const MEDIA_TYPE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/
const utf8 = new TextEncoder()

const baseName = (name: string): string => name.slice(Math.max(name.lastIndexOf("/"), name.lastIndexOf("\\")) + 1)

const extensionOf = (name: string): string => {
  const dot = name.lastIndexOf(".")
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : ""
}

const mediaTypeAllowed = (policy: Policy, mediaType: string): boolean =>
  MEDIA_TYPE.test(mediaType) &&
  policy.contentTypes.some((allowed) =>
    allowed.endsWith("/*")
      ? mediaType.startsWith(allowed.slice(0, -1)) && mediaType.length > allowed.length - 1
      : allowed === mediaType
  )

const badName = (reason: string): Refusal => ({
  tag: "InvalidFileName",
  message: `The file name is not acceptable: ${reason}.`
})

/** The name's refusal, if any (InvalidFileName). */
export const nameRefusal = (raw: string): Refusal | undefined => {
  if (LONE_SURROGATE.test(raw)) return badName("it is not valid Unicode")
  const name = baseName(raw).normalize("NFC")
  if (name.length === 0 || name === "." || name === "..") return badName("it is empty")
  if (utf8.encode(name).byteLength > MAX_NAME_BYTES) return badName(`it is longer than ${MAX_NAME_BYTES} bytes`)
  if (CONTROL_CHARACTERS.test(name)) return badName("it contains control characters")
  if (FORMAT_CHARACTERS.test(name)) {
    return badName("it contains format characters (bidi overrides, zero-width), which disguise a name")
  }
  return undefined
}

/** What can be told before reading a byte: name, content type, extension, in the server's order. */
export const declarationRefusal = (policy: Policy, name: string, contentType: string): Refusal | undefined => {
  const named = nameRefusal(name)
  if (named !== undefined) return named
  const mediaType = (contentType.split(";")[0] ?? "").trim().toLowerCase()
  if (!mediaTypeAllowed(policy, mediaType)) {
    return {
      tag: "ContentTypeNotAllowed",
      message: `Content type "${contentType}" is not allowed; allowed: ${policy.contentTypes.join(", ")}.`
    }
  }
  const extension = extensionOf(baseName(name).normalize("NFC"))
  if (!policy.extensions.includes(extension)) {
    const found = extension === "" ? "The file name has no extension" : `Extension ".${extension}" is not allowed`
    return {
      tag: "ExtensionNotAllowed",
      message: `${found}; allowed: ${policy.extensions.map((e) => `.${e}`).join(", ")}.`
    }
  }
  return undefined
}

export const notUtf8: Refusal = { tag: "NotUtf8", message: "The file content is not valid UTF-8." }

const tooLarge = (policy: Policy): Refusal => ({
  tag: "FileTooLarge",
  message: `The file is larger than the maximum of ${policy.maxBytes} bytes.`
})

/**
 * The content rules, chunk by chunk as ContentCheck applies them: NotUtf8 for an
 * invalid sequence within the first `maxBytes` bytes, FileTooLarge once the count
 * passes `maxBytes`; at the end, NotUtf8 for a file stopping inside a sequence, then
 * FileTooSmall. A refusal is final.
 */
export const contentCheck = (policy: Policy) => {
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
  let size = 0
  return {
    update: (chunk: Uint8Array): Refusal | undefined => {
      const room = policy.maxBytes - size
      try {
        decoder.decode(chunk.byteLength > room ? chunk.subarray(0, Math.max(0, room)) : chunk, { stream: true })
      } catch {
        return notUtf8
      }
      size += chunk.byteLength
      return size > policy.maxBytes ? tooLarge(policy) : undefined
    },
    finish: (): Refusal | undefined => {
      try {
        decoder.decode()
      } catch {
        return notUtf8
      }
      return size < policy.minBytes
        ? { tag: "FileTooSmall", message: `The file has ${size} bytes; the minimum is ${policy.minBytes}.` }
        : undefined
    }
  }
}

/** The content type a browser declares for a file: its type, or application/octet-stream when it knows none. */
export const declaredType = (type: string): string => type === "" ? "application/octet-stream" : type

/** 1536 → "1.5 KiB"; exact bytes below 1 KiB. */
export const formatBytes = (bytes: number): string => {
  const units = ["KiB", "MiB", "GiB", "TiB"]
  if (bytes < 1024) return `${bytes} ${bytes === 1 ? "byte" : "bytes"}`
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return `${Number(value.toFixed(value < 10 ? 1 : 0))} ${units[unit] ?? "TiB"}`
}

/** The rules in plain words, as the page shows them before any upload. */
export const describePolicy = (policy: Policy): ReadonlyArray<string> => [
  policy.minBytes === policy.maxBytes
    ? `Exactly ${formatBytes(policy.maxBytes)} (${policy.maxBytes} bytes).`
    : `From ${formatBytes(policy.minBytes)} to ${formatBytes(policy.maxBytes)} ` +
      `(${policy.minBytes} to ${policy.maxBytes} bytes).`,
  `Content types: ${policy.contentTypes.join(", ")}.`,
  `Extensions: ${policy.extensions.map((e) => `.${e}`).join(", ")}.`,
  "Content: valid UTF-8 text.",
  "Names: at most 255 bytes, without control or invisible formatting characters."
]
