import { Effect, Layer, Option } from "effect"
import * as Settings from "./Settings.js"

/**
 * Spans exported over OTLP/HTTP (JSON) to OTEL_EXPORTER_OTLP_ENDPOINT, with
 * @effect/opentelemetry's own exporter: it batches Effect's spans and posts them with
 * the platform's HttpClient (fetch), so no OpenTelemetry SDK is loaded. Without the
 * endpoint nothing is loaded and no span is recorded (see `Settings.tracing`).
 */
export const layer = Layer.unwrapEffect(
  Effect.gen(function*() {
    const tracing = yield* Settings.tracing
    if (Option.isNone(tracing)) return Layer.empty
    const { serviceName, tracesUrl } = tracing.value
    const [FetchHttpClient, OtlpTracer, OtlpSerialization] = yield* Effect.promise(() =>
      Promise.all([
        import("@effect/platform/FetchHttpClient"),
        import("@effect/opentelemetry/OtlpTracer"),
        import("@effect/opentelemetry/OtlpSerialization")
      ])
    )
    return OtlpTracer.layer({ url: tracesUrl, resource: { serviceName } }).pipe(
      Layer.provide([FetchHttpClient.layer, OtlpSerialization.layerJson])
    )
  })
)
