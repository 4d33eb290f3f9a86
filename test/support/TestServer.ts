import type { HttpClient, HttpServerError } from "@effect/platform"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import * as ApiServer from "../../src/adapters/http/ApiServer.js"
import { FileService } from "../../src/app/FileService.js"
import * as UploadSettings from "../../src/app/UploadSettings.js"
import { KeyPrefix } from "../../src/domain/ObjectKey.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import type { FileRepository } from "../../src/ports/FileRepository.js"
import { noQuota } from "../../src/ports/FileRepository.js"
import type { ObjectStore } from "../../src/ports/ObjectStore.js"

/** Tests log nothing unless TEST_LOG_LEVEL (e.g. "Debug") asks for it. */
export const quietLogs = Logger.minimumLogLevel(
  LogLevel.allLevels.find((level) => level.label === (process.env.TEST_LOG_LEVEL ?? "").toUpperCase()) ?? LogLevel.None
)

export const testPrefix = KeyPrefix.make("files/")

/** A small part size, so tests stream files through multipart uploads without megabytes of data. */
export const testPartSize = 64 * 1024

export const defaultSettings = UploadSettings.layer({
  policy: UploadPolicy.default,
  keyPrefix: testPrefix,
  quota: noQuota
})

/** The API as npm start runs it with no configuration: no authentication (the owner `local`), no rate limits. */
export const testApiOptions: ApiServer.ApiOptions = {
  maxConcurrentUploads: 64,
  perOwner: { uploadsPerMinute: Option.none(), concurrentUploads: Option.none() },
  auth: { _tag: "None" },
  linkSecret: Redacted.make("a test link-signing secret of 32 bytes or more"),
  corsOrigins: []
}

/**
 * The real HTTP server on an ephemeral loopback port, over whatever store and
 * repository layers a test gives it. The ports stay in the output so tests can
 * look behind the API.
 */
export const layer = <ROut, E1>(stores: Layer.Layer<ROut | ObjectStore | FileRepository, E1>) =>
  layerWith(stores, defaultSettings)

export const layerWith = <ROut, E1, E2>(
  stores: Layer.Layer<ROut | ObjectStore | FileRepository, E1>,
  settings: Layer.Layer<UploadSettings.UploadSettings, E2>,
  logs: Layer.Layer<never> = quietLogs
): Layer.Layer<
  | ROut
  | ObjectStore
  | FileRepository
  | UploadSettings.UploadSettings
  | FileService
  | HttpServer.HttpServer
  | HttpClient.HttpClient,
  E1 | E2 | HttpServerError.ServeError
> => {
  const services = FileService.Default.pipe(Layer.provideMerge(Layer.merge(stores, settings)))
  return ApiServer.layer(testApiOptions).pipe(
    Layer.provideMerge(services),
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provide(logs)
  )
}

/** http://127.0.0.1:<port> of the running test server. */
export const baseUrl = HttpServer.HttpServer.pipe(
  Effect.map((server) =>
    server.address._tag === "TcpAddress" ? `http://127.0.0.1:${server.address.port}` : "http://unix-socket"
  )
)
