import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Layer } from "effect"
import { TandemApi } from "./Api.js"
import { FilesHandlers } from "./FilesHandlers.js"
import { HealthHandlers } from "./HealthHandlers.js"

/**
 * A refused upload's body is not read to its end: closing the connection is what
 * stops the client from sending the rest (instead of the server draining it).
 */
const closeAfterRefusedUpload = HttpMiddleware.make((app) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const response = yield* app
    return request.method === "POST" && response.status >= 400
      ? HttpServerResponse.setHeader(response, "connection", "close")
      : response
  })
)

const ApiLive = HttpApiBuilder.api(TandemApi).pipe(
  Layer.provide([FilesHandlers, HealthHandlers])
)

/**
 * The HTTP API with its OpenAPI document (/openapi.json) and Swagger UI (/docs,
 * bundled, so it works offline). Needs an HttpServer and the FileService.
 */
export const layer = HttpApiBuilder.serve((app) => HttpMiddleware.logger(closeAfterRefusedUpload(app))).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ApiLive)
)
