import { Effect, FiberRef } from "effect"

/**
 * `self` in a span named `name` when spans are recorded (OTEL_EXPORTER_OTLP_ENDPOINT set), and as it is
 * otherwise. `Effect.withSpan` and `Effect.fn` cost CPU on every call even with the
 * tracer disabled (a call-site stack capture, a no-op span, its bookkeeping): about
 * 10 µs, paid several times per upload. Here the choice is made when the effect
 * runs, from the fiber's tracer setting, so an untraced call pays one FiberRef read.
 */
export const spanWhenTracing = (name: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) =>
    fiber.getFiberRef(FiberRef.currentTracerEnabled) ? Effect.withSpan(self, name) : self
  )
