import { SqlClient, SqlSchema } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, FiberRef, Layer, Option, Ref, Schema } from "effect"
import type { FileCursor } from "../domain/FileCursor.js"
import { FileId, FileRecord } from "../domain/FileRecord.js"
import { DatabaseUnavailable } from "../domain/StorageErrors.js"
import type { FilePage } from "../ports/FileRepository.js"
import { FileRepository } from "../ports/FileRepository.js"

/** A row of `files` as the pg driver returns it: bigint as a string, timestamptz as a Date. */
const FileRow = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  size: Schema.NumberFromString,
  content_type: Schema.String,
  sha256: Schema.String,
  object_key: Schema.String,
  created_at: Schema.ValidDateFromSelf
})

const FileRecordFromRow = Schema.transform(FileRow, FileRecord, {
  strict: true,
  decode: (row) => ({
    id: row.id,
    name: row.name,
    size: row.size,
    contentType: row.content_type,
    sha256: row.sha256,
    objectKey: row.object_key,
    createdAt: row.created_at.toISOString()
  }),
  encode: (record) => ({
    id: record.id,
    name: record.name,
    size: record.size,
    content_type: record.contentType,
    sha256: record.sha256,
    object_key: record.objectKey,
    created_at: new Date(record.createdAt)
  })
})

const ListRequest = Schema.Struct({
  limit: Schema.Int,
  after: Schema.OptionFromSelf(Schema.Struct({ createdAt: Schema.DateTimeUtc, id: FileId }))
})

const isSqlError = (u: unknown): u is SqlError => u instanceof SqlError

/** The page and, when more rows were fetched than asked for, where the next one starts. */
const toPage = (rows: ReadonlyArray<FileRecord>, limit: number): FilePage => {
  const items = rows.slice(0, limit)
  const last = items[items.length - 1]
  return {
    items,
    nextCursor: rows.length > limit && last !== undefined
      ? Option.some<FileCursor>({ createdAt: last.createdAt, id: last.id })
      : Option.none()
  }
}

export const layer: Layer.Layer<FileRepository, never, SqlClient.SqlClient> = Layer.scoped(
  FileRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // Set inside withTransaction: records that a call failed there. PostgreSQL then
    // has aborted the transaction and would turn COMMIT into a silent ROLLBACK.
    const failedInTransaction = yield* FiberRef.make(Option.none<Ref.Ref<boolean>>())

    const unavailable = (operation: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
      self.pipe(
        Effect.tapError(() =>
          Effect.flatMap(FiberRef.get(failedInTransaction), Option.match({
            onNone: () => Effect.void,
            onSome: (failed) => Ref.set(failed, true)
          }))
        ),
        Effect.mapError((cause) => new DatabaseUnavailable({ operation, cause }))
      )

    const columns = sql`id, name, size, content_type, sha256, object_key, created_at`

    const insertRow = SqlSchema.void({
      Request: FileRecord,
      execute: (r) =>
        sql`INSERT INTO files (id, name, size, content_type, sha256, object_key, created_at)
            VALUES (${r.id}, ${r.name}, ${r.size}, ${r.contentType}, ${r.sha256}, ${r.objectKey}, ${r.createdAt})`
    })

    const findRow = SqlSchema.findOne({
      Request: FileId,
      Result: FileRecordFromRow,
      execute: (id) => sql`SELECT ${columns} FROM files WHERE id = ${id}`
    })

    const deleteRow = SqlSchema.findOne({
      Request: FileId,
      Result: FileRecordFromRow,
      execute: (id) => sql`DELETE FROM files WHERE id = ${id} RETURNING ${columns}`
    })

    const listRows = SqlSchema.findAll({
      Request: ListRequest,
      Result: FileRecordFromRow,
      execute: ({ after, limit }) =>
        Option.match(after, {
          onNone: () => sql`SELECT ${columns} FROM files ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
          onSome: (cursor) =>
            sql`SELECT ${columns} FROM files
                WHERE (created_at, id) < (${cursor.createdAt}::timestamptz, ${cursor.id}::uuid)
                ORDER BY created_at DESC, id DESC LIMIT ${limit}`
        })
    })

    const withTransaction = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | DatabaseUnavailable, R> =>
      Effect.flatMap(Ref.make(false), (failed) =>
        sql.withTransaction(
          Effect.locally(self, failedInTransaction, Option.some(failed)).pipe(
            Effect.tap(() =>
              Effect.flatMap(Ref.get(failed), (swallowed) =>
                swallowed
                  ? new DatabaseUnavailable({
                    operation: "withTransaction",
                    cause: new Error("a call failed inside the transaction, so it cannot commit")
                  })
                  : Effect.void)
            )
          )
        ).pipe(
          // BEGIN or SAVEPOINT failed.
          Effect.catchIf(isSqlError, (cause) => new DatabaseUnavailable({ operation: "withTransaction", cause })),
          // @effect/sql turns a failed COMMIT or ROLLBACK into a defect.
          Effect.catchSomeDefect((defect) =>
            isSqlError(defect)
              ? Option.some(Effect.fail(new DatabaseUnavailable({ operation: "commit", cause: defect })))
              : Option.none()
          ),
          Effect.withSpan("PgFileRepository.withTransaction")
        ))

    return FileRepository.of({
      insert: (record) => insertRow(record).pipe(unavailable("insert"), Effect.withSpan("PgFileRepository.insert")),
      find: (id) => findRow(id).pipe(unavailable("find"), Effect.withSpan("PgFileRepository.find")),
      list: ({ after, limit }) => {
        const size = Math.max(1, Math.floor(limit))
        return listRows({ limit: size + 1, after }).pipe(
          Effect.map((rows) => toPage(rows, size)),
          unavailable("list"),
          Effect.withSpan("PgFileRepository.list")
        )
      },
      delete: (id) => deleteRow(id).pipe(unavailable("delete"), Effect.withSpan("PgFileRepository.delete")),
      withTransaction,
      ping: sql`SELECT 1`.pipe(Effect.asVoid, unavailable("ping"), Effect.withSpan("PgFileRepository.ping"))
    })
  })
)
