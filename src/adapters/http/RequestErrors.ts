import { Schema } from "effect"

/** The request is not multipart/form-data at all. */
export class NotMultipart extends Schema.TaggedError<NotMultipart>()("NotMultipart", {
  contentType: Schema.String
}) {
  override get message() {
    return `Expected a multipart/form-data body, got "${this.contentType}".`
  }
}

export class MissingFilePart extends Schema.TaggedError<MissingFilePart>()("MissingFilePart", {
  /** The name of a file part that was sent instead, if any. */
  found: Schema.optional(Schema.String)
}) {
  override get message() {
    const found = this.found === undefined ? "" : ` (found a file part named "${this.found}")`
    return `The form has no file part named "file"${found}.`
  }
}

export class TooManyFiles extends Schema.TaggedError<TooManyFiles>()("TooManyFiles", {}) {
  override get message() {
    return "The form has more than one file; send exactly one, named \"file\"."
  }
}

/** The multipart body could not be parsed, or broke one of its structural limits. */
export class MalformedMultipart extends Schema.TaggedError<MalformedMultipart>()("MalformedMultipart", {
  reason: Schema.String
}) {
  override get message() {
    return `The multipart body is malformed: ${this.reason}.`
  }
}

export class InvalidQuery extends Schema.TaggedError<InvalidQuery>()("InvalidQuery", {
  parameter: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `Query parameter "${this.parameter}" ${this.reason}.`
  }
}

/** An announced body larger than any form tandem could accept: refused before any of it is read. */
export class BodyTooLarge extends Schema.TaggedError<BodyTooLarge>()("BodyTooLarge", {
  length: Schema.Number,
  maxFileBytes: Schema.Number,
  maxBytesBesideFile: Schema.Number
}) {
  override get message() {
    return `The request body has ${this.length} bytes; a form holds at most a file of ${this.maxFileBytes} bytes ` +
      `and ${this.maxBytesBesideFile} bytes beside it.`
  }
}

/**
 * As many uploads are in flight as the server takes at once (MAX_CONCURRENT_UPLOADS):
 * refused as it arrives, before any of its body is read, never queued.
 */
export class ServerBusy extends Schema.TaggedError<ServerBusy>()("ServerBusy", {
  maxConcurrentUploads: Schema.Number,
  retryAfterSeconds: Schema.Number
}) {
  override get message() {
    return `The server is already receiving ${this.maxConcurrentUploads} uploads, the most it takes at once; ` +
      `retry in ${this.retryAfterSeconds} s.`
  }
}

/** A Range that starts past the end of the file. */
export class RangeNotSatisfiable extends Schema.TaggedError<RangeNotSatisfiable>()("RangeNotSatisfiable", {
  size: Schema.Number
}) {
  override get message() {
    return `The file has ${this.size} bytes; the range asked for lies outside it.`
  }
}

/** Readiness: a store does not answer. */
export class NotReady extends Schema.TaggedError<NotReady>()("NotReady", {
  reasons: Schema.Array(Schema.String)
}) {
  override get message() {
    return this.reasons.join(" ")
  }
}
