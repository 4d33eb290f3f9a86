import { HttpMiddleware, HttpServer } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Duration, Effect, Layer, Logger, Metric, Option } from "effect"
import { createServer, type Server as NodeServer, type ServerResponse } from "node:http"
import * as ApiServer from "../adapters/http/ApiServer.js"
import { InFlightRequests } from "../adapters/http/InFlightRequests.js"
import * as UploadPage from "../adapters/http/UploadPage.js"
import { FileService } from "../app/FileService.js"
import * as Metrics from "../app/Metrics.js"
import { Reconciler } from "../app/Reconciler.js"
import { UploadSettings } from "../app/UploadSettings.js"
import type { FileRepository } from "../ports/FileRepository.js"
import type { ObjectStore } from "../ports/ObjectStore.js"
import * as ReconcilerLoop from "./ReconcilerLoop.js"
import * as Settings from "./Settings.js"
import { reportStartupFailure } from "./StartupFailure.js"
import * as TraceExport from "./TraceExport.js"

const UploadSettingsLive = Layer.effect(UploadSettings, Settings.upload)

/** How long the Node server waits for a client, and how many connections it holds (README, "Timeouts and limits"). */
export interface HttpServerLimits {
  /** The request's headers must all arrive within this; then 408 and the connection closed. */
  readonly headersTimeout: Duration.DurationInput
  /** No byte in either direction for this long and the socket is dropped (an upload in flight is compensated). */
  readonly idleTimeout: Duration.DurationInput
  /** Open connections; one more is closed as soon as it is accepted. */
  readonly maxConnections: number
}

/**
 * The Node HTTP server with tandem's timeouts and connection cap. Node's defaults
 * would cut every request at 300 s (`requestTimeout`), so an honest upload of
 * UPLOAD_MAX_BYTES on a slow link could never finish: there is no whole-request cap
 * here; a client that stops sending is dropped by the idle timeout instead.
 */
export const makeNodeServer = (limits: HttpServerLimits): NodeServer => {
  const headersTimeout = Math.max(1, Math.round(Duration.toMillis(limits.headersTimeout)))
  const server = createServer({
    requestTimeout: 0,
    // Explicit, as it must be: with requestTimeout 0, Node's default headersTimeout is 0 too (none at all).
    headersTimeout,
    // Node checks header (and request) timeouts only at this interval (default 30 s,
    // which would let a 1 s headers timeout act at 31 s): a quarter of the timeout, at
    // most 1 s, so a slow client is dropped at most 25% (or 1 s) late. One check walks
    // the open connections' list, so it is cheap even at MAX_CONNECTIONS.
    connectionsCheckingInterval: Math.max(1, Math.min(1000, Math.floor(headersTimeout / 4)))
  })
  server.setTimeout(Math.max(1, Math.round(Duration.toMillis(limits.idleTimeout))))
  server.maxConnections = limits.maxConnections
  // A response that would send fewer or more bytes than its Content-Length fails
  // instead of ending clean: a short download can never pass for a whole one.
  server.prependListener("request", (_request, response) => {
    response.strictContentLength = true
    endsOnClose(response)
  })
  return server
}

/**
 * @effect/platform-node 0.108 ends a response with `response.end(callback)` and waits,
 * uninterruptibly, for the callback; Node never calls it once the socket is gone (a
 * client that sent a malformed request behind a HEAD and was dropped). That request
 * would never end, and a SIGTERM would wait for it forever. So the callback is also
 * called when the response closes (as Effect-TS/effect#6506 does upstream).
 */
const endsOnClose = (response: ServerResponse): void => {
  const end = response.end.bind(response)
  const patched = (...args: Array<unknown>) => {
    const last = args[args.length - 1]
    if (typeof last === "function") {
      let called = false
      const once = () => {
        if (called) return
        called = true
        last()
      }
      args[args.length - 1] = once
      if (response.closed) process.nextTick(once)
      else response.once("close", once)
    }
    return Reflect.apply(end, response, args) as ServerResponse
  }
  response.end = patched as ServerResponse["end"]
}

/** The HttpServer layer over `makeNodeServer`, listening at `listen`: the server `npm start` runs, and the tests. */
export const httpServerLayer = (listen: { readonly host: string; readonly port: number }, limits: HttpServerLimits) =>
  NodeHttpServer.layer(() => makeNodeServer(limits), listen)

