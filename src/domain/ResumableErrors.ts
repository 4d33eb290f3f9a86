import { Schema } from "effect"

/**
 * Why a resumable (tus) upload's request was refused; the upload's content is
 * refused with the same errors as any upload's (UploadErrors.ts).
 */

/** No live resumable upload of the caller's has this id: never made, terminated, expired or reclaimed. */
export class UploadNotFound extends Schema.TaggedError<UploadNotFound>()("UploadNotFound", {
  id: Schema.String
}) {
  override get message() {
    return `No resumable upload ${this.id}: it never existed, was terminated, or expired.`
  }
}

/** A PATCH that does not start where the upload's acknowledged bytes end. */
export class OffsetMismatch extends Schema.TaggedError<OffsetMismatch>()("OffsetMismatch", {
  expected: Schema.Number,
  got: Schema.Number
}) {
  override get message() {
    return `The upload's offset is ${this.expected}, not ${this.got}; ask with HEAD and resume from there.`
  }
}

/** Another request is writing to the upload (through this replica or another). */
export class UploadBusy extends Schema.TaggedError<UploadBusy>()("UploadBusy", {
  id: Schema.String
}) {
  override get message() {
    return `Another request is writing to upload ${this.id}; retry once it has finished.`
  }
}

/** The PATCH's bytes do not match its Upload-Checksum: none of them were kept. */
export class ChecksumMismatch extends Schema.TaggedError<ChecksumMismatch>()("ChecksumMismatch", {
  algorithm: Schema.String
}) {
  override get message() {
    return `The request's bytes do not match its ${this.algorithm} Upload-Checksum; none of them were kept.`
  }
}
