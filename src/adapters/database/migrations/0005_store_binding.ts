import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The id that binds this database to its object store: the store holds the same id
 * in a marker object, and the reconciler treats no object as an orphan unless the
 * two agree (README, "The reconciler"). One row at most.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE store_binding (
      singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
      binding_id text NOT NULL,
      bound_at timestamptz NOT NULL DEFAULT now()
    )
  `
})
