import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * An upload's Idempotency-Key, per owner, naming the file it made. A key lives as
 * long as its file (ON DELETE CASCADE): a failed or reclaimed upload frees it, and
 * so does deleting the file; the reconciler forgets keys past their TTL.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE idempotency_keys (
      owner text NOT NULL,
      key text NOT NULL,
      file_id uuid NOT NULL REFERENCES files (id) ON DELETE CASCADE,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (owner, key)
    )
  `
  yield* sql`CREATE INDEX idempotency_keys_file_id_idx ON idempotency_keys (file_id)`
  yield* sql`CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at)`
})
