import { Effect, Schema } from "effect"
import type { FileName } from "./FileRecord.js"
import { MediaType } from "./FileRecord.js"
import { ContentTypeNotAllowed, ExtensionNotAllowed, InvalidFileName } from "./UploadErrors.js"

/** S3's limit for a single object written by one PutObject or CompleteMultipartUpload. */
export const MAX_UPLOAD_BYTES = 5 * 1024 ** 3

/**
 * What tandem accepts. Defaults are the original design's: 512 to 2048 bytes
 * (inclusive), text/plain, .txt. Content types are lowercase `type/subtype` or
 * `type/*`; extensions are lowercase and without the dot.
 */
export class UploadPolicy extends Schema.Class<UploadPolicy>("UploadPolicy")(
  Schema.Struct({
    minBytes: Schema.NonNegativeInt,
    maxBytes: Schema.NonNegativeInt.pipe(Schema.lessThanOrEqualTo(MAX_UPLOAD_BYTES)),
    contentTypes: Schema.NonEmptyArray(
      Schema.Lowercase.pipe(Schema.pattern(/^[a-z0-9!#$&^_.+-]+\/(\*|[a-z0-9!#$&^_.+-]+)$/))
    ),
    extensions: Schema.NonEmptyArray(Schema.Lowercase.pipe(Schema.pattern(/^[a-z0-9][a-z0-9_+-]*$/)))
  }).pipe(Schema.filter((p) => p.minBytes <= p.maxBytes || "minBytes must not exceed maxBytes"))
) {
  static readonly default = new UploadPolicy({
    minBytes: 512,
    maxBytes: 2048,
    contentTypes: ["text/plain"],
    extensions: ["txt"]
  })
}

/** What the client declared about a file, before its bytes are known. */
export interface DeclaredFile {
  readonly name: string
  readonly contentType: string
}

/** A file whose name, content type and extension passed the policy. */
export interface AcceptedDeclaration {
  readonly name: FileName
  readonly contentType: MediaType
  readonly extension: string
}

const MAX_NAME_BYTES = 255
// C0 and C1 control characters and DEL; PostgreSQL text cannot even hold NUL.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/u
const LONE_SURROGATE = /\p{Surrogate}/u
// Format characters (bidi overrides such as U+202E, zero-width ones) make a name display
// as another: "a\u202Egpj.txt" shows as "atxt.jpg".
const FORMAT_CHARACTERS = /\p{Cf}/u
const utf8 = new TextEncoder()

/** The last path segment: browsers may send "C:\\fakepath\\notes.txt". */
export const baseName = (name: string): string =>
  name.slice(Math.max(name.lastIndexOf("/"), name.lastIndexOf("\\")) + 1)

/** Lowercase extension after the last dot; "" for none (and for ".profile"-style names). */
export const extensionOf = (name: string): string => {
  const dot = name.lastIndexOf(".")
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : ""
}

/** `Text/Plain; charset=UTF-8` → `text/plain`. */
export const mediaTypeOf = (contentType: string): string => (contentType.split(";")[0] ?? "").trim().toLowerCase()

// A wildcard must not admit "text/a b" or "text/x\r\n...": the media type ends up in a header.
const MEDIA_TYPE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/

const mediaTypeAllowed = (policy: UploadPolicy, mediaType: string): boolean =>
  MEDIA_TYPE.test(mediaType) &&
  policy.contentTypes.some((allowed) =>
    allowed.endsWith("/*")
      ? mediaType.startsWith(allowed.slice(0, -1)) && mediaType.length > allowed.length - 1
      : allowed === mediaType
  )

/**
 * The name a file is kept under: its last path segment, NFC-normalized (so "é" is
 * one name however the client composed it), and refused when empty, too long,
 * holding control or format characters, or not valid Unicode.
 */
export const validateName = (raw: string): Effect.Effect<FileName, InvalidFileName> => {
  if (LONE_SURROGATE.test(raw)) return Effect.fail(new InvalidFileName({ reason: "it is not valid Unicode" }))
  const name = baseName(raw).normalize("NFC")
  if (name.length === 0 || name === "." || name === "..") {
    return Effect.fail(new InvalidFileName({ reason: "it is empty" }))
  }
  if (utf8.encode(name).byteLength > MAX_NAME_BYTES) {
    return Effect.fail(new InvalidFileName({ reason: `it is longer than ${MAX_NAME_BYTES} bytes` }))
  }
  if (CONTROL_CHARACTERS.test(name)) {
    return Effect.fail(new InvalidFileName({ reason: "it contains control characters" }))
  }
  if (FORMAT_CHARACTERS.test(name)) {
    return Effect.fail(
      new InvalidFileName({
        reason: "it contains format characters (bidi overrides, zero-width), which disguise a name"
      })
    )
  }
  return Effect.succeed(name as FileName)
}

/**
 * Checks what can be checked before reading a byte: name, content type, extension,
 * in that order (so a file breaking several rules always gets the same error;
 * the content rules come after these, see ContentCheck).
 */
export const validateDeclaration = (
  policy: UploadPolicy,
  declared: DeclaredFile
): Effect.Effect<AcceptedDeclaration, InvalidFileName | ContentTypeNotAllowed | ExtensionNotAllowed> =>
  Effect.gen(function*() {
    const name = yield* validateName(declared.name)
    const mediaType = mediaTypeOf(declared.contentType)
    if (!mediaTypeAllowed(policy, mediaType)) {
      return yield* new ContentTypeNotAllowed({ contentType: declared.contentType, allowed: policy.contentTypes })
    }
    const extension = extensionOf(name)
    if (!policy.extensions.includes(extension)) {
      return yield* new ExtensionNotAllowed({ extension, allowed: policy.extensions })
    }
    return { name, contentType: MediaType.make(mediaType), extension }
  })
