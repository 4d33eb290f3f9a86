import { Effect, Layer, Option } from "effect"
import { join } from "node:path"
import * as MemoryFileRepository from "../adapters/database/MemoryFileRepository.js"
import * as PgFileRepository from "../adapters/database/PgFileRepository.js"
import * as PgMigrations from "../adapters/database/PgMigrations.js"
import * as MemoryObjectStore from "../adapters/objects/MemoryObjectStore.js"
import * as Settings from "./Settings.js"

// Adapters are imported when chosen, so a process loads only its own: the AWS SDK
// only with S3_BUCKET, the embedded database only without DATABASE_URL. Each costs
// memory for as long as the process lives.
const loadLocalDisk = Effect.promise(() => import("../adapters/objects/LocalDiskObjectStore.js"))
const loadS3 = Effect.promise(() => import("../adapters/objects/S3ObjectStore.js"))
const loadPostgres = Effect.promise(() => import("../adapters/database/PostgresDatabase.js"))
const loadEmbedded = Effect.promise(() => import("../adapters/database/EmbeddedDatabase.js"))

/** The one place where adapters are chosen: S3 if S3_BUCKET is set, else a local directory. */
const ObjectStoreLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    const { dataDirectory } = yield* Settings.server
    const partSize = yield* Settings.partSize
    return yield* Option.match(yield* Settings.s3, {
      onNone: () =>
        Effect.map(loadLocalDisk, (LocalDisk) => LocalDisk.layer(join(dataDirectory, "objects"), { partSize })),
      onSome: (s3) => Effect.map(loadS3, (S3) => S3.layer({ ...s3, partSize }))
    })
  })
)

/** PostgreSQL at DATABASE_URL if set, else the embedded database; migrated before anything uses it. */
const DatabaseLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    const { dataDirectory } = yield* Settings.server
    return yield* Option.match(yield* Settings.database, {
      onNone: () =>
        Effect.zipWith(
          loadEmbedded,
          Settings.databasePoolSize,
          (Embedded, poolSize) => Embedded.layerEmbedded(dataDirectory, poolSize)
        ),
      onSome: ({ poolSize, url }) => Effect.map(loadPostgres, (Postgres) => Postgres.layerUrl(url, poolSize))
    })
  })
)

const FileRepositoryLive = PgFileRepository.layer.pipe(
  Layer.provide(PgMigrations.layer.pipe(Layer.provideMerge(DatabaseLive)))
)

/** Both ports, as the environment configures them; shared by the server and `npm run reconcile`. */
export const layer = Layer.merge(ObjectStoreLive, FileRepositoryLive)

/** Both ports in memory: for tests and the benchmark's in-memory server. */
export const layerMemory = Layer.merge(
  Layer.unwrapEffect(Effect.map(Settings.partSize, (partSize) => MemoryObjectStore.layerWith({ partSize }))),
  MemoryFileRepository.layer
)
