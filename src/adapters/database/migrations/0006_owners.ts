import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Every file has an owner (a token's `sub`). Files from before owners belong to
 * `local`, the owner of every file when authentication is off, so an install that
 * turns authentication on can still reach them with a token for `local`.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE files ADD COLUMN owner text NOT NULL DEFAULT 'local'`
  yield* sql`ALTER TABLE files ALTER COLUMN owner DROP DEFAULT`
  // Listings are per owner, newest first; quotas count an owner's committed files.
  yield* sql`DROP INDEX files_committed_created_at_id_idx`
  yield* sql`
    CREATE INDEX files_owner_committed_created_at_id_idx ON files (owner, created_at DESC, id DESC)
    WHERE status = 'committed'
  `
})
