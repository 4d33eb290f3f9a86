import type { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import type { Scope } from "effect"
import { Duration, Effect, Layer, type Redacted } from "effect"
import { mkdir } from "node:fs/promises"
import { join } from "node:path"
import { DatabaseUnavailable } from "../../domain/StorageErrors.js"
import * as DirectoryLock from "./DirectoryLock.js"

/** What every layer here provides: the generic client and the PostgreSQL-specific one. */
export type Database = PgClient.PgClient | SqlClient.SqlClient

const unavailable = (operation: string) => (cause: unknown) => new DatabaseUnavailable({ operation, cause })

const CONNECT_TIMEOUT = Duration.seconds(5)

/** A PostgreSQL server reached through a connection URL. */
export const layerUrl = (url: Redacted.Redacted, poolSize: number): Layer.Layer<Database, DatabaseUnavailable> =>
  PgClient.layer({ url, maxConnections: poolSize, connectTimeout: CONNECT_TIMEOUT }).pipe(
    Layer.mapError(unavailable("connect"))
  )

const logReleaseFailure = (what: string) => (cause: unknown) =>
  Effect.logWarning(`Could not ${what}`).pipe(Effect.annotateLogs("cause", String(cause)))

/**
 * PGlite (PostgreSQL compiled to WebAssembly, in this process) served on a loopback
 * port, so the same pg driver and PgClient talk to it as to a real server.
 */
const pglite = (dataDir: string): Effect.Effect<{ host: string; port: number }, DatabaseUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const db = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => PGlite.create(dataDir), catch: unavailable("open the embedded database") }),
      (db) =>
        Effect.tryPromise(() => db.close()).pipe(Effect.catchAll(logReleaseFailure("close the embedded database")))
    )
    // PGlite is one session: the socket server takes one connection, and the pool
    // keeps exactly that one, so no other local client can take the only slot.
    const server = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 1 })
          await server.start()
          return server
        },
        catch: unavailable("serve the embedded database")
      }),
      (server) =>
        Effect.tryPromise(() => server.stop()).pipe(
          Effect.catchAll(logReleaseFailure("stop the embedded database server"))
        )
    )
    const address = server.getServerConn()
    const colon = address.lastIndexOf(":")
    return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) }
  })

const layerPglite = (
  dataDir: Effect.Effect<string, DatabaseUnavailable, Scope.Scope>
): Layer.Layer<Database, DatabaseUnavailable> =>
  Layer.unwrapScoped(
    Effect.map(Effect.flatMap(dataDir, pglite), ({ host, port }) =>
      PgClient.layer({
        host,
        port,
        username: "postgres",
        database: "postgres",
        maxConnections: 1,
        minConnections: 1,
        // pg-pool would close the idle connection after 10 s and free the only slot.
        idleTimeout: Duration.days(24),
        connectTimeout: CONNECT_TIMEOUT
      }).pipe(Layer.mapError(unavailable("connect to the embedded database"))))
  )

/**
 * The embedded default: PGlite persisted under `<dataDirectory>/pglite`. PGlite
 * is one process's database: a second process opening the same files would
 * corrupt them, so the directory is locked for as long as the layer lives.
 */
export const layerEmbedded = (dataDirectory: string): Layer.Layer<Database, DatabaseUnavailable> =>
  layerPglite(
    Effect.tryPromise({
      try: async () => {
        const dir = join(dataDirectory, "pglite")
        await mkdir(dir, { recursive: true })
        return dir
      },
      catch: unavailable("create the embedded database directory")
    }).pipe(
      Effect.tap((dir) => Effect.mapError(DirectoryLock.acquire(dir), unavailable("lock the embedded database")))
    )
  )

/** PGlite in memory: gone when the layer is released. For tests. */
export const layerEmbeddedMemory: Layer.Layer<Database, DatabaseUnavailable> = layerPglite(Effect.succeed("memory://"))
