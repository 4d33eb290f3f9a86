import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware } from "@effect/platform"
import { identity, Layer } from "effect"
import { TandemApi } from "./Api.js"
import { FilesHandlers, UploadLimits } from "./FilesHandlers.js"
import { HealthHandlers } from "./HealthHandlers.js"
import * as RequestFailures from "./RequestFailures.js"

const ApiLive = HttpApiBuilder.api(TandemApi).pipe(
  Layer.provide([FilesHandlers, HealthHandlers])
)

/**
 * The HTTP API with its OpenAPI document (/openapi.json) and Swagger UI (/docs,
 * bundled, so it works offline). Needs an HttpServer and the FileService.
 * `requestLog`: one Info line per request; left out, not just filtered, when Info
 * is below the log level, since the middleware costs CPU on every request.
 * `maxConcurrentUploads`: uploads in flight; one more is refused with 503 ServerBusy.
 */
export const layer = (options: { readonly requestLog: boolean } & UploadLimits["Type"]) =>
  HttpApiBuilder.serve(options.requestLog ? HttpMiddleware.logger : identity).pipe(
    Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(RequestFailures.layer),
    Layer.provide(ApiLive),
    Layer.provide(Layer.succeed(UploadLimits, { maxConcurrentUploads: options.maxConcurrentUploads }))
  )
