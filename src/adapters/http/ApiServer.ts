import { HttpApiBuilder, HttpApiSwagger } from "@effect/platform"
import { type Context, Effect, Layer, type Redacted } from "effect"
import { ResumableUploads } from "../../app/ResumableUploads.js"
import { TandemApi } from "./Api.js"
import * as Authentication from "./Authentication.js"
import { FilesHandlers, UploadLimits } from "./FilesHandlers.js"
import { HealthHandlers } from "./HealthHandlers.js"
import { InFlightRequests } from "./InFlightRequests.js"
import * as LinkSigner from "./LinkSigner.js"
import * as PolicyHandlers from "./PolicyHandlers.js"
import * as PrometheusText from "./PrometheusText.js"
import * as RequestFailures from "./RequestFailures.js"
import * as RequestLog from "./RequestLog.js"
import * as Tus from "./TusHeaders.js"
import * as UploadPage from "./UploadPage.js"
import { TusDiscoveryHandlers, UploadsHandlers } from "./UploadsHandlers.js"

const ApiLive = HttpApiBuilder.api(TandemApi).pipe(
  Layer.provide([FilesHandlers, HealthHandlers, UploadsHandlers, TusDiscoveryHandlers]),
  // The tus routes' workflow, over the same ports as FileService's.
  Layer.provide(ResumableUploads.Default)
)

export interface ApiOptions extends Context.Tag.Service<UploadLimits> {
  readonly auth: Authentication.AuthSettings
  /** LINK_SIGNING_SECRET; none: one made up at start. */
  readonly linkSecret: Redacted.Redacted | undefined
  /** Origins a browser may call from (CORS_ORIGINS); none: no CORS at all. */
  readonly corsOrigins: ReadonlyArray<string>
  /** The upload page, served at `/` (UploadPage.ts); left out: no page. */
  readonly page?: UploadPage.PageAssets
}

/**
 * The HTTP API with its OpenAPI document (/openapi.json) and Swagger UI (/docs,
 * bundled, so it works offline), the upload policy (/policy) and, when given, the
 * upload page (/). Needs an HttpServer, the FileService and the
 * FileRepository (signed links name a file's owner). Uploads past
 * `maxConcurrentUploads` are refused with 503 ServerBusy, an owner's past its own
 * rate with 429 RateLimited.
 */
export const layer = (options: ApiOptions) =>
  Layer.unwrapEffect(Effect.map(InFlightRequests, (inFlight) =>
    // Outermost: the request id and the one log line; inside it, the list of requests in flight.
    HttpApiBuilder.serve((app) => RequestLog.middleware(inFlight.track(app))))).pipe(
      Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
      Layer.provide(PrometheusText.layer),
      Layer.provide(options.page === undefined ? Layer.empty : UploadPage.layer(options.page)),
      Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
      Layer.provide(
        options.corsOrigins.length === 0
          ? Layer.empty
          : HttpApiBuilder.middlewareCors({
            allowedOrigins: options.corsOrigins,
            exposedHeaders: ["etag", ...Tus.EXPOSED_HEADERS]
          })
      ),
      Layer.provide(RequestFailures.layer),
      Layer.provide(Layer.provide(ApiLive, PolicyHandlers.layer(options.auth))),
      Layer.provide(Authentication.layer(options.auth)),
      Layer.provide(LinkSigner.layer(options.linkSecret)),
      Layer.provide(
        Layer.succeed(UploadLimits, { maxConcurrentUploads: options.maxConcurrentUploads, perOwner: options.perOwner })
      ),
      // Out as well: a shutdown drains the requests in flight (Server.ts).
      Layer.provideMerge(InFlightRequests.Default)
    )
