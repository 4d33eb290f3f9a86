import { HttpMiddleware, HttpServer } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { createServer } from "node:http"
import * as ApiServer from "../adapters/http/ApiServer.js"
import { FileService } from "../app/FileService.js"
import { Reconciler } from "../app/Reconciler.js"
import { UploadSettings } from "../app/UploadSettings.js"
import type { FileRepository } from "../ports/FileRepository.js"
import type { ObjectStore } from "../ports/ObjectStore.js"
import * as ReconcilerLoop from "./ReconcilerLoop.js"
import * as Settings from "./Settings.js"
import { reportStartupFailure } from "./StartupFailure.js"

const UploadSettingsLive = Layer.effect(UploadSettings, Settings.upload)

const HttpServerLive = Layer.unwrapEffect(
  Effect.map(Settings.server, ({ host, port }) => NodeHttpServer.layer(createServer, { host, port }))
)

/**
 * The server over the given stores: the HTTP API and the reconciler's background
 * fiber. The stores are connected and migrated before the port opens, so no
 * request arrives at a server that cannot answer it yet.
 */
const serverLayer = <E>(stores: Layer.Layer<ObjectStore | FileRepository, E>, requestLog: boolean) =>
  Layer.merge(ApiServer.layer({ requestLog }).pipe(HttpServer.withLogAddress), ReconcilerLoop.layer).pipe(
    Layer.provide(HttpServerLive),
    Layer.provide(
      Layer.mergeAll(FileService.Default, Reconciler.Default).pipe(Layer.provide([stores, UploadSettingsLive]))
    )
  )

/** Runs the server until SIGINT or SIGTERM; a start-up failure is reported and exits non-zero. */
export const runMain = <E>(stores: Layer.Layer<ObjectStore | FileRepository, E>) =>
  NodeRuntime.runMain(
    Effect.gen(function*() {
      const { logLevel, tracing } = yield* Settings.server
      const requestLog = !LogLevel.greaterThan(logLevel, LogLevel.Info)
      return yield* Layer.launch(serverLayer(stores, requestLog)).pipe(
        Logger.withMinimumLogLevel(logLevel),
        Effect.withTracerEnabled(tracing),
        HttpMiddleware.withTracerDisabledWhenEffect(() => !tracing)
      )
    }).pipe(Effect.tapErrorCause(reportStartupFailure)),
    { disableErrorReporting: true }
  )
