import { HttpServer } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Cause, ConfigError, Console, Effect, Layer, Logger, Option } from "effect"
import { createServer } from "node:http"
import { join } from "node:path"
import * as ApiServer from "../adapters/http/ApiServer.js"
import * as LocalDiskObjectStore from "../adapters/LocalDiskObjectStore.js"
import * as PgFileRepository from "../adapters/PgFileRepository.js"
import * as PgMigrations from "../adapters/PgMigrations.js"
import * as PostgresDatabase from "../adapters/PostgresDatabase.js"
import * as S3ObjectStore from "../adapters/S3ObjectStore.js"
import type { ObjectStoreUnavailable } from "../domain/StorageErrors.js"
import type { ObjectStore } from "../ports/ObjectStore.js"
import { FileService } from "./FileService.js"
import { ServerSettings, useExternalDatabase, useS3 } from "./ServerSettings.js"
import * as UploadSettings from "./UploadSettings.js"

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
).pipe(Layer.tap(() => Effect.logInfo("database connected")))

const FileRepositoryLive = PgFileRepository.layer.pipe(
  Layer.provide(PgMigrations.layer.pipe(Layer.provideMerge(DatabaseLive)))
)

const HttpServerLive = Layer.unwrapEffect(
  Effect.map(ServerSettings, ({ host, port }) => NodeHttpServer.layer(createServer, { host, port }))
)

const MainLive = ApiServer.layer.pipe(
  HttpServer.withLogAddress,
  Layer.provide(FileService.Default),
  Layer.provide([ObjectStoreLive, FileRepositoryLive, UploadSettings.layerConfig]),
  Layer.provide(HttpServerLive)
)

/** A configuration mistake is one line naming the variable, not a stack trace. */
const reportStartupFailure = (cause: Cause.Cause<unknown>) =>
  Option.match(Cause.failureOption(cause), {
    onSome: (error) =>
      ConfigError.isConfigError(error)
        ? Console.error(`tandem: configuration error: ${String(error)}`)
        : Effect.logError("tandem stopped", cause),
    onNone: () => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("tandem stopped", cause)
  })

const program = Effect.gen(function*() {
  const { logLevel } = yield* ServerSettings
  return yield* Layer.launch(MainLive).pipe(Logger.withMinimumLogLevel(logLevel))
}).pipe(Effect.tapErrorCause(reportStartupFailure))

NodeRuntime.runMain(program, { disableErrorReporting: true })
