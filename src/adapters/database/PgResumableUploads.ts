import type { SqlClient } from "@effect/sql"
import type { Fragment } from "@effect/sql/Statement"
import { DateTime, Duration, Effect, Option, Schedule, Schema } from "effect"
import { type FileId, FileRecord } from "../../domain/FileRecord.js"
import { type CommitOutcomeUnknown, DatabaseUnavailable } from "../../domain/StorageErrors.js"
import type { FileRepository, ResumableUpload } from "../../ports/FileRepository.js"
import { fileColumns, recordFromRow } from "./PgFileRows.js"

/** How long a PATCH's lock lasts unless renewed; a holder renews it three times as often. */
const LEASE = Duration.seconds(10)
const RENEW_EVERY = Duration.millis(Duration.toMillis(LEASE) / 3)

const ResumableRow = Schema.Struct({
  ...fileColumns,
  multipart_upload_id: Schema.NullOr(Schema.String),
  upload_length: Schema.NumberFromString,
  upload_offset: Schema.NumberFromString,
  part_size: Schema.NumberFromString,
  parts: Schema.Array(Schema.String),
  content_check: Schema.Uint8ArrayFromSelf,
  expires_at: Schema.ValidDateFromSelf
})
const decodeRows = Schema.decodeUnknown(Schema.Array(ResumableRow))
const decodeRecord = Schema.decodeUnknown(FileRecord)

const TailRows = Schema.Array(Schema.Struct({ bytes: Schema.Uint8ArrayFromSelf }))
const decodeTail = Schema.decodeUnknown(TailRows)

/** bytea parameters: the pg driver sends a Buffer as binary; a view of the same memory, not a copy. */
const bytea = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

type Methods = Pick<
  FileRepository["Type"],
  "insertResumable" | "findResumable" | "resumableTail" | "advanceResumable" | "lockResumable" | "dropResumable"
>

/**
 * The resumable-upload (tus) half of PgFileRepository, over the tables of migration
 * 0008: a PATCH's progress is one transaction (offset, parts, tail, check state), so
 * an acknowledged offset is exactly what committed; the lock is a lease row, renewed
 * by a fiber of its holder.
 */
