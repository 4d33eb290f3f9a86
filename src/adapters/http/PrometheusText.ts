import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Metric, MetricState, Option } from "effect"
import type { MetricPair } from "effect"

/**
 * Effect's metric registry in the Prometheus text exposition format (version 0.0.4).
 * A small encoder of `Metric.snapshot` rather than the OpenTelemetry SDK and its
 * Prometheus exporter: every metric already lives in Effect's registry, and the SDK
 * would add a second registry, a reader and a few MiB of resident code for the same
 * lines of text.
 */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

const escapeLabel = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")

const escapeHelp = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const formatNumber = (value: number | bigint): string =>
  typeof value === "bigint"
    ? value.toString()
    : Number.isNaN(value)
    ? "NaN"
    : value === Infinity
    ? "+Inf"
    : value === -Infinity
    ? "-Inf"
    : String(value)

const labels = (pairs: ReadonlyArray<readonly [string, string]>): string =>
  pairs.length === 0 ? "" : `{${pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`

interface Family {
  readonly type: "counter" | "gauge" | "histogram" | "summary"
  readonly help: string
  /** Each series' lines (a histogram's are several, in order), keyed by its labels for a stable order. */
  readonly series: Array<readonly [string, ReadonlyArray<string>]>
}

const samples = (pair: MetricPair.MetricPair.Untyped): { type: Family["type"]; lines: Array<string> } | undefined => {
  const name = pair.metricKey.name
  const tags = pair.metricKey.tags.map((tag) => [tag.key, tag.value] as const)
  const state = pair.metricState
  if (MetricState.isCounterState(state)) {
    return { type: "counter", lines: [`${name}${labels(tags)} ${formatNumber(state.count)}`] }
  }
  if (MetricState.isGaugeState(state)) {
    return { type: "gauge", lines: [`${name}${labels(tags)} ${formatNumber(state.value)}`] }
  }
  if (MetricState.isHistogramState(state)) {
    // Effect's buckets are cumulative and end with +Inf, as Prometheus wants them.
    const buckets = state.buckets.map(([le, count]) =>
      `${name}_bucket${labels([...tags, ["le", formatNumber(le)]])} ${formatNumber(count)}`
    )
    return {
      type: "histogram",
      lines: [
        ...buckets,
        `${name}_sum${labels(tags)} ${formatNumber(state.sum)}`,
        `${name}_count${labels(tags)} ${formatNumber(state.count)}`
      ]
    }
  }
  if (MetricState.isSummaryState(state)) {
    return {
      type: "summary",
      lines: [
        ...state.quantiles.flatMap(([q, value]) =>
          Option.match(value, {
            onNone: () => [],
            onSome: (v) => [`${name}${labels([...tags, ["quantile", String(q)]])} ${formatNumber(v)}`]
          })
        ),
        `${name}_sum${labels(tags)} ${formatNumber(state.sum)}`,
        `${name}_count${labels(tags)} ${formatNumber(state.count)}`
      ]
    }
  }
  if (MetricState.isFrequencyState(state)) {
    return {
      type: "counter",
      lines: [...state.occurrences].map(([key, count]) =>
        `${name}${labels([...tags, ["key", key]])} ${formatNumber(count)}`
      )
    }
  }
  return undefined
}

/** Every metric in the registry as one exposition document, families sorted by name. */
export const encode = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  for (const pair of pairs) {
    const encoded = samples(pair)
    if (encoded === undefined) continue
    const name = pair.metricKey.name
    const family = families.get(name) ??
      { type: encoded.type, help: Option.getOrElse(pair.metricKey.description, () => name), series: [] }
    family.series.push([labels(pair.metricKey.tags.map((tag) => [tag.key, tag.value] as const)), encoded.lines])
    families.set(name, family)
  }
  return [...families.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, family]) =>
      [
        `# HELP ${name} ${escapeHelp(family.help)}`,
        `# TYPE ${name} ${family.type}`,
        ...family.series.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).flatMap(([, lines]) => lines)
      ].join("\n")
    )
    .join("\n") + "\n"
}

/** The registry now, encoded. */
export const scrape: Effect.Effect<string> = Effect.map(Metric.snapshot, encode)

/** GET /metrics: the registry for Prometheus to scrape; outside the HttpApi, as it is not part of the files API. */
export const layer = HttpApiBuilder.Router.use((router) =>
  router.get(
    "/metrics",
    Effect.map(
      scrape,
      (text) => HttpServerResponse.text(text, { contentType, headers: { "cache-control": "no-store" } })
    )
  )
)
