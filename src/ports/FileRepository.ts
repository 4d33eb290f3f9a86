import type { DateTime, Duration, Effect, Scope } from "effect"
import { Context, Option } from "effect"
import type { FileCursor } from "../domain/FileCursor.js"
import type { FileId, FileRecord, ObjectKey, Owner, Sha256Hex } from "../domain/FileRecord.js"
import type { IdempotencyKey } from "../domain/IdempotencyKey.js"
import type { Repair } from "../domain/Repair.js"
import type { CommitOutcomeUnknown, DatabaseUnavailable } from "../domain/StorageErrors.js"

export interface ListOptions {
  /** 1 or more; adapters do not cap it, callers do. */
  readonly limit: number
  /** Start after this position (exclusive); none for the first page. */
  readonly after: Option.Option<FileCursor>
}

export interface FilePage {
  /** Newest first: by createdAt descending, then id descending. */
  readonly items: ReadonlyArray<FileRecord>
  /** Where the next page starts; none when this page is the last. */
  readonly nextCursor: Option.Option<FileCursor>
}

/**
 * A record that is not (or no longer) a visible file: an upload whose object may
 * or may not exist yet (`upload`; also one the reconciler has claimed and that can
 * no longer commit), or a deleted file whose object may still exist (`delete`).
 * `since` is when it entered that state (or was last claimed), by the database's clock.
 */
export interface Intent {
  readonly kind: "upload" | "delete"
  readonly record: FileRecord
  readonly since: DateTime.Utc
  /** An upload's multipart upload in the object store, to abort if the upload was abandoned. */
  readonly multipartUploadId: Option.Option<string>
}

/** How much an owner may store; none: no limit (OWNER_QUOTA_FILES, OWNER_QUOTA_BYTES). */
export interface Quota {
  readonly maxFiles: Option.Option<number>
  readonly maxBytes: Option.Option<number>
}

export const noQuota: Quota = { maxFiles: Option.none(), maxBytes: Option.none() }

/** What is only known once all of a file's bytes have been read. */
export interface FinalContent {
  readonly size: number
  readonly sha256: Sha256Hex
}

/** What an upload's Idempotency-Key found (`insertPendingWithKey`). */
export type KeyedInsert =
  /** The key was free (or expired): the intent is inserted, and the key names its file. */
  | { readonly _tag: "Inserted" }
  /** The key's first upload has not committed: it is running, or crashed and not yet reclaimed. */
  | { readonly _tag: "InFlight" }
  /** The key made this file already; nothing was inserted. */
  | { readonly _tag: "Done"; readonly record: FileRecord }

/**
 * A resumable (tus) upload: a pending intent whose bytes arrive over many requests.
 * Bytes [0, offset) are acknowledged: `parts` (receipts of the object store's
 * parts, each `partSize` bytes) hold the first of them, the tail (`tail`) the rest.
 */
export interface ResumableUpload {
  /** The pending record: the file the upload becomes. */
  readonly record: FileRecord
  readonly length: number
  readonly offset: number
  readonly partSize: number
  readonly multipartUploadId: Option.Option<string>
  readonly parts: ReadonlyArray<string>
  /** The content check's state after bytes [0, offset) (opaque to the repository). */
  readonly check: Uint8Array
  /** By the database's clock; a live upload's is in the future (an expired one is not found). */
  readonly expiresAt: DateTime.Utc
}

/** What a PATCH made durable: the offset moves from `from` to `to`, all of it in one step. */
export interface ResumableProgress {
  readonly from: number
  readonly to: number
  readonly check: Uint8Array
  /** Receipts of parts completed since `from`, appended to the upload's; when any, the tail is emptied first. */
  readonly parts: ReadonlyArray<string>
  /** Bytes appended to the tail (after it was emptied, when `parts` is not). */
  readonly tail: Uint8Array
  /** The upload expires this long after this step. */
  readonly expiresIn: Duration.Duration
}

export interface StaleOptions {
  /** Only intents that entered their state at or before this instant (see `cutoff`). */
  readonly before: DateTime.Utc
  readonly limit: number
  /**
   * A live resumable upload is stale only once it expires, whatever `before` says;
   * true (for `staleIntents`, which only reads): every one of them is listed too,
   * so a check that nothing is left behind sees them.
   */
  readonly includeLiveResumable?: boolean
}

