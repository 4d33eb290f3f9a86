import { Effect, Layer, Option } from "effect"
import { join } from "node:path"
import * as MemoryFileRepository from "../adapters/database/MemoryFileRepository.js"
import * as PgFileRepository from "../adapters/database/PgFileRepository.js"
import * as PgMigrations from "../adapters/database/PgMigrations.js"
import * as PostgresDatabase from "../adapters/database/PostgresDatabase.js"
import * as LocalDiskObjectStore from "../adapters/objects/LocalDiskObjectStore.js"
import * as MemoryObjectStore from "../adapters/objects/MemoryObjectStore.js"
import * as S3ObjectStore from "../adapters/objects/S3ObjectStore.js"
import * as Settings from "./Settings.js"

/** The one place where adapters are chosen: S3 if S3_BUCKET is set, else a local directory. */
const ObjectStoreLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    const { dataDirectory } = yield* Settings.server
    const partSize = yield* Settings.partSize
    return Option.match(yield* Settings.s3, {
      onNone: () => LocalDiskObjectStore.layer(join(dataDirectory, "objects"), { partSize }),
      onSome: (s3) => S3ObjectStore.layer({ ...s3, partSize })
    })
  })
)

/** PostgreSQL at DATABASE_URL if set, else embedded PGlite; migrated before anything uses it. */
const DatabaseLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    const { dataDirectory } = yield* Settings.server
    return Option.match(yield* Settings.database, {
      onNone: () => PostgresDatabase.layerEmbedded(dataDirectory),
      onSome: ({ poolSize, url }) => PostgresDatabase.layerUrl(url, poolSize)
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
