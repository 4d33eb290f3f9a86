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

/** Every way the upload policy can refuse a file. */
export type UploadRejected =
  | FileTooSmall
  | FileTooLarge
  | ContentTypeNotAllowed
  | ExtensionNotAllowed
  | NotUtf8
  | InvalidFileName
