import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, MetricBoundaries } from "effect"
import * as PrometheusText from "../../src/adapters/http/PrometheusText.js"

describe("the Prometheus text encoder", () => {
  it.effect("counters and gauges by label, histograms as cumulative buckets ending at +Inf, with _sum and _count", () =>
    Effect.gen(function*() {
      const counter = Metric.counter("test_encoder_things_total", { description: "Things\nseen", incremental: true })
      const gauge = Metric.gauge("test_encoder_level")
      const histogram = Metric.histogram(
        "test_encoder_seconds",
        MetricBoundaries.fromIterable([0.1, 1]),
        "How long"
      )
      yield* Metric.incrementBy(Metric.tagged(counter, "outcome", "stored"), 3)
      yield* Metric.increment(Metric.tagged(counter, "outcome", "say \"no\"\\"))
      yield* Metric.set(gauge, 7)
      yield* Metric.update(histogram, 0.05)
      yield* Metric.update(histogram, 0.5)
      yield* Metric.update(histogram, 5)
      const text = yield* PrometheusText.scrape
      const family = (name: string) => {
        const start = text.indexOf(`# HELP ${name} `)
        const end = text.indexOf("# HELP", start + 1)
        return text.slice(start, end === -1 ? undefined : end).trim().split("\n")
      }
      expect(family("test_encoder_things_total")).toEqual([
        "# HELP test_encoder_things_total Things\\nseen",
        "# TYPE test_encoder_things_total counter",
        "test_encoder_things_total{outcome=\"say \\\"no\\\"\\\\\"} 1",
        "test_encoder_things_total{outcome=\"stored\"} 3"
      ])
      expect(family("test_encoder_level")).toEqual([
        "# HELP test_encoder_level test_encoder_level",
        "# TYPE test_encoder_level gauge",
        "test_encoder_level 7"
      ])
      expect(family("test_encoder_seconds")).toEqual([
        "# HELP test_encoder_seconds How long",
        "# TYPE test_encoder_seconds histogram",
        "test_encoder_seconds_bucket{le=\"0.1\"} 1",
        "test_encoder_seconds_bucket{le=\"1\"} 2",
        "test_encoder_seconds_bucket{le=\"+Inf\"} 3",
        "test_encoder_seconds_sum 5.55",
        "test_encoder_seconds_count 3"
      ])
      expect(text.endsWith("\n")).toBe(true)
    }))
})
