import { SqlClient, SqlSchema } from "@effect/sql"
import { DateTime, Duration, Effect, Layer, Option, Schema } from "effect"
import { FileId, FileRecord, ObjectKey, Owner, type Sha256Hex } from "../../domain/FileRecord.js"
import { IdempotencyKey } from "../../domain/IdempotencyKey.js"
import { Repair, RepairProblem } from "../../domain/Repair.js"
import type { Intent } from "../../ports/FileRepository.js"
import { atLeastOne, FileRepository, toPage } from "../../ports/FileRepository.js"
import { fileColumns, FileRecordFromRow, recordFromRow, rowFromRecord } from "./PgFileRows.js"
import * as Resumable from "./PgResumableUploads.js"
import * as PgTransaction from "./PgTransaction.js"

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

/**
 * An ISO timestamp as PostgreSQL reads it. Past year 9999 the ISO form has a signed
 * six-digit year (`+010000-01-01T…`), which PostgreSQL refuses ("time zone displacement
 * out of range"); unsigned (`10000-01-01T…`) it reads every year a DateTime can hold.
 * A cursor may name such a time: a position after every file.
 */
const pgTimestamp = (iso: string): string => iso.replace(/^\+0*/, "")

const ListRequest = Schema.Struct({
  owner: Owner,
  limit: Schema.Int,
  after: Schema.OptionFromSelf(Schema.Struct({ createdAt: Schema.DateTimeUtc, id: FileId }))
})

const StaleRequest = Schema.Struct({
  before: Schema.DateTimeUtc,
  limit: Schema.Int,
  includeLiveResumable: Schema.Boolean
})