/**
 * The database's side of tandem. A record goes through the intent protocol
 * (README, "Consistency"): `pending` before its object is written, `committed`
 * once it is, `deleting` once a delete is decided; reads see committed records
 * only. Calls inside `withTransaction` commit together or not at all; calls
 * outside it commit on their own.
 */
export class FileRepository extends Context.Tag("ports/FileRepository")<FileRepository, {
  /** Records an upload's intent (pending), before its object is written. */
  readonly insertPending: (record: FileRecord) => Effect.Effect<void, DatabaseUnavailable>
  /**
   * As `insertPending`, for an upload that carries an Idempotency-Key: the intent is
   * inserted and the key (its owner's, kept for `ttl`) made to name it, in one step,
   * or, when the key names a file already, nothing is. A key lives as long as its
   * file: when the intent is dropped (the upload failed, or the reconciler reclaimed
   * it after a crash) or the file deleted, the key is free again; a key older than
   * `ttl` counts as free. Two uploads with one key: the second waits for the first's
   * insert, then finds it.
   */
  readonly insertPendingWithKey: (
    record: FileRecord,
    key: IdempotencyKey,
    ttl: Duration.Duration
  ) => Effect.Effect<KeyedInsert, DatabaseUnavailable | CommitOutcomeUnknown>
  /**
   * Notes the multipart upload a pending intent's object is being written with,
   * before its first part; false when the intent is gone.
   */
  readonly recordMultipart: (id: FileId, uploadId: string) => Effect.Effect<boolean, DatabaseUnavailable>
  /**
   * pending → committed, with the size and sha256 of the bytes written: `Committed`;
   * `Gone` when the intent is gone (the reconciler reclaimed it); `OverQuota` (and
   * nothing changed) when the file would take its owner past `quota`. The quota is
   * checked and the file committed as one step per owner (the owner's commits take
   * turns), so concurrent uploads never overshoot it. Under a quota it is a
   * transaction of its own outside `withTransaction`, so its commit may be unknown.
   */
  readonly commitPending: (
    id: FileId,
    content: FinalContent,
    quota: Quota
  ) => Effect.Effect<"Committed" | "Gone" | "OverQuota", DatabaseUnavailable | CommitOutcomeUnknown>
  /** committed → deleting (the tombstone); returns the record, none when the owner has no such committed file. */
  readonly markDeleting: (owner: Owner, id: FileId) => Effect.Effect<Option.Option<FileRecord>, DatabaseUnavailable>
  /** Removes a record whatever its state: once its object is known to be gone. */
  readonly remove: (id: FileId) => Effect.Effect<void, DatabaseUnavailable>

  /** A committed file of the owner's: another owner's is none, exactly as a missing one. */
  readonly find: (owner: Owner, id: FileId) => Effect.Effect<Option.Option<FileRecord>, DatabaseUnavailable>
  /** A committed file, whoever owns it: for a signed link, which names its owner itself. */
  readonly findAny: (id: FileId) => Effect.Effect<Option.Option<FileRecord>, DatabaseUnavailable>
  /** The owner's committed files, newest first. */
  readonly list: (owner: Owner, options: ListOptions) => Effect.Effect<FilePage, DatabaseUnavailable>

  /**
   * The instant `olderThan` before now, by the database's clock: every state
   * timestamp is the database's, so a replica whose own clock runs ahead cannot
   * take an upload still running for an abandoned one.
   */
  readonly cutoff: (olderThan: Duration.Duration) => Effect.Effect<DateTime.Utc, DatabaseUnavailable>
  /** Intents that entered their state at or before `before`, oldest first; reads only (a dry run). */
  readonly staleIntents: (options: StaleOptions) => Effect.Effect<ReadonlyArray<Intent>, DatabaseUnavailable>
  /**
   * Claims up to `limit` of those intents for repair, oldest first, in one
   * statement: a pending upload becomes `reclaiming` (it can no longer be committed
   * or record a multipart upload), and every claimed intent is stamped now, so
   * neither this pass (its `before` is older) nor another replica claims it again
   * before the grace period passes anew. Rows another transaction holds are skipped.
   * No lock is held once it returns: the repair's slow calls to the object store run
   * with no connection held.
   */
  readonly claimStaleIntents: (options: StaleOptions) => Effect.Effect<ReadonlyArray<Intent>, DatabaseUnavailable>
  /** The keys among `keys` that no record (in any state) names. */
  readonly unknownKeys: (keys: ReadonlyArray<ObjectKey>) => Effect.Effect<ReadonlyArray<ObjectKey>, DatabaseUnavailable>
  /**
   * Writes a repair to the log. Each object key is repaired at most once: false
   * (and nothing written) when a repair of this key exists, so the first writer
   * claims the key. Inside a transaction the claim holds until it ends.
   */
  readonly recordRepair: (repair: Repair) => Effect.Effect<boolean, DatabaseUnavailable>
  /** Forgets the idempotency keys older than `ttl`; how many it forgot. */
  readonly purgeIdempotencyKeys: (ttl: Duration.Duration) => Effect.Effect<number, DatabaseUnavailable>
  /** The repair log, newest first. */
  readonly repairs: (limit: number) => Effect.Effect<ReadonlyArray<Repair>, DatabaseUnavailable>

