import { Effect, Layer, Redacted } from "effect"
import type { Scope } from "effect"
import { buildApp } from "fauxqs"
import * as S3ObjectStore from "../../src/adapters/objects/S3ObjectStore.js"
import type { S3Settings } from "../../src/adapters/objects/S3ObjectStore.js"
import type { ObjectStore } from "../../src/ports/ObjectStore.js"

export const bucket = "tandem-test"

/**
 * A fresh fauxqs (an in-memory SQS/SNS/S3 emulator; only its S3 is used) in this process,
 * on 127.0.0.1 with an ephemeral port and one bucket; stopped when the scope closes.
 * Unlike s3rver it implements AbortMultipartUpload. Yields settings for an
 * S3ObjectStore pointing at it.
 */
export const settings: Effect.Effect<S3Settings, never, Scope.Scope> = Effect.gen(function*() {
  // buildApp rather than startFauxqs, which listens on every interface.
  const app = yield* Effect.acquireRelease(
    Effect.promise(async () => {
      const app = buildApp({ logger: false })
      await app.listen({ host: "127.0.0.1", port: 0 })
      return app
    }),
    (app) => Effect.promise(() => app.close())
  )
  const created = yield* Effect.promise(() => app.inject({ method: "PUT", url: `/${bucket}` }))
  if (created.statusCode !== 200) yield* Effect.dieMessage(`fauxqs did not create the bucket: ${created.body}`)
  const address = app.server.address()
  if (address === null || typeof address !== "object") return yield* Effect.dieMessage("fauxqs is not listening")
  return {
    bucket,
    region: "us-east-1",
    endpoint: `http://127.0.0.1:${address.port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: "fauxqs", secretAccessKey: Redacted.make("fauxqs") },
    maxAttempts: 1,
    requestTimeoutMillis: 10_000
  }
})

/** An S3ObjectStore on a fresh fauxqs; `overrides` tune the client (e.g. listPageSize). */
export const layerWith = (overrides: Partial<S3Settings> = {}): Layer.Layer<ObjectStore> =>
  Layer.unwrapScoped(Effect.map(settings, (base) => S3ObjectStore.layer({ ...base, ...overrides })))

export const layer: Layer.Layer<ObjectStore> = layerWith()
