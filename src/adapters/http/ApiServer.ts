import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware } from "@effect/platform"
import { identity, Layer } from "effect"
import { TandemApi } from "./Api.js"
import { FilesHandlers } from "./FilesHandlers.js"
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
 */
export const layer = (options: { readonly requestLog: boolean }) =>
  HttpApiBuilder.serve(options.requestLog ? HttpMiddleware.logger : identity).pipe(
    Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(RequestFailures.layer),
    Layer.provide(ApiLive)
  )
