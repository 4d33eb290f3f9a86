import { Schema } from "effect"

/**
 * Why an upload was refused: the client sent something the upload policy does not
 * accept. The counterpart of the original design's FileValidationError; one class
 * per cause so callers (and the HTTP layer) can tell them apart by `_tag`.
 */
export class FileTooSmall extends Schema.TaggedError<FileTooSmall>()("FileTooSmall", {
  size: Schema.Number,
  minBytes: Schema.Number
}) {
  override get message() {
    return `The file has ${this.size} bytes; the minimum is ${this.minBytes}.`
  }
}

export class FileTooLarge extends Schema.TaggedError<FileTooLarge>()("FileTooLarge", {
  maxBytes: Schema.Number
}) {
  override get message() {
    return `The file is larger than the maximum of ${this.maxBytes} bytes.`
  }
}

export class ContentTypeNotAllowed extends Schema.TaggedError<ContentTypeNotAllowed>()("ContentTypeNotAllowed", {
  contentType: Schema.String,
  allowed: Schema.Array(Schema.String)
}) {
  override get message() {
    return `Content type "${this.contentType}" is not allowed; allowed: ${this.allowed.join(", ")}.`
  }
}

export class ExtensionNotAllowed extends Schema.TaggedError<ExtensionNotAllowed>()("ExtensionNotAllowed", {
  extension: Schema.String,
  allowed: Schema.Array(Schema.String)
}) {
  override get message() {
    const found = this.extension === ""
      ? "The file name has no extension"
      : `Extension ".${this.extension}" is not allowed`
    return `${found}; allowed: ${this.allowed.map((e) => `.${e}`).join(", ")}.`
  }
}

export class NotUtf8 extends Schema.TaggedError<NotUtf8>()("NotUtf8", {}) {
  override get message() {
    return "The file content is not valid UTF-8."
  }
}

export class InvalidFileName extends Schema.TaggedError<InvalidFileName>()("InvalidFileName", {
  reason: Schema.String
}) {
  override get message() {
    return `The file name is not acceptable: ${this.reason}.`
  }
}

/** The file would take its owner past its quota (OWNER_QUOTA_FILES, OWNER_QUOTA_BYTES); nothing was stored. */
export class QuotaExceeded extends Schema.TaggedError<QuotaExceeded>()("QuotaExceeded", {
  maxFiles: Schema.optional(Schema.Number),
  maxBytes: Schema.optional(Schema.Number)
}) {
  override get message() {
    const limits = [
      ...(this.maxFiles === undefined ? [] : [`${this.maxFiles} files`]),
      ...(this.maxBytes === undefined ? [] : [`${this.maxBytes} bytes`])
    ]
    return `The file would take you past your quota (${limits.join(", ")}); nothing was stored.`
  }
}

/** Every way the upload policy can refuse a file. */
export type UploadRejected =
  | FileTooSmall
  | FileTooLarge
  | ContentTypeNotAllowed
  | ExtensionNotAllowed
  | NotUtf8
  | InvalidFileName

/** The Idempotency-Key made a file of other bytes or another name: a different upload under a used key. */
export class IdempotencyKeyReused extends Schema.TaggedError<IdempotencyKeyReused>()("IdempotencyKeyReused", {
  key: Schema.String
}) {
  override get message() {
    return `Idempotency-Key "${this.key}" was used for a different file (other bytes or another name); ` +
      "use a new key for a new upload."
  }
}

/** The Idempotency-Key's first upload is still under way: retry once it ended. */
export class IdempotencyKeyInFlight extends Schema.TaggedError<IdempotencyKeyInFlight>()("IdempotencyKeyInFlight", {
  key: Schema.String
}) {
  override get message() {
    return `An upload with Idempotency-Key "${this.key}" is still under way; retry once it has finished.`
  }
}
