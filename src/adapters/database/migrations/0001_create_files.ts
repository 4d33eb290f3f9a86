import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE files (
      id uuid PRIMARY KEY,
      name text NOT NULL,
      size bigint NOT NULL CHECK (size >= 0),
      content_type text NOT NULL,
      sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
      object_key text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL
    )
  `
  // The listing's order and its keyset: (created_at, id) < (cursor) newest first.
  yield* sql`CREATE INDEX files_created_at_id_idx ON files (created_at DESC, id DESC)`
})