export const layer: Layer.Layer<FileRepository, never, SqlClient.SqlClient> = Layer.scoped(
  FileRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { statement: unavailable, withTransaction } = PgTransaction.make(sql)

    const columns = sql`id, owner, name, size, content_type, sha256, object_key, created_at`

    // The upload's two statements (insertPending, commitPending) take their parameters
    // straight from values that are valid by construction (a checkedRecord, a checked
    // content): encoding them through a Schema again cost CPU on every upload.
    // createdAt is written as the Schema would encode it (DateTimeUtc: formatIso).
    const insertPending = (r: FileRecord) =>
      sql`INSERT INTO files (id, owner, name, size, content_type, sha256, object_key, created_at, status,
                             status_since)
          VALUES (${r.id}, ${r.owner}, ${r.name}, ${r.size}, ${r.contentType}, ${r.sha256}, ${r.objectKey},
                  ${DateTime.formatIso(r.createdAt)}, 'pending', now())`.pipe(Effect.asVoid)

    const KeyRequest = Schema.Struct({ owner: Owner, key: IdempotencyKey })

    const deleteExpiredKey = SqlSchema.void({
      Request: Schema.Struct({ owner: Owner, key: IdempotencyKey, seconds: Schema.Number }),
      execute: ({ key, owner, seconds }) =>
        sql`DELETE FROM idempotency_keys
            WHERE owner = ${owner} AND key = ${key} AND created_at <= now() - make_interval(secs => ${seconds})`
    })

    // Waits while another transaction holds the key, then does nothing if it committed it.
    const insertKey = SqlSchema.findAll({
      Request: Schema.Struct({ owner: Owner, key: IdempotencyKey, fileId: FileId }),
      Result: Schema.Struct({ file_id: Schema.String }),
      execute: ({ fileId, key, owner }) =>
        sql`INSERT INTO idempotency_keys (owner, key, file_id) VALUES (${owner}, ${key}, ${fileId})
            ON CONFLICT DO NOTHING RETURNING file_id`
    })

    const keyedFile = SqlSchema.findOne({
      Request: KeyRequest,
      Result: Schema.Struct({ id: FileId, status: Schema.String }),
      execute: ({ key, owner }) =>
        sql`SELECT f.id, f.status FROM idempotency_keys k JOIN files f ON f.id = k.file_id
            WHERE k.owner = ${owner} AND k.key = ${key}`
    })

    const purgeKeys = SqlSchema.single({
      Request: Schema.Number,
      Result: Schema.Struct({ purged: Schema.Int }),
      execute: (seconds) =>
        sql`WITH purged AS (
              DELETE FROM idempotency_keys WHERE created_at <= now() - make_interval(secs => ${seconds}) RETURNING 1
            )
            SELECT count(*)::int AS purged FROM purged`
    })

    const recordMultipart = SqlSchema.findAll({
      Request: Schema.Struct({ id: FileId, uploadId: Schema.String }),
      Result: Schema.Struct({ id: Schema.String }),
      execute: ({ id, uploadId }) =>
        sql`UPDATE files SET multipart_upload_id = ${uploadId}
            WHERE id = ${id} AND status = 'pending' RETURNING id`
    })

    /**
     * The owner of a pending intent, its row locked, and the owner's commits made to
     * take turns (a lock on the owner, held until the transaction ends): what a quota
     * check needs, so that two commits of one owner cannot both fit in its last slot.
     */
    const lockOwnerOf = SqlSchema.findOne({
      Request: FileId,
      Result: Schema.Struct({ owner: Schema.String }),
      execute: (id) =>
        sql`SELECT owner, pg_advisory_xact_lock(hashtextextended(owner, 0)) AS locked FROM (
              SELECT owner FROM files WHERE id = ${id} AND status = 'pending' FOR UPDATE
            ) intent`
    })

    const usage = SqlSchema.single({
      Request: Schema.String,
      Result: Schema.Struct({ files: Schema.NumberFromString, bytes: Schema.NumberFromString }),
      execute: (owner) =>
        sql`SELECT count(*)::text AS files, coalesce(sum(size), 0)::text AS bytes
            FROM files WHERE owner = ${owner} AND status = 'committed'`
    })

    const commitPending = (
      { id, sha256, size }: { readonly id: FileId; readonly size: number; readonly sha256: Sha256Hex }
    ) =>
      sql`UPDATE files SET status = 'committed', status_since = now(), size = ${size}, sha256 = ${sha256},
                           multipart_upload_id = NULL
          WHERE id = ${id} AND status = 'pending' RETURNING id`

    const markDeleting = SqlSchema.findOne({
      Request: Schema.Struct({ owner: Owner, id: FileId }),
      Result: FileRecordFromRow,
      execute: ({ id, owner }) =>
        sql`UPDATE files SET status = 'deleting', status_since = now()
            WHERE id = ${id} AND owner = ${owner} AND status = 'committed' RETURNING ${columns}`
    })

    const remove = SqlSchema.void({
      Request: FileId,
      execute: (id) => sql`DELETE FROM files WHERE id = ${id}`
    })

    const find = SqlSchema.findOne({
      Request: Schema.Struct({ owner: Owner, id: FileId }),
      Result: FileRecordFromRow,
      execute: ({ id, owner }) =>
        sql`SELECT ${columns} FROM files WHERE id = ${id} AND owner = ${owner} AND status = 'committed'`
    })

    const findAny = SqlSchema.findOne({
      Request: FileId,
      Result: FileRecordFromRow,
      execute: (id) => sql`SELECT ${columns} FROM files WHERE id = ${id} AND status = 'committed'`
    })

    const list = SqlSchema.findAll({
      Request: ListRequest,
      Result: FileRecordFromRow,
      execute: ({ after, limit, owner }) =>
        Option.match(after, {
          onNone: () =>
            sql`SELECT ${columns} FROM files WHERE owner = ${owner} AND status = 'committed'
                ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
          onSome: (cursor) =>
            sql`SELECT ${columns} FROM files
                WHERE owner = ${owner} AND status = 'committed'
                  AND (created_at, id) < (${pgTimestamp(cursor.createdAt)}::timestamptz, ${cursor.id}::uuid)
                ORDER BY created_at DESC, id DESC LIMIT ${limit}`
        })
    })

    const cutoff = SqlSchema.single({
      Request: Schema.Number,
      Result: Schema.Struct({ cutoff: Schema.ValidDateFromSelf }),
      execute: (seconds) => sql`SELECT now() - make_interval(secs => ${seconds}) AS cutoff`
    })

    /**
     * When an intent of `files` is stale: a live resumable upload (pending, with its
     * resumable row) once it expires, whatever the grace period; any other once it
     * has been in its state since `before`.
     */
    const isStale = (before: string, includeLiveResumable = false) =>
      sql`(CASE WHEN status = 'pending' AND EXISTS (SELECT 1 FROM resumable_uploads r WHERE r.file_id = files.id)
                THEN ${includeLiveResumable} OR EXISTS (
                  SELECT 1 FROM resumable_uploads r WHERE r.file_id = files.id AND r.expires_at <= now())
                ELSE status_since <= ${before}::timestamptz END)`

    const staleIntents = SqlSchema.findAll({
      Request: StaleRequest,
      Result: IntentFromRow,
      execute: ({ before, includeLiveResumable, limit }) =>
        sql`SELECT ${columns}, status, status_since, multipart_upload_id FROM files
            WHERE status <> 'committed' AND ${isStale(before, includeLiveResumable)}
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
              WHERE status <> 'committed' AND ${isStale(before)}
              ORDER BY status_since, id LIMIT ${limit}
              FOR UPDATE SKIP LOCKED
            ), claimed AS (
              UPDATE files f
              SET status = CASE WHEN f.status = 'deleting' THEN 'deleting' ELSE 'reclaiming' END,
                  -- Later than the pass's cutoff even within one tick of the clock, so
                  -- the same pass never claims it again.
                  status_since = GREATEST(now(), ${before}::timestamptz + interval '1 millisecond')
              FROM stale WHERE f.id = stale.id
              RETURNING f.id, f.owner, f.name, f.size, f.content_type, f.sha256, f.object_key, f.created_at,
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
        sql`INSERT INTO files (id, owner, name, size, content_type, sha256, object_key, created_at, status,
                               status_since)
            VALUES (${r.id}, ${r.owner}, ${r.name}, ${r.size}, ${r.contentType}, ${r.sha256}, ${r.objectKey},
                    ${r.createdAt}, 'committed', now())
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

    const resumable = Resumable.make(sql, columns, insertPending, unavailable, withTransaction)

    return FileRepository.of({
      ...resumable,
      insertPending: (record) => insertPending(record).pipe(unavailable("insertPending")),
      // The intent first (the key names it), then the key; a key someone holds undoes the intent.
      insertPendingWithKey: (record, key, ttl) =>
        Effect.gen(function*() {
          const owner = record.owner
          yield* deleteExpiredKey({ owner, key, seconds: Duration.toSeconds(ttl) })
          yield* insertPending(record)
          if ((yield* insertKey({ owner, key, fileId: record.id })).length > 0) return { _tag: "Inserted" } as const
          yield* remove(record.id)
          const holder = yield* keyedFile({ owner, key })
          if (Option.isSome(holder) && holder.value.status === "committed") {
            const made = yield* find({ owner, id: holder.value.id })
            if (Option.isSome(made)) return { _tag: "Done", record: made.value } as const
          }
          return { _tag: "InFlight" } as const
        }).pipe(unavailable("insertPendingWithKey"), withTransaction),
      recordMultipart: (id, uploadId) =>
        recordMultipart({ id, uploadId }).pipe(Effect.map((rows) => rows.length > 0), unavailable("recordMultipart")),
      // Under a quota, a transaction of its own (a savepoint inside a caller's): the
      // owner's advisory lock then holds from the usage count to the commit.
      commitPending: (id, content, quota) =>
        Effect.gen(function*() {
          if (Option.isSome(quota.maxFiles) || Option.isSome(quota.maxBytes)) {
            const owner = yield* lockOwnerOf(id)
            if (Option.isNone(owner)) return "Gone" as const
            const used = yield* usage(owner.value.owner)
            const over = Option.exists(quota.maxFiles, (max) => used.files + 1 > max) ||
              Option.exists(quota.maxBytes, (max) => used.bytes + content.size > max)
            if (over) return "OverQuota" as const
          }
          const rows = yield* commitPending({ id, ...content })
          return rows.length > 0 ? "Committed" as const : "Gone" as const
        }).pipe(
          unavailable("commitPending"),
          (commit) => Option.isSome(quota.maxFiles) || Option.isSome(quota.maxBytes) ? withTransaction(commit) : commit
        ),
      markDeleting: (owner, id) => markDeleting({ owner, id }).pipe(unavailable("markDeleting")),
      remove: (id) => remove(id).pipe(unavailable("remove")),
      find: (owner, id) => find({ owner, id }).pipe(unavailable("find")),
      findAny: (id) => findAny(id).pipe(unavailable("findAny")),
      list: (owner, { after, limit }) => {
        const size = atLeastOne(limit)
        return list({ owner, limit: size + 1, after }).pipe(
          Effect.map((rows) => toPage(rows, size)),
          unavailable("list")
        )
      },
      cutoff: (olderThan) =>
        cutoff(Duration.toSeconds(olderThan)).pipe(
          Effect.map((row) => DateTime.unsafeFromDate(row.cutoff)),
          unavailable("cutoff")
        ),
      staleIntents: ({ before, includeLiveResumable = false, limit }) =>
        staleIntents({ before, limit: atLeastOne(limit), includeLiveResumable }).pipe(
          Effect.map((rows): ReadonlyArray<Intent> => rows),
          unavailable("staleIntents")
        ),
      claimStaleIntents: ({ before, limit }) =>
        claimStaleIntents({ before, limit: atLeastOne(limit), includeLiveResumable: false }).pipe(
          Effect.map((rows): ReadonlyArray<Intent> => rows),
          unavailable("claimStaleIntents")
        ),
      unknownKeys: (keys) =>
        keys.length === 0
          ? Effect.succeed([])
          : unknownKeys(keys).pipe(Effect.map((rows) => rows.map((row) => row.key)), unavailable("unknownKeys")),
      recordRepair: (repair) =>
        recordRepair(repair).pipe(Effect.map((rows) => rows.length > 0), unavailable("recordRepair")),
      purgeIdempotencyKeys: (ttl) =>
        purgeKeys(Duration.toSeconds(ttl)).pipe(Effect.map((row) => row.purged), unavailable("purgeIdempotencyKeys")),
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
