import { createRequire } from "node:module"

/**
 * The `pg` driver (installed with @effect/sql-pg), typed by the little the
 * benchmark uses: its types package is not installed.
 */
export interface Queryable {
  query(
    text: string,
    values?: ReadonlyArray<unknown>
  ): Promise<{ readonly rows: ReadonlyArray<Record<string, unknown>>; readonly rowCount: number | null }>
}

export interface PgPoolClient extends Queryable {
  release(error?: Error | boolean): void
}

export interface PgPool extends Queryable {
  connect(): Promise<PgPoolClient>
  end(): Promise<void>
}

interface PgModule {
  readonly Pool: new(
    config: { readonly connectionString: string; readonly max?: number; readonly idleTimeoutMillis?: number }
  ) => PgPool
}

const require = createRequire(import.meta.url)
const pg: PgModule = require("pg")

/** `idleTimeoutMillis`: 0 keeps idle connections open (pg's default closes them after 10 s). */
export const pool = (
  connectionString: string,
  max: number,
  options: { readonly idleTimeoutMillis?: number } = {}
): PgPool => new pg.Pool({ connectionString, max, ...options })
