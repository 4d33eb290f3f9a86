import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware, HttpServerResponse } from "@effect/platform"
import { Effect, Layer } from "effect"
import { TandemApi } from "./Api.js"
import { FilesHandlers } from "./FilesHandlers.js"
import { HealthHandlers } from "./HealthHandlers.js"

/**
 * A refused oversize body is not read to its end: closing the connection is what
 * stops the client from sending the rest.
 */
const closeAfterPayloadTooLarge = HttpMiddleware.make((app) =>
  Effect.map(app, (response) =>
    response.status === 413 ? HttpServerResponse.setHeader(response, "connection", "close") : response)
)

const ApiLive = HttpApiBuilder.api(TandemApi).pipe(
  Layer.provide([FilesHandlers, HealthHandlers])
)

/**
 * The HTTP API with its OpenAPI document (/openapi.json) and Swagger UI (/docs,
 * bundled, so it works offline). Needs an HttpServer and the FileService.
 */
export const layer = HttpApiBuilder.serve((app) => HttpMiddleware.logger(closeAfterPayloadTooLarge(app))).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ApiLive)
)
