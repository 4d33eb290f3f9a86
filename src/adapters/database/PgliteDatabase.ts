import { PgClient } from "@effect/sql-pg"
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { Duration, Effect, Layer } from "effect"
import type { DatabaseUnavailable } from "../../domain/StorageErrors.js"
import { CONNECT_TIMEOUT, type Database, unavailable } from "./PostgresDatabase.js"

const logReleaseFailure = (what: string) => (cause: unknown) =>
  Effect.logWarning(`Could not ${what}`).pipe(Effect.annotateLogs("cause", String(cause)))

/**
 * PGlite (PostgreSQL compiled to WebAssembly, in this process) in memory, served on
 * a loopback port so the same pg driver and PgClient talk to it as to a real
 * server; gone when the layer is released. For tests: it starts in a few hundred
 * milliseconds and needs no binaries, but it costs ~600 MB of memory and serves
 * one connection, so the embedded default is a real PostgreSQL (EmbeddedDatabase).
 */
export const layerMemory: Layer.Layer<Database, DatabaseUnavailable> = Layer.unwrapScoped(
  Effect.gen(function*() {
    const db = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => PGlite.create("memory://"), catch: unavailable("open PGlite") }),
      (db) => Effect.tryPromise(() => db.close()).pipe(Effect.catchAll(logReleaseFailure("close PGlite")))
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
        catch: unavailable("serve PGlite")
      }),
      (server) => Effect.tryPromise(() => server.stop()).pipe(Effect.catchAll(logReleaseFailure("stop PGlite")))
    )
    const address = server.getServerConn()
    const colon = address.lastIndexOf(":")
    return PgClient.layer({
      host: address.slice(0, colon),
      port: Number(address.slice(colon + 1)),
      username: "postgres",
      database: "postgres",
      maxConnections: 1,
      minConnections: 1,
      // pg-pool would close the idle connection after 10 s and free the only slot.
      idleTimeout: Duration.days(24),
      connectTimeout: CONNECT_TIMEOUT
    }).pipe(Layer.mapError(unavailable("connect to PGlite")))
  })
)
