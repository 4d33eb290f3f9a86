import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware } from "@effect/platform"
import { Layer } from "effect"
import { TandemApi } from "./Api.js"
import { FilesHandlers } from "./FilesHandlers.js"
import { HealthHandlers } from "./HealthHandlers.js"

const ApiLive = HttpApiBuilder.api(TandemApi).pipe(
  Layer.provide([FilesHandlers, HealthHandlers])
)

/**
 * The HTTP API with its OpenAPI document (/openapi.json) and Swagger UI (/docs,
 * bundled, so it works offline). Needs an HttpServer and the FileService.
 */
export const layer = HttpApiBuilder.serve(HttpMiddleware.logger).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ApiLive)
)
