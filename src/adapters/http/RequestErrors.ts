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

/** No valid bearer token: missing, malformed, expired, not yet valid, or badly signed. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  reason: Schema.String
}) {
  override get message() {
    return `Authentication is required: ${this.reason}.`
  }
}

/** AUTH_MODE=none answers loopback Hosts only: another name pointing here is DNS rebinding, or a mistake. */
export class MisdirectedRequest extends Schema.TaggedError<MisdirectedRequest>()("MisdirectedRequest", {
  host: Schema.String
}) {
  override get message() {
    return `This server answers loopback names only, not "${this.host}".`
  }
}

/** AUTH_MODE=none: a POST or DELETE from a page of another origin (a form on some web page). */
export class ForbiddenOrigin extends Schema.TaggedError<ForbiddenOrigin>()("ForbiddenOrigin", {
  origin: Schema.String
}) {
  override get message() {
    return `Requests that change files must come from this server's own origin, not ${this.origin}.`
  }
}

export class LinkExpired extends Schema.TaggedError<LinkExpired>()("LinkExpired", {}) {
  override get message() {
    return "This link has expired; ask for a new one."
  }
}

export class BadSignature extends Schema.TaggedError<BadSignature>()("BadSignature", {}) {
  override get message() {
    return "This link's signature is not valid."
  }
}

/** An owner's uploads past RATE_LIMIT_UPLOADS_PER_MINUTE or RATE_LIMIT_CONCURRENT_UPLOADS. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  limit: Schema.String,
  retryAfterSeconds: Schema.Number
}) {
  override get message() {
    return `Too many uploads (${this.limit}); retry in ${this.retryAfterSeconds} s.`
  }
}

/** A request header that does not decode (Idempotency-Key). */
export class InvalidHeader extends Schema.TaggedError<InvalidHeader>()("InvalidHeader", {
  header: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `Header ${this.header} ${this.reason}.`
  }
}

/** A JSON body (a link's `expiresInSeconds`) that does not decode. */
export class InvalidBody extends Schema.TaggedError<InvalidBody>()("InvalidBody", {
  field: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return this.field === "" ? `The request body ${this.reason}.` : `Body field "${this.field}" ${this.reason}.`
  }
}

/** A tus request without `Tus-Resumable: 1.0.0`, the only version served. */
export class TusVersionUnsupported extends Schema.TaggedError<TusVersionUnsupported>()("TusVersionUnsupported", {
  version: Schema.String
}) {
  override get message() {
    return `Tus-Resumable "${this.version}" is not supported; this server speaks tus 1.0.0.`
  }
}

/** A PATCH whose body is not `application/offset+octet-stream`. */
export class NotOffsetOctetStream extends Schema.TaggedError<NotOffsetOctetStream>()("NotOffsetOctetStream", {
  contentType: Schema.String
}) {
  override get message() {
    return `Expected Content-Type application/offset+octet-stream, got "${this.contentType}".`
  }
}

/** A request body that ended before all of it arrived (the client went away, or lied in Content-Length). */
export class BodyIncomplete extends Schema.TaggedError<BodyIncomplete>()("BodyIncomplete", {}) {
  override get message() {
    return "The request body ended before all of it arrived."
  }
}
