import { SqlClient, SqlSchema } from "@effect/sql"
import { DateTime, Duration, Effect, Layer, Option, Schema } from "effect"
import { FileId, FileRecord, ObjectKey, Sha256Hex } from "../../domain/FileRecord.js"
import { Repair, RepairProblem } from "../../domain/Repair.js"
import type { Intent } from "../../ports/FileRepository.js"
import { atLeastOne, FileRepository, toPage } from "../../ports/FileRepository.js"
import * as PgTransaction from "./PgTransaction.js"

/** The columns of a `files` row as the pg driver returns them: bigint as a string, timestamptz as a Date. */
const fileColumns = {
  id: Schema.String,
  name: Schema.String,
  size: Schema.NumberFromString,
  content_type: Schema.String,
  sha256: Schema.String,
  object_key: Schema.String,
  created_at: Schema.ValidDateFromSelf
}
const FileRow = Schema.Struct(fileColumns)

const recordFromRow = (row: typeof FileRow.Type): typeof FileRecord.Encoded => ({
  id: row.id,
  name: row.name,
  size: row.size,
  contentType: row.content_type,
  sha256: row.sha256,
  objectKey: row.object_key,
  createdAt: row.created_at.toISOString()
})

const rowFromRecord = (record: typeof FileRecord.Encoded): typeof FileRow.Type => ({
  id: record.id,
  name: record.name,
  size: record.size,
  content_type: record.contentType,
  sha256: record.sha256,
  object_key: record.objectKey,
  created_at: new Date(record.createdAt)
})

const FileRecordFromRow = Schema.transform(FileRow, FileRecord, {
  strict: true,
  decode: recordFromRow,
  encode: rowFromRecord
})

/** An intent: a pending or deleting row, with when it entered that state. */
const IntentFromRow = Schema.transform(
  Schema.Struct({
    ...fileColumns,
    status: Schema.Literal("pending", "deleting", "reclaiming"),
    status_since: Schema.ValidDateFromSelf,
    multipart_upload_id: Schema.NullOr(Schema.String)
  }),
  Schema.Struct({
    kind: Schema.Literal("upload", "delete"),
    record: FileRecord,
    since: Schema.DateTimeUtc,
    multipartUploadId: Schema.OptionFromNullOr(Schema.String)
  }),
  {
    strict: true,
    decode: (row) => ({
      kind: row.status === "deleting" ? "delete" as const : "upload" as const,
      record: recordFromRow(row),
      since: row.status_since.toISOString(),
      multipartUploadId: row.multipart_upload_id
    }),
    encode: (intent) => ({
      ...rowFromRecord(intent.record),
      status: intent.kind === "upload" ? "pending" as const : "deleting" as const,
      status_since: new Date(intent.since),
      multipart_upload_id: intent.multipartUploadId
    })
  }
)

const RepairFromRow = Schema.transform(
  Schema.Struct({
    object_key: Schema.String,
    file_id: Schema.NullOr(Schema.String),
    problem: RepairProblem,
    action: Schema.String,
    repaired_at: Schema.ValidDateFromSelf
  }),
  Repair,
  {
    strict: true,
    decode: (row) => ({
      objectKey: row.object_key,
      fileId: row.file_id,
      problem: row.problem,
      action: row.action,
      repairedAt: row.repaired_at.toISOString()
    }),
    encode: (repair) => ({
      object_key: repair.objectKey,
      file_id: repair.fileId,
      problem: repair.problem,
      action: repair.action,
      repaired_at: new Date(repair.repairedAt)
    })
  }
)

const ListRequest = Schema.Struct({
  limit: Schema.Int,
  after: Schema.OptionFromSelf(Schema.Struct({ createdAt: Schema.DateTimeUtc, id: FileId }))
})

const StaleRequest = Schema.Struct({ before: Schema.DateTimeUtc, limit: Schema.Int })

