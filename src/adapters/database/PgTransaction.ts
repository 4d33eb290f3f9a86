import type { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Cause, Effect, FiberRef, Metric, Option } from "effect"
import * as Metrics from "../../app/Metrics.js"
import { CommitOutcomeUnknown, DatabaseUnavailable } from "../../domain/StorageErrors.js"
import { spanWhenTracing } from "../../domain/Tracing.js"

/** What one transaction has seen so far. */
interface TransactionState {
  /** A statement failed inside it: PostgreSQL has aborted it, whatever the body did with the error. */
  failed: boolean
  /** The body is done; only COMMIT is left. */
  committing: boolean
  /** Defects the body itself died with, told apart from those of COMMIT and ROLLBACK. */
  bodyDefects: ReadonlyArray<unknown>
}

const isSqlError = (u: unknown): u is SqlError => u instanceof SqlError

/**
 * Transactions whose end is told truthfully, and the one place that relies on an
 * internal of @effect/sql (0.52): `makeWithTransaction` in
 * `@effect/sql/src/internal/client.ts` ends a transaction with
 * `Effect.orDie(options.commit(conn))`, so a failed COMMIT (or ROLLBACK) is a
 * defect, not a failure. Here that defect becomes CommitOutcomeUnknown when COMMIT
 * was sent (the transaction may or may not have committed) and DatabaseUnavailable
 * when a ROLLBACK failed. `test/database/PgTransaction.test.ts` fails if a new
 * @effect/sql stops turning a failed COMMIT into a defect: run it on every upgrade.
 *
 * A transaction in which a statement failed is not committed either: PostgreSQL
 * has aborted it and would answer COMMIT with a silent ROLLBACK, so a body that
 * caught the statement's error would believe it committed. Every statement is run
 * through `statement`, which notes its failure in the transaction it belongs to.
 */
export const make = (sql: SqlClient.SqlClient) => {
  const current = FiberRef.unsafeMake<Option.Option<TransactionState>>(Option.none())

  /**
   * A statement's failure, as the port's error; noted in the enclosing transaction, if any.
   * A statement once sent is never cancelled: an interrupted caller waits for its end.
   * @effect/sql-pg would cancel it with pg_cancel_backend(pid) over another connection,
   * and a statement that ends first has its connection back in the pool by then: the
   * cancel stops the next statement run there, another request's. The caller waits
   * (rather than leaving it running) so that what it does next, such as compensation on
   * another connection, comes after the statement: a DELETE of an intent must not run
   * before the INSERT it undoes commits.
   */
  /** `self` counted as holding a pooled connection, unless the transaction it runs in is counted already. */
  const holdingConnection = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(FiberRef.get(current), (transaction) =>
      Option.isSome(transaction)
        ? self
        : Effect.acquireUseRelease(
          Metric.increment(Metrics.databaseConnectionsInUse),
          () => self,
          () => Metric.modify(Metrics.databaseConnectionsInUse, -1)
        ))

  const statement = (operation: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
    holdingConnection(Effect.uninterruptible(self)).pipe(
      Effect.tapError(() =>
        Effect.map(
          FiberRef.get(current),
          Option.map((state) => {
            state.failed = true
          })
        )
      ),
      Effect.mapError((cause) => new DatabaseUnavailable({ operation, cause })),
      spanWhenTracing(`PgFileRepository.${operation}`)
    )

  const endedTruthfully =
    (state: TransactionState) =>
    (defect: unknown): Option.Option<Effect.Effect<never, CommitOutcomeUnknown | DatabaseUnavailable>> =>
      isSqlError(defect) && !state.bodyDefects.includes(defect)
        ? Option.some(
          state.committing
            ? Effect.fail(new CommitOutcomeUnknown({ cause: defect }))
            : Effect.fail(new DatabaseUnavailable({ operation: "rollback", cause: defect }))
        )
        : Option.none()

  const withTransaction = <A, E, R>(
    self: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | DatabaseUnavailable | CommitOutcomeUnknown, R> =>
    Effect.suspend(() => {
      const state: TransactionState = { failed: false, committing: false, bodyDefects: [] }
      const body = Effect.locally(self, current, Option.some(state)).pipe(
        Effect.tapDefect((cause) =>
          Effect.sync(() => {
            state.bodyDefects = Array.from(Cause.defects(cause))
          })
        ),
        Effect.tap(() =>
          state.failed
            ? new DatabaseUnavailable({
              operation: "withTransaction",
              cause: new Error("a statement failed inside the transaction, so it cannot commit")
            })
            : Effect.sync(() => {
              state.committing = true
            })
        )
      )
      return holdingConnection(sql.withTransaction(body)).pipe(
        // BEGIN or SAVEPOINT failed.
        Effect.catchIf(isSqlError, (cause) => new DatabaseUnavailable({ operation: "withTransaction", cause })),
        Effect.catchSomeDefect(endedTruthfully(state))
      )
    }).pipe(spanWhenTracing("PgFileRepository.withTransaction"))

  return { statement, withTransaction } as const
}
