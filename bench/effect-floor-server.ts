/**
 * THE EFFECT FLOOR: the floor's work (FloorWork.ts), unchanged, served by
 * @effect/platform's Node HTTP server and router, the framework tandem is built on,
 * with its spans and request log off as tandem runs them in the benchmark. What it
 * costs beyond the floor is the framework's per-request cost, which no service on
 * it can avoid.
 */
import { HttpMiddleware, HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeHttpServerRequest, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { createServer } from "node:http"
import * as FloorWork from "./FloorWork.js"

const store = await FloorWork.openStore()

const upload = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const received = yield* Effect.tryPromise(() => FloorWork.receive(NodeHttpServerRequest.toIncomingMessage(request)))
  const body = yield* Effect.tryPromise(() => FloorWork.store(store, received))
  return HttpServerResponse.unsafeJson(body, { status: 201, headers: { location: `/files/${body.id}` } })
}).pipe(Effect.catchAll((error) => HttpServerResponse.json({ error: String(error.error) }, { status: 400 })))

const app = HttpRouter.empty.pipe(
  HttpRouter.post("/files", upload),
  HttpRouter.get("/healthz", HttpServerResponse.json({ status: "ok" }))
)

const port = Number(FloorWork.env("PORT", "3000"))
const host = FloorWork.env("HOST", "127.0.0.1")

NodeRuntime.runMain(
  Layer.launch(HttpServer.serve(app).pipe(Layer.provide(NodeHttpServer.layer(createServer, { port, host })))).pipe(
    HttpMiddleware.withTracerDisabledWhenEffect(() => true),
    Effect.withTracerEnabled(false),
    Effect.ensuring(Effect.promise(() => store.close()))
  )
)
