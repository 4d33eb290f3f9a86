import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * `reclaiming`: an abandoned upload the reconciler has claimed. It can no longer
 * commit, and its bytes are removed with no lock held (see FileRepository's
 * claimStaleIntents). The intents index takes it in, since it is not committed.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE files DROP CONSTRAINT files_status_check`
  yield* sql`
    ALTER TABLE files ADD CONSTRAINT files_status_check
      CHECK (status IN ('pending', 'committed', 'deleting', 'reclaiming'))
  `
})
