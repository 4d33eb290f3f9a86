import { HttpServer } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger } from "effect"
import { createServer } from "node:http"
import * as ApiServer from "../adapters/http/ApiServer.js"
import { FileService } from "./FileService.js"
import { Reconciler } from "./Reconciler.js"
import * as ReconcilerLoop from "./ReconcilerLoop.js"
import { ServerSettings } from "./ServerSettings.js"
import { reportStartupFailure } from "./StartupFailure.js"
import * as Stores from "./Stores.js"
import * as UploadSettings from "./UploadSettings.js"

const HttpServerLive = Layer.unwrapEffect(
  Effect.map(ServerSettings, ({ host, port }) => NodeHttpServer.layer(createServer, { host, port }))
)

const ServicesLive = Layer.mergeAll(FileService.Default, Reconciler.Default).pipe(
  Layer.provide([Stores.layer, UploadSettings.layerConfig])
)

/**
 * The server: the HTTP API and the reconciler's background fiber, over the
 * configured stores. The stores are connected and migrated before the port opens,
 * so no request arrives at a server that cannot answer it yet.
 */
const MainLive = Layer.merge(ApiServer.layer.pipe(HttpServer.withLogAddress), ReconcilerLoop.layer).pipe(
  Layer.provide(HttpServerLive),
  Layer.provide(ServicesLive)
)

const program = Effect.gen(function*() {
  const { logLevel } = yield* ServerSettings
  return yield* Layer.launch(MainLive).pipe(Logger.withMinimumLogLevel(logLevel))
}).pipe(Effect.tapErrorCause(reportStartupFailure))

NodeRuntime.runMain(program, { disableErrorReporting: true })