export const make = (
  sql: SqlClient.SqlClient,
  columns: Fragment,
  insertPending: (record: FileRecord) => Effect.Effect<void, unknown>,
  unavailable: (
    operation: string
  ) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, DatabaseUnavailable, R>,
  withTransaction: <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | DatabaseUnavailable | CommitOutcomeUnknown, R>
): Methods => {
  const seconds = (duration: Duration.Duration) => Duration.toSeconds(duration)

  const insertResumable: Methods["insertResumable"] = (record, upload) =>
    Effect.gen(function*() {
      yield* insertPending(record)
      yield* sql`INSERT INTO resumable_uploads (file_id, upload_length, part_size, content_check, expires_at)
                 VALUES (${record.id}, ${upload.length}, ${upload.partSize}, ${bytea(upload.check)},
                         now() + make_interval(secs => ${seconds(upload.expiresIn)}))`
    }).pipe(
      unavailable("insertResumable"),
      withTransaction,
      // Nothing was acknowledged yet: an unknown outcome is a failure, and the reconciler
      // reclaims the upload if it did commit.
      Effect.catchTag("CommitOutcomeUnknown", (cause) =>
        Effect.fail(new DatabaseUnavailable({ operation: "insertResumable", cause })))
    )

  const findResumable: Methods["findResumable"] = (owner, id) =>
    sql`SELECT ${columns}, f.multipart_upload_id, r.upload_length, r.upload_offset, r.part_size, r.parts,
               r.content_check, r.expires_at
        FROM files f JOIN resumable_uploads r ON r.file_id = f.id
        WHERE f.id = ${id} AND f.owner = ${owner} AND f.status = 'pending' AND r.expires_at > now()`.pipe(
      Effect.flatMap(decodeRows),
      Effect.flatMap((rows) => {
        const row = rows[0]
        if (row === undefined) return Effect.succeedNone
        return Effect.map(
          decodeRecord(recordFromRow(row)),
          (record): Option.Option<ResumableUpload> =>
            Option.some({
              record,
              length: row.upload_length,
              offset: row.upload_offset,
              partSize: row.part_size,
              multipartUploadId: Option.fromNullable(row.multipart_upload_id),
              parts: row.parts,
              check: row.content_check,
              expiresAt: DateTime.unsafeFromDate(row.expires_at)
            })
        )
      }),
      unavailable("findResumable")
    )

  const resumableTail: Methods["resumableTail"] = (id) =>
    sql`SELECT bytes FROM resumable_tail WHERE file_id = ${id} ORDER BY at`.pipe(
      Effect.flatMap(decodeTail),
      Effect.map((rows) => rows.map((row) => row.bytes)),
      unavailable("resumableTail")
    )

  const advanceResumable: Methods["advanceResumable"] = (id, progress) =>
    Effect.gen(function*() {
      // A claim by the reconciler (FOR UPDATE SKIP LOCKED) passes over a row a PATCH holds.
      const live = yield* sql`SELECT 1 FROM files WHERE id = ${id} AND status = 'pending' FOR SHARE`
      if (live.length === 0) return false
      const advanced = yield* sql`
        UPDATE resumable_uploads
        SET upload_offset = ${progress.to},
            content_check = ${bytea(progress.check)},
            parts = parts || ${progress.parts}::text[],
            expires_at = now() + make_interval(secs => ${seconds(progress.expiresIn)})
        WHERE file_id = ${id} AND upload_offset = ${progress.from} AND expires_at > now()
        RETURNING file_id`
      if (advanced.length === 0) return false
      if (progress.parts.length > 0) yield* sql`DELETE FROM resumable_tail WHERE file_id = ${id}`
      if (progress.tail.byteLength > 0) {
        yield* sql`INSERT INTO resumable_tail (file_id, at, bytes)
                   VALUES (${id}, ${progress.to - progress.tail.byteLength}, ${bytea(progress.tail)})`
      }
      return true
    }).pipe(unavailable("advanceResumable"), withTransaction)

  const takeLease = (id: FileId, holder: string) =>
    sql`UPDATE resumable_uploads
        SET lease_holder = ${holder}, lease_until = now() + make_interval(secs => ${seconds(LEASE)})
        WHERE file_id = ${id} AND (lease_until IS NULL OR lease_until < now())
        RETURNING file_id`.pipe(Effect.map((rows) => rows.length > 0), unavailable("lockResumable"))

  const renewLease = (id: FileId, holder: string) =>
    sql`UPDATE resumable_uploads SET lease_until = now() + make_interval(secs => ${seconds(LEASE)})
        WHERE file_id = ${id} AND lease_holder = ${holder}`.pipe(unavailable("renewResumableLock"))

  const releaseLease = (id: FileId, holder: string) =>
    sql`UPDATE resumable_uploads SET lease_holder = NULL, lease_until = NULL
        WHERE file_id = ${id} AND lease_holder = ${holder}`.pipe(unavailable("unlockResumable"))

  const lockResumable: Methods["lockResumable"] = (id) =>
    Effect.gen(function*() {
      const holder = crypto.randomUUID()
      const taken = yield* Effect.acquireRelease(
        takeLease(id, holder),
        (taken) =>
          taken
            ? releaseLease(id, holder).pipe(
              // Not released: it runs out within LEASE.
              Effect.catchAll((cause) => Effect.logWarning("could not release a resumable upload's lock", cause))
            )
            : Effect.void
      )
      if (taken) {
        yield* renewLease(id, holder).pipe(
          Effect.catchAll((cause) => Effect.logWarning("could not renew a resumable upload's lock", cause)),
          Effect.repeat(Schedule.spaced(RENEW_EVERY)),
          Effect.delay(RENEW_EVERY),
          Effect.forkScoped
        )
      }
      return taken
    })

  const dropResumable: Methods["dropResumable"] = (id) =>
    sql`DELETE FROM resumable_uploads WHERE file_id = ${id}`.pipe(Effect.asVoid, unavailable("dropResumable"))

  return { insertResumable, findResumable, resumableTail, advanceResumable, lockResumable, dropResumable }
}
