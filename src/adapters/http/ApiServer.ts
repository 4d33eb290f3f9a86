import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware } from "@effect/platform"
import { type Context, identity, Layer, type Redacted } from "effect"
import { TandemApi } from "./Api.js"
import * as Authentication from "./Authentication.js"
import { FilesHandlers, UploadLimits } from "./FilesHandlers.js"
import { HealthHandlers } from "./HealthHandlers.js"
import * as LinkSigner from "./LinkSigner.js"
import * as RequestFailures from "./RequestFailures.js"

const ApiLive = HttpApiBuilder.api(TandemApi).pipe(
  Layer.provide([FilesHandlers, HealthHandlers])
)

export interface ApiOptions extends Context.Tag.Service<UploadLimits> {
  /** One Info line per request; left out, not just filtered, when Info is below the log level (it costs CPU). */
  readonly requestLog: boolean
  readonly auth: Authentication.AuthSettings
  /** LINK_SIGNING_SECRET; none: one made up at start. */
  readonly linkSecret: Redacted.Redacted | undefined
  /** Origins a browser may call from (CORS_ORIGINS); none: no CORS at all. */
  readonly corsOrigins: ReadonlyArray<string>
}

/**
 * The HTTP API with its OpenAPI document (/openapi.json) and Swagger UI (/docs,
 * bundled, so it works offline). Needs an HttpServer, the FileService and the
 * FileRepository (signed links name a file's owner). Uploads past
 * `maxConcurrentUploads` are refused with 503 ServerBusy, an owner's past its own
 * rate with 429 RateLimited.
 */
export const layer = (options: ApiOptions) =>
  HttpApiBuilder.serve(options.requestLog ? HttpMiddleware.logger : identity).pipe(
    Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(
      options.corsOrigins.length === 0
        ? Layer.empty
        : HttpApiBuilder.middlewareCors({ allowedOrigins: options.corsOrigins, exposedHeaders: ["location", "etag"] })
    ),
    Layer.provide(RequestFailures.layer),
    Layer.provide(ApiLive),
    Layer.provide(Authentication.layer(options.auth)),
    Layer.provide(LinkSigner.layer(options.linkSecret)),
    Layer.provide(
      Layer.succeed(UploadLimits, { maxConcurrentUploads: options.maxConcurrentUploads, perOwner: options.perOwner })
    )
  )