export const layer: Layer.Layer<FileRepository, never, SqlClient.SqlClient> = Layer.scoped(
  FileRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { statement: unavailable, withTransaction } = PgTransaction.make(sql)

    const columns = sql`id, name, size, content_type, sha256, object_key, created_at`

    const insertPending = SqlSchema.void({
      Request: FileRecord,
      execute: (r) =>
        sql`INSERT INTO files (id, name, size, content_type, sha256, object_key, created_at, status, status_since)
            VALUES (${r.id}, ${r.name}, ${r.size}, ${r.contentType}, ${r.sha256}, ${r.objectKey}, ${r.createdAt},
                    'pending', now())`
    })

    const recordMultipart = SqlSchema.findAll({
      Request: Schema.Struct({ id: FileId, uploadId: Schema.String }),
      Result: Schema.Struct({ id: Schema.String }),
      execute: ({ id, uploadId }) =>
        sql`UPDATE files SET multipart_upload_id = ${uploadId}
            WHERE id = ${id} AND status = 'pending' RETURNING id`
    })

    const commitPending = SqlSchema.findAll({
      Request: Schema.Struct({ id: FileId, size: Schema.NonNegativeInt, sha256: Sha256Hex }),
      Result: Schema.Struct({ id: Schema.String }),
      execute: ({ id, sha256, size }) =>
        sql`UPDATE files SET status = 'committed', status_since = now(), size = ${size}, sha256 = ${sha256},
                             multipart_upload_id = NULL
            WHERE id = ${id} AND status = 'pending' RETURNING id`
    })

    const markDeleting = SqlSchema.findOne({
      Request: FileId,
      Result: FileRecordFromRow,
      execute: (id) =>
        sql`UPDATE files SET status = 'deleting', status_since = now()
            WHERE id = ${id} AND status = 'committed' RETURNING ${columns}`
    })

    const remove = SqlSchema.void({
      Request: FileId,
      execute: (id) => sql`DELETE FROM files WHERE id = ${id}`
    })

    const find = SqlSchema.findOne({
      Request: FileId,
      Result: FileRecordFromRow,
      execute: (id) => sql`SELECT ${columns} FROM files WHERE id = ${id} AND status = 'committed'`
    })

    const list = SqlSchema.findAll({
      Request: ListRequest,
      Result: FileRecordFromRow,
      execute: ({ after, limit }) =>
        Option.match(after, {
          onNone: () =>
            sql`SELECT ${columns} FROM files WHERE status = 'committed'
                ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
          onSome: (cursor) =>
            sql`SELECT ${columns} FROM files
                WHERE status = 'committed'
                  AND (created_at, id) < (${cursor.createdAt}::timestamptz, ${cursor.id}::uuid)
                ORDER BY created_at DESC, id DESC LIMIT ${limit}`
        })
    })

    const cutoff = SqlSchema.single({
      Request: Schema.Number,
      Result: Schema.Struct({ cutoff: Schema.ValidDateFromSelf }),
      execute: (seconds) => sql`SELECT now() - make_interval(secs => ${seconds}) AS cutoff`
    })

    const staleIntents = SqlSchema.findAll({
      Request: StaleRequest,
      Result: IntentFromRow,
      execute: ({ before, limit }) =>
        sql`SELECT ${columns}, status, status_since, multipart_upload_id FROM files
            WHERE status <> 'committed' AND status_since <= ${before}::timestamptz
            ORDER BY status_since, id LIMIT ${limit}`
    })

    // One statement: the claim's row locks end with it. The intents come back with
    // the instant they became stale at, not their claim's.
    const claimStaleIntents = SqlSchema.findAll({
      Request: StaleRequest,
      Result: IntentFromRow,
      execute: ({ before, limit }) =>
        sql`WITH stale AS (
              SELECT id, status_since AS stale_since FROM files
              WHERE status <> 'committed' AND status_since <= ${before}::timestamptz
              ORDER BY status_since, id LIMIT ${limit}
              FOR UPDATE SKIP LOCKED
            ), claimed AS (
              UPDATE files f
              SET status = CASE WHEN f.status = 'deleting' THEN 'deleting' ELSE 'reclaiming' END,
                  -- Later than the pass's cutoff even within one tick of the clock, so
                  -- the same pass never claims it again.
                  status_since = GREATEST(now(), ${before}::timestamptz + interval '1 millisecond')
              FROM stale WHERE f.id = stale.id
              RETURNING f.id, f.name, f.size, f.content_type, f.sha256, f.object_key, f.created_at,
                        f.status, stale.stale_since AS status_since, f.multipart_upload_id
            )
            SELECT * FROM claimed ORDER BY status_since, id`
    })

    // In the order given, duplicates kept.
    const unknownKeys = SqlSchema.findAll({
      Request: Schema.Array(ObjectKey),
      Result: Schema.Struct({ key: ObjectKey }),
      execute: (keys) =>
        sql`SELECT u.key FROM unnest(${keys}::text[]) WITH ORDINALITY AS u(key, n)
            WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.object_key = u.key)
            ORDER BY u.n`
    })

    // A concurrent transaction inserting the same key waits for this one to end,
    // then finds the conflict: the first writer's claim holds until it commits.
    const recordRepair = SqlSchema.findAll({
      Request: Repair,
      Result: Schema.Struct({ id: Schema.String }),
      execute: (r) =>
        sql`INSERT INTO repairs (object_key, file_id, problem, action, repaired_at)
            VALUES (${r.objectKey}, ${r.fileId}::uuid, ${r.problem}, ${r.action}, ${r.repairedAt}::timestamptz)
            ON CONFLICT (object_key) DO NOTHING RETURNING id`
    })

    const insertCommitted = SqlSchema.findAll({
      Request: FileRecord,
      Result: Schema.Struct({ id: Schema.String }),
      execute: (r) =>
        sql`INSERT INTO files (id, name, size, content_type, sha256, object_key, created_at, status, status_since)
            VALUES (${r.id}, ${r.name}, ${r.size}, ${r.contentType}, ${r.sha256}, ${r.objectKey}, ${r.createdAt},
                    'committed', now())
            ON CONFLICT DO NOTHING RETURNING id`
    })

    const binding = SqlSchema.findOne({
      Request: Schema.Void,
      Result: Schema.Struct({ binding_id: Schema.String }),
      execute: () => sql`SELECT binding_id FROM store_binding`
    })

    const bind = SqlSchema.void({
      Request: Schema.String,
      execute: (id) =>
        sql`INSERT INTO store_binding (binding_id) VALUES (${id})
            ON CONFLICT (singleton) DO UPDATE SET binding_id = excluded.binding_id, bound_at = now()`
    })

    const repairs = SqlSchema.findAll({
      Request: Schema.Int,
      Result: RepairFromRow,
      execute: (limit) =>
        sql`SELECT object_key, file_id, problem, action, repaired_at FROM repairs
            ORDER BY repaired_at DESC, id DESC LIMIT ${limit}`
    })

    return FileRepository.of({
      insertPending: (record) => insertPending(record).pipe(unavailable("insertPending")),
      recordMultipart: (id, uploadId) =>
        recordMultipart({ id, uploadId }).pipe(Effect.map((rows) => rows.length > 0), unavailable("recordMultipart")),
      commitPending: (id, content) =>
        commitPending({ id, ...content }).pipe(Effect.map((rows) => rows.length > 0), unavailable("commitPending")),
      markDeleting: (id) => markDeleting(id).pipe(unavailable("markDeleting")),
      remove: (id) => remove(id).pipe(unavailable("remove")),
      find: (id) => find(id).pipe(unavailable("find")),
      list: ({ after, limit }) => {
        const size = atLeastOne(limit)
        return list({ limit: size + 1, after }).pipe(Effect.map((rows) => toPage(rows, size)), unavailable("list"))
      },
      cutoff: (olderThan) =>
        cutoff(Duration.toSeconds(olderThan)).pipe(
          Effect.map((row) => DateTime.unsafeFromDate(row.cutoff)),
          unavailable("cutoff")
        ),
      staleIntents: ({ before, limit }) =>
        staleIntents({ before, limit: atLeastOne(limit) }).pipe(
          Effect.map((rows): ReadonlyArray<Intent> => rows),
          unavailable("staleIntents")
        ),
      claimStaleIntents: ({ before, limit }) =>
        claimStaleIntents({ before, limit: atLeastOne(limit) }).pipe(
          Effect.map((rows): ReadonlyArray<Intent> => rows),
          unavailable("claimStaleIntents")
        ),
      unknownKeys: (keys) =>
        keys.length === 0
          ? Effect.succeed([])
          : unknownKeys(keys).pipe(Effect.map((rows) => rows.map((row) => row.key)), unavailable("unknownKeys")),
      recordRepair: (repair) =>
        recordRepair(repair).pipe(Effect.map((rows) => rows.length > 0), unavailable("recordRepair")),
      repairs: (limit) => repairs(atLeastOne(limit)).pipe(unavailable("repairs")),
      insertCommitted: (record) =>
        insertCommitted(record).pipe(Effect.map((rows) => rows.length > 0), unavailable("insertCommitted")),
      binding: binding(undefined).pipe(Effect.map(Option.map((row) => row.binding_id)), unavailable("binding")),
      bind: (id) => bind(id).pipe(unavailable("bind")),
      withTransaction,
      ping: sql`SELECT 1`.pipe(Effect.asVoid, unavailable("ping"))
    })
  })
)
