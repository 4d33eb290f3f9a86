import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { spanWhenTracing } from "../../src/domain/Tracing.js"

const spanName = Effect.currentSpan.pipe(
  Effect.map((span) => Option.some(span.name)),
  Effect.orElseSucceed(() => Option.none<string>())
)

describe("spanWhenTracing", () => {
  it.effect("runs the effect in a span of that name when the tracer is enabled", () =>
    Effect.gen(function*() {
      const name = yield* spanName.pipe(spanWhenTracing("Here.there"), Effect.withTracerEnabled(true))
      expect(name).toEqual(Option.some("Here.there"))
    }))

  it.effect("runs the effect as it is, in no span, when the tracer is disabled", () =>
    Effect.gen(function*() {
      const name = yield* spanName.pipe(spanWhenTracing("Here.there"), Effect.withTracerEnabled(false))
      expect(name).toEqual(Option.none())
      const value = yield* Effect.succeed(42).pipe(spanWhenTracing("Here.there"), Effect.withTracerEnabled(false))
      expect(value).toBe(42)
    }))
})
