import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** A large upload's multipart upload id, kept with its intent so the reconciler can abort it after a crash. */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE files ADD COLUMN multipart_upload_id text`
})
