import { type ConfigError, Effect, Layer, Option } from "effect"
import { join } from "node:path"
import * as LocalDiskObjectStore from "../adapters/LocalDiskObjectStore.js"
import * as PgFileRepository from "../adapters/PgFileRepository.js"
import * as PgMigrations from "../adapters/PgMigrations.js"
import * as PostgresDatabase from "../adapters/PostgresDatabase.js"
import * as S3ObjectStore from "../adapters/S3ObjectStore.js"
import type { ObjectStoreUnavailable } from "../domain/StorageErrors.js"
import type { ObjectStore } from "../ports/ObjectStore.js"
import { ServerSettings, useExternalDatabase, useS3 } from "./ServerSettings.js"

/** The one place where adapters are chosen: S3 if S3_BUCKET is set, else a local directory. */
const chooseObjectStore = (
  s3: boolean,
  dataDirectory: string
): Layer.Layer<ObjectStore, ConfigError.ConfigError | ObjectStoreUnavailable> =>
  s3 ? S3ObjectStore.layerConfig : LocalDiskObjectStore.layer(join(dataDirectory, "objects"))

const ObjectStoreLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    const { dataDirectory } = yield* ServerSettings
    return chooseObjectStore(Option.isSome(yield* useS3), dataDirectory)
  })
)

/** PostgreSQL at DATABASE_URL if set, else embedded PGlite; migrated before anything uses it. */
const DatabaseLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    const { dataDirectory } = yield* ServerSettings
    return Option.isSome(yield* useExternalDatabase)
      ? PostgresDatabase.layerConfig
      : PostgresDatabase.layerEmbedded(dataDirectory)
  })
)

const FileRepositoryLive = PgFileRepository.layer.pipe(
  Layer.provide(PgMigrations.layer.pipe(Layer.provideMerge(DatabaseLive)))
)

/** Both ports, as the environment configures them; shared by the server and `npm run reconcile`. */
export const layer = Layer.merge(ObjectStoreLive, FileRepositoryLive)
