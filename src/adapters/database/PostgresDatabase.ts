import type { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Duration, Layer, type Redacted } from "effect"
import { DatabaseUnavailable } from "../../domain/StorageErrors.js"

/** What every layer here provides: the generic client and the PostgreSQL-specific one. */
export type Database = PgClient.PgClient | SqlClient.SqlClient

export const unavailable = (operation: string) => (cause: unknown) => new DatabaseUnavailable({ operation, cause })

export const CONNECT_TIMEOUT = Duration.seconds(5)

/** A PostgreSQL server reached through a connection URL. */
export const layerUrl = (url: Redacted.Redacted, poolSize: number): Layer.Layer<Database, DatabaseUnavailable> =>
  PgClient.layer({ url, maxConnections: poolSize, connectTimeout: CONNECT_TIMEOUT }).pipe(
    Layer.mapError(unavailable("connect"))
  )
