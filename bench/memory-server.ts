/**
 * tandem as src/app/main.ts composes it, with the stores in memory: the same
 * HTTP API, FileService, reconciler loop, settings and runtime; only Stores.layer
 * is replaced by MemoryObjectStore and MemoryFileRepository.
 */
import { HttpServer } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger } from "effect"
import { createServer } from "node:http"
import * as ApiServer from "../src/adapters/http/ApiServer.js"
import * as MemoryFileRepository from "../src/adapters/MemoryFileRepository.js"
import * as MemoryObjectStore from "../src/adapters/MemoryObjectStore.js"
import { FileService } from "../src/app/FileService.js"
import { Reconciler } from "../src/app/Reconciler.js"
import * as ReconcilerLoop from "../src/app/ReconcilerLoop.js"
import { ServerSettings } from "../src/app/ServerSettings.js"
import { reportStartupFailure } from "../src/app/StartupFailure.js"
import * as UploadSettings from "../src/app/UploadSettings.js"

const StoresInMemory = Layer.merge(MemoryObjectStore.layer, MemoryFileRepository.layer)

const HttpServerLive = Layer.unwrapEffect(
  Effect.map(ServerSettings, ({ host, port }) => NodeHttpServer.layer(createServer, { host, port }))
)

const ServicesLive = Layer.mergeAll(FileService.Default, Reconciler.Default).pipe(
  Layer.provide([StoresInMemory, UploadSettings.layerConfig])
)

const MainLive = Layer.merge(ApiServer.layer.pipe(HttpServer.withLogAddress), ReconcilerLoop.layer).pipe(
  Layer.provide(HttpServerLive),
  Layer.provide(ServicesLive)
)

const program = Effect.gen(function*() {
  const { logLevel } = yield* ServerSettings
  return yield* Layer.launch(MainLive).pipe(Logger.withMinimumLogLevel(logLevel))
}).pipe(Effect.tapErrorCause(reportStartupFailure))

NodeRuntime.runMain(program, { disableErrorReporting: true })
