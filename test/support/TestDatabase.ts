/**
 * Databases for tests. `layer` creates a fresh, migrated database on the server at
 * TEST_DATABASE_URL and drops it on release (each build its own); without that
 * variable it falls back to `embeddedLayer`, PGlite in memory. `freshDatabaseUrl`
 * gives an empty database's URL, for a server process that migrates it itself.
 */
import { PgClient } from "@effect/sql-pg"
import type { SqlError } from "@effect/sql/SqlError"
import type { Scope } from "effect"
import { Effect, Layer, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as EmbeddedDatabase from "../../src/adapters/database/EmbeddedDatabase.js"
import * as PgMigrations from "../../src/adapters/database/PgMigrations.js"
import * as PostgresDatabase from "../../src/adapters/database/PostgresDatabase.js"
import { DatabaseUnavailable } from "../../src/domain/StorageErrors.js"

/** TEST_DATABASE_URL: a server where tests may create and drop databases. */
export const serverUrl: Option.Option<Redacted.Redacted> = Option.fromNullable(process.env["TEST_DATABASE_URL"]).pipe(
  Option.filter((url) => url.length > 0),
  Option.map(Redacted.make)
)

/** Migrations applied before the layer's SqlClient is handed out. */
export const migrated = (
  database: Layer.Layer<PostgresDatabase.Database, DatabaseUnavailable>
): Layer.Layer<PostgresDatabase.Database, DatabaseUnavailable> => PgMigrations.layer.pipe(Layer.provideMerge(database))

/** PGlite in memory, migrated. */
export const embeddedLayer = migrated(EmbeddedDatabase.layerEmbeddedMemory)

/** The same server URL with another database name. */
export const urlFor = (server: Redacted.Redacted, database: string): Redacted.Redacted => {
  const url = new URL(Redacted.value(server))
  url.pathname = `/${database}`
  return Redacted.make(url.toString())
}

const onServer = (server: Redacted.Redacted, run: (sql: PgClient.PgClient) => Effect.Effect<unknown, SqlError>) =>
  Effect.flatMap(PgClient.PgClient, run).pipe(Effect.provide(PgClient.layer({ url: server, maxConnections: 1 })))

/**
 * Creates a uniquely named, empty database on `server` and gives its URL; the
 * database is dropped when the scope closes (FORCE ends connections left over).
 */
export const freshDatabaseUrl = (
  server: Redacted.Redacted
): Effect.Effect<Redacted.Redacted, DatabaseUnavailable, Scope.Scope> =>
  Effect.suspend(() => {
    const name = `tandem_test_${randomBytes(8).toString("hex")}`
    return Effect.acquireRelease(
      onServer(server, (sql) => sql`CREATE DATABASE ${sql(name)}`).pipe(
        Effect.mapError((cause) => new DatabaseUnavailable({ operation: "create test database", cause })),
        Effect.as(urlFor(server, name))
      ),
      () => Effect.orDie(onServer(server, (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`))
    )
  })

/** A fresh, migrated database on `server`, dropped on release after its own pool is closed. */
export const freshDatabase = (server: Redacted.Redacted): Layer.Layer<PostgresDatabase.Database, DatabaseUnavailable> =>
  Layer.unwrapScoped(Effect.map(freshDatabaseUrl(server), (url) => migrated(PostgresDatabase.layerUrl(url, 4))))

/** A fresh database on TEST_DATABASE_URL's server, or embedded PGlite when it is not set. */
export const layer: Layer.Layer<PostgresDatabase.Database, DatabaseUnavailable> = Option.match(serverUrl, {
  onNone: () => embeddedLayer,
  onSome: freshDatabase
})
