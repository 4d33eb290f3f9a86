import { NodeContext } from "@effect/platform-node"
import { PgMigrator } from "@effect/sql-pg"
import { Layer, Schedule } from "effect"
import { DatabaseUnavailable } from "../../domain/StorageErrors.js"
import CreateFiles from "./migrations/0001_create_files.js"
import Intents from "./migrations/0002_intents.js"
import MultipartUploads from "./migrations/0003_multipart_uploads.js"
import Reclaiming from "./migrations/0004_reclaiming.js"
import StoreBinding from "./migrations/0005_store_binding.js"
import Owners from "./migrations/0006_owners.js"
import IdempotencyKeys from "./migrations/0007_idempotency_keys.js"
import ResumableUploads from "./migrations/0008_resumable_uploads.js"

export const loader = PgMigrator.fromRecord({
  "0001_create_files": CreateFiles,
  "0002_intents": Intents,
  "0003_multipart_uploads": MultipartUploads,
  "0004_reclaiming": Reclaiming,
  "0005_store_binding": StoreBinding,
  "0006_owners": Owners,
  "0007_idempotency_keys": IdempotencyKeys,
  "0008_resumable_uploads": ResumableUploads
})

/**
 * Brings the schema up to date when built (at start-up); requires the SqlClient and
 * PgClient of PostgresDatabase. The migrator runs the migrations in one transaction
 * that first takes LOCK TABLE effect_sql_migrations, so replicas starting together
 * apply each migration once. Only creating that table on an empty database races
 * (the loser fails with "already exists"), so a failed run is retried: by then the
 * table exists and the lock serializes the replicas.
 */
export const layer = PgMigrator.layer({ loader }).pipe(
  Layer.retry(Schedule.intersect(Schedule.recurs(3), Schedule.spaced("200 millis"))),
  Layer.mapError((cause) => new DatabaseUnavailable({ operation: "migrate", cause })),
  Layer.provide(NodeContext.layer)
)