  /**
   * Records a file whose object is known to be whole (a restore from the object's own
   * description): committed at once. False, and nothing written, when its id or
   * object key is taken already.
   */
  readonly insertCommitted: (record: FileRecord) => Effect.Effect<boolean, DatabaseUnavailable>
  /** The id binding this database to an object store (see app/StoreBinding.ts); none before the first. */
  readonly binding: Effect.Effect<Option.Option<string>, DatabaseUnavailable>
  /** Binds this database to the store that holds `id`, replacing any binding before it. */
  readonly bind: (id: string) => Effect.Effect<void, DatabaseUnavailable>

  /**
   * Runs `self` in one transaction: committed if it succeeds, rolled back if it
   * fails or is interrupted. A COMMIT whose outcome is not known fails with
   * CommitOutcomeUnknown, never with an error that claims a rollback.
   */
  readonly withTransaction: <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | DatabaseUnavailable | CommitOutcomeUnknown, R>
  /** Succeeds when the database can be reached (readiness). */
  readonly ping: Effect.Effect<void, DatabaseUnavailable>

  /**
   * Records a resumable upload's intent (pending, as `insertPending`) with offset 0
   * and an empty tail, expiring `expiresIn` from now. The reconciler leaves it alone
   * until it expires, then reclaims it as any abandoned upload.
   */
  readonly insertResumable: (
    record: FileRecord,
    upload: {
      readonly length: number
      readonly partSize: number
      readonly check: Uint8Array
      readonly expiresIn: Duration.Duration
    }
  ) => Effect.Effect<void, DatabaseUnavailable>
  /** The owner's live resumable upload; none when there is none, or it expired or was reclaimed. */
  readonly findResumable: (
    owner: Owner,
    id: FileId
  ) => Effect.Effect<Option.Option<ResumableUpload>, DatabaseUnavailable>
  /** The bytes of the upload's tail, in order. */
  readonly resumableTail: (id: FileId) => Effect.Effect<ReadonlyArray<Uint8Array>, DatabaseUnavailable>
  /**
   * Makes a PATCH's progress durable in one transaction: only if the upload is live
   * and its offset is still `progress.from` (false otherwise, and nothing changed),
   * so offsets never go backwards and two writers cannot both advance it.
   */
  readonly advanceResumable: (
    id: FileId,
    progress: ResumableProgress
  ) => Effect.Effect<boolean, DatabaseUnavailable | CommitOutcomeUnknown>
  /**
   * Holds the upload's lock, across replicas, until the scope closes: false when
   * someone else holds it. The lock is a lease the holder renews while it holds it,
   * so a holder that dies (kill -9) lets it go once the lease runs out (seconds),
   * without holding a connection meanwhile.
   */
  readonly lockResumable: (id: FileId) => Effect.Effect<boolean, DatabaseUnavailable, Scope.Scope>
  /** Forgets a resumable upload's offset, parts and tail (once committed); its record stays. */
  readonly dropResumable: (id: FileId) => Effect.Effect<void, DatabaseUnavailable>
}>() {}

/** A page from rows fetched with one more than `limit`: the extra row says a next page exists. */
export const toPage = (rows: ReadonlyArray<FileRecord>, limit: number): FilePage => {
  const items = rows.slice(0, limit)
  const last = items[items.length - 1]
  return {
    items,
    nextCursor: rows.length > limit && last !== undefined
      ? Option.some<FileCursor>({ createdAt: last.createdAt, id: last.id })
      : Option.none()
  }
}

export const atLeastOne = (limit: number): number => Math.max(1, Math.floor(limit))
