import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The intent protocol: a record is `pending` before its object is written,
 * `committed` once it is, `deleting` once a delete is decided. Rows that already
 * exist are committed files. `repairs` is the reconciler's log, one entry per key.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE files
      ADD COLUMN status text NOT NULL DEFAULT 'committed' CHECK (status IN ('pending', 'committed', 'deleting')),
      ADD COLUMN status_since timestamptz NOT NULL DEFAULT now()
  `
  // Listings read committed files only.
  yield* sql`DROP INDEX files_created_at_id_idx`
  yield* sql`CREATE INDEX files_committed_created_at_id_idx ON files (created_at DESC, id DESC) WHERE status = 'committed'`
  // The reconciler's scan: intents, oldest first.
  yield* sql`CREATE INDEX files_intents_status_since_idx ON files (status_since) WHERE status <> 'committed'`
  yield* sql`
    CREATE TABLE repairs (
      id bigserial PRIMARY KEY,
      object_key text NOT NULL UNIQUE,
      file_id uuid NULL,
      problem text NOT NULL CHECK (problem IN ('abandoned-upload', 'unfinished-delete', 'orphan-object')),
      action text NOT NULL,
      repaired_at timestamptz NOT NULL
    )
  `
  yield* sql`CREATE INDEX repairs_repaired_at_id_idx ON repairs (repaired_at DESC, id DESC)`
})
