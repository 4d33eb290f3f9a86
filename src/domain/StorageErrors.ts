import { Schema } from "effect"

/**
 * Failures of the storage behind tandem, the original design's StorageError: the
 * client did nothing wrong. Adapters map SDK and driver errors into these, so no
 * SDK type leaks past a port.
 */
export class ObjectStoreUnavailable extends Schema.TaggedError<ObjectStoreUnavailable>()("ObjectStoreUnavailable", {
  operation: Schema.String,
  key: Schema.optional(Schema.String),
  cause: Schema.Defect
}) {
  override get message() {
    return `Object storage failed during ${this.operation}${this.key === undefined ? "" : ` of ${this.key}`}.`
  }
}

export class DatabaseUnavailable extends Schema.TaggedError<DatabaseUnavailable>()("DatabaseUnavailable", {
  operation: Schema.String,
  cause: Schema.Defect
}) {
  override get message() {
    return `The database failed during ${this.operation}.`
  }
}

/**
 * A COMMIT was sent but its answer never came (or came as an error): the
 * transaction may or may not have committed. Nobody may act as if it failed; the
 * reconciler decides later from what the database holds.
 */
export class CommitOutcomeUnknown extends Schema.TaggedError<CommitOutcomeUnknown>()("CommitOutcomeUnknown", {
  cause: Schema.Defect
}) {
  override get message() {
    return "The database did not confirm the commit; the outcome is unknown until reconciliation."
  }
}

/** The upload took longer than the reconciler's grace period, which reclaimed its intent. */
export class UploadExpired extends Schema.TaggedError<UploadExpired>()("UploadExpired", {
  id: Schema.String
}) {
  override get message() {
    return `The upload ${this.id} outlived its grace period and was abandoned; send it again.`
  }
}

/** A compensating delete failed: the object named by `key` may be left without a record. */
export class CleanupFailed extends Schema.TaggedError<CleanupFailed>()("CleanupFailed", {
  key: Schema.String,
  /** The failure that made compensation necessary. */
  original: Schema.Defect,
  cause: Schema.Defect
}) {
  override get message() {
    return `The upload failed and its stored object ${this.key} could not be removed.`
  }
}

/** A record exists but its object does not: the two stores disagree. */
export class ObjectMissing extends Schema.TaggedError<ObjectMissing>()("ObjectMissing", {
  key: Schema.String
}) {
  override get message() {
    return `The stored object ${this.key} is missing.`
  }
}

/** An object whose bytes are not those its record describes: their size or sha256 differ. */
export class ObjectCorrupt extends Schema.TaggedError<ObjectCorrupt>()("ObjectCorrupt", {
  key: Schema.String,
  expected: Schema.String,
  found: Schema.String
}) {
  override get message() {
    return `The stored object ${this.key} is not the file recorded: expected ${this.expected}, found ${this.found}.`
  }
}

export class FileNotFound extends Schema.TaggedError<FileNotFound>()("FileNotFound", {
  id: Schema.String
}) {
  override get message() {
    return `No file with id ${this.id}.`
  }
}

export type StorageError =
  | ObjectStoreUnavailable
  | DatabaseUnavailable
  | CommitOutcomeUnknown
  | CleanupFailed
  | UploadExpired
  | ObjectMissing

const storageErrorTags: ReadonlySet<string> = new Set([
  "ObjectStoreUnavailable",
  "DatabaseUnavailable",
  "CommitOutcomeUnknown",
  "CleanupFailed",
  "UploadExpired",
  "ObjectMissing"
])

export const isStorageError = (u: unknown): u is StorageError =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" && storageErrorTags.has(u._tag)