/**
 * A graceful stop, on SIGTERM or SIGINT (runMain interrupts the server, and this is
 * the first finalizer to run, before the API and the HTTP server are released):
 * accept no more connections, let the requests in flight finish within `timeout`,
 * then interrupt the rest (an interrupted upload compensates, leaving nothing
 * behind) and close what connections remain.
 */
const gracefulShutdown = (node: NodeServer, timeout: Duration.Duration) =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const inFlight = yield* InFlightRequests
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        node.close()
        const waiting = yield* inFlight.size
        if (waiting > 0) {
          yield* Effect.logInfo(
            `shutting down: waiting up to ${Duration.format(timeout)} for ${waiting} requests in flight`
          )
        }
        const { finished, interrupted } = yield* inFlight.drain(timeout)
        node.closeAllConnections()
        yield* Effect.logInfo("shut down").pipe(Effect.annotateLogs({ finished, interrupted }))
      })
    )
  }))

/**
 * The server over the given stores: the HTTP API and the reconciler's background
 * fiber. The stores are connected and migrated before the port opens, so no
 * request arrives at a server that cannot answer it yet.
 */
const serverLayer = <E>(
  stores: Layer.Layer<ObjectStore | FileRepository, E>,
  options: {
    readonly listen: { readonly host: string; readonly port: number }
    readonly limits: HttpServerLimits
    readonly api: ApiServer.ApiOptions
    readonly shutdownTimeout: Duration.Duration
  }
) => {
  const node = makeNodeServer(options.limits)
  return gracefulShutdown(node, options.shutdownTimeout).pipe(
    Layer.provide(Layer.merge(ApiServer.layer(options.api).pipe(HttpServer.withLogAddress), ReconcilerLoop.layer)),
    Layer.provide(NodeHttpServer.layer(() => node, options.listen)),
    Layer.provide(
      Layer.mergeAll(FileService.Default, Reconciler.Default).pipe(
        Layer.provideMerge(stores),
        Layer.provideMerge(UploadSettingsLive)
      )
    )
  )
}

/**
 * Runs the server until SIGINT or SIGTERM; a start-up failure is reported and exits
 * non-zero. `page`: the directory of the built upload page (UploadPage.ts), which
 * must then be there; left out: no page.
 */
export const runMain = <E>(
  stores: Layer.Layer<ObjectStore | FileRepository, E>,
  options: { readonly page?: URL } = {}
) =>
  NodeRuntime.runMain(
    Effect.gen(function*() {
      const { host, logLevel, port } = yield* Settings.server
      const tracing = Option.isSome(yield* Settings.tracing)
      const logFormat = yield* Settings.logFormat
      const shutdownTimeout = yield* Settings.shutdownTimeout
      const limits = yield* Settings.limits
      const api: ApiServer.ApiOptions = {
        maxConcurrentUploads: limits.maxConcurrentUploads,
        perOwner: yield* Settings.ownerRateLimits,
        auth: yield* Settings.auth,
        linkSecret: Option.getOrUndefined(yield* Settings.linkSecret),
        corsOrigins: yield* Settings.corsOrigins,
        ...(options.page === undefined ? {} : { page: yield* UploadPage.load(options.page) })
      }
      yield* Metric.set(Metrics.uploadsInFlightLimit, limits.maxConcurrentUploads)
      yield* Metric.set(Metrics.databasePoolSize, yield* Settings.databasePoolSize)
      const server = serverLayer(stores, { listen: { host, port }, limits, api, shutdownTimeout }).pipe(
        Layer.provide(TraceExport.layer)
      )
      return yield* Layer.launch(server).pipe(
        // runMain installs its pretty logger; JSON lines replace it.
        Effect.provide(
          logFormat === "json"
            ? Logger.replace(Logger.prettyLoggerDefault, Logger.withConsoleLog(Logger.jsonLogger))
            : Layer.empty
        ),
        Logger.withMinimumLogLevel(logLevel),
        Effect.withTracerEnabled(tracing),
        HttpMiddleware.withTracerDisabledWhenEffect(() => !tracing)
      )
    }).pipe(Effect.tapErrorCause(reportStartupFailure)),
    { disableErrorReporting: true }
  )
