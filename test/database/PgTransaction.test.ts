/**
 * The COMMIT workaround (src/adapters/database/PgTransaction.ts) and the
 * @effect/sql behaviour it relies on, against real PostgreSQL (embedded PGlite, and
 * TEST_DATABASE_URL's server when set). A COMMIT is made to fail for real: a
 * deferred unique constraint is checked only at COMMIT.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, layer } from "@effect/vitest"
import { Cause, Effect, Exit, type Layer, Option } from "effect"
import * as PgTransaction from "../../src/adapters/database/PgTransaction.js"
import type { Database } from "../../src/adapters/database/PostgresDatabase.js"
import * as TestDatabase from "../support/TestDatabase.js"

/** A table whose unique key is checked at COMMIT, so two equal rows make COMMIT fail. */
const setUp = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.zipRight(
    sql`DROP TABLE IF EXISTS commit_canary`,
    sql`CREATE TABLE commit_canary (k int, CONSTRAINT commit_canary_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)`
  ))

const rows = Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ k: number }>`SELECT k FROM commit_canary`)

const duplicates = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => Effect.zipRight(sql`INSERT INTO commit_canary VALUES (1)`, sql`INSERT INTO commit_canary VALUES (1)`)
)

const describeOn = (name: string, database: Layer.Layer<Database, unknown>) =>
  layer(database, { timeout: 60_000 })(`PgTransaction on ${name}`, (it) => {
    it.effect("@effect/sql turns a failed COMMIT into a defect (the behaviour PgTransaction relies on; check it on every upgrade)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* setUp
        const exit = yield* Effect.exit(sql.withTransaction(duplicates))
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          // Not a failure the caller could handle: a defect carrying the SqlError.
          expect(Option.isNone(Cause.failureOption(exit.cause))).toBe(true)
          expect(Array.from(Cause.defects(exit.cause)).some((defect) => defect instanceof SqlError)).toBe(true)
        }
        expect(yield* rows).toEqual([])
      }))

    it.effect("a failed COMMIT is CommitOutcomeUnknown, a failure the workflow can act on", () =>
      Effect.gen(function*() {
        const { withTransaction } = PgTransaction.make(yield* SqlClient.SqlClient)
        yield* setUp
        const error = yield* Effect.flip(withTransaction(duplicates))
        expect(error._tag).toBe("CommitOutcomeUnknown")
      }))

    it.effect("a statement that failed inside is not committed over, even when the body caught its error", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { statement, withTransaction } = PgTransaction.make(sql)
        yield* setUp
        const body = Effect.gen(function*() {
          yield* sql`INSERT INTO commit_canary VALUES (2)`.pipe(statement("first"))
          // PostgreSQL aborts the transaction here; COMMIT would silently roll back.
          yield* sql`SELECT no_such_column FROM commit_canary`.pipe(statement("broken"), Effect.ignore)
          return "done"
        })
        const error = yield* Effect.flip(withTransaction(body))
        expect(error).toMatchObject({ _tag: "DatabaseUnavailable", operation: "withTransaction" })
        expect(yield* rows).toEqual([])
      }))

    it.effect("a body that succeeds commits; one that fails rolls back and fails as it did", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { withTransaction } = PgTransaction.make(sql)
        yield* setUp
        expect(yield* withTransaction(Effect.as(sql`INSERT INTO commit_canary VALUES (3)`.pipe(Effect.orDie), "ok")))
          .toBe("ok")
        expect(
          yield* Effect.flip(
            withTransaction(
              Effect.zipRight(sql`INSERT INTO commit_canary VALUES (4)`.pipe(Effect.orDie), Effect.fail("no"))
            )
          )
        )
          .toBe("no")
        expect(yield* rows).toEqual([{ k: 3 }])
      }))
  })

describe("the COMMIT workaround", () => {
  describeOn("embedded PGlite", TestDatabase.embeddedLayer)
  if (Option.isSome(TestDatabase.serverUrl)) {
    describeOn("PostgreSQL", TestDatabase.freshDatabase(TestDatabase.serverUrl.value))
  }
})
