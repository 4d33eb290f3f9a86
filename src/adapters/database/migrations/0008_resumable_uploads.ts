import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Resumable (tus) uploads. The upload's file row is its intent (pending until the
 * last byte commits it); beside it, what the bytes acknowledged so far are: the
 * object store's parts (receipts, in order), the tail that is not yet a part (in
 * `resumable_tail`, one row per PATCH, so appending never rewrites it), and the
 * content check's state. The lease serializes writers across replicas. All of it
 * goes with the file row (ON DELETE CASCADE).
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE resumable_uploads (
      file_id uuid PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
      upload_length bigint NOT NULL CHECK (upload_length >= 0),
      upload_offset bigint NOT NULL DEFAULT 0 CHECK (upload_offset >= 0 AND upload_offset <= upload_length),
      part_size bigint NOT NULL CHECK (part_size > 0),
      parts text[] NOT NULL DEFAULT '{}',
      content_check bytea NOT NULL,
      expires_at timestamptz NOT NULL,
      lease_holder uuid,
      lease_until timestamptz
    )
  `
  yield* sql`CREATE INDEX resumable_uploads_expires_at_idx ON resumable_uploads (expires_at)`
  yield* sql`
    CREATE TABLE resumable_tail (
      file_id uuid NOT NULL REFERENCES resumable_uploads (file_id) ON DELETE CASCADE,
      at bigint NOT NULL,
      bytes bytea NOT NULL,
      PRIMARY KEY (file_id, at)
    )
  `
})
