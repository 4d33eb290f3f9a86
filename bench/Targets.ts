/** The issue's targets, computed from one run; each one this run did not measure says so. */
import type { Footprint } from "./Embedded.js"
import type { Ratios, Summary } from "./Matrix.js"
import * as Matrix from "./Matrix.js"

export interface Target {
  readonly target: string
  /** What was measured, in words and numbers; "not measured in this run" when it was not. */
  readonly measured: string
  readonly value: number | null
  /** null: not measured. */
  readonly met: boolean | null
}

const notMeasured = (target: string): Target => ({
  target,
  measured: "not measured in this run",
  value: null,
  met: null
})

const fixed = (value: number, digits = 2) => value.toFixed(digits)

export const IDLE_RSS_FULL_MB = 110
export const IDLE_RSS_EMBEDDED_MB = 250
export const READY_REUSED_MS = 1_500

export const of = (
  summaries: ReadonlyArray<Summary>,
  ratios: ReadonlyArray<Ratios>,
  footprints: ReadonlyArray<Footprint>
): Array<Target> => {
  const ratio = (stack: Summary["stack"], concurrency: number) =>
    ratios.find((r) => r.stack === stack && r.concurrency === concurrency)
  const summary = (stack: Summary["stack"], side: Summary["side"], concurrency: number) =>
    summaries.find((s) => s.stack === stack && s.side === side && s.concurrency === concurrency)
  const targets: Array<Target> = []

  for (const concurrency of [16, 64]) {
    const name = `full stack c${concurrency}: tandem uploads/s ≥ 0.8 × protocol floor's`
    const headline = ratio("full", concurrency)?.headline
    const t = summary("full", "tandem", concurrency)
    const p = summary("full", "protocol-floor", concurrency)
    targets.push(
      headline === undefined || t === undefined || p === undefined ? notMeasured(name) : {
        target: name,
        measured: `${fixed(headline.uploadsPerSecond)} (${t.uploadsPerSecond.toFixed(0)} / ${
          p.uploadsPerSecond.toFixed(0)
        })`,
        value: headline.uploadsPerSecond,
        met: headline.uploadsPerSecond >= 0.8
      }
    )
  }
  for (const concurrency of [16, 64]) {
    const name = `full stack c${concurrency}: tandem p99 ≤ 1.3 × protocol floor's`
    const headline = ratio("full", concurrency)?.headline
    const t = summary("full", "tandem", concurrency)
    const p = summary("full", "protocol-floor", concurrency)
    targets.push(
      headline === undefined || t === undefined || p === undefined ? notMeasured(name) : {
        target: name,
        measured: `${fixed(headline.p99)} (${t.p99.toFixed(0)} / ${p.p99.toFixed(0)} ms)`,
        value: headline.p99,
        met: headline.p99 <= 1.3
      }
    )
  }
  {
    const name = "full stack c64: tandem server CPU per upload ≤ 1.4 × protocol floor's"
    const headline = ratio("full", 64)?.headline
    const t = summary("full", "tandem", 64)
    const p = summary("full", "protocol-floor", 64)
    targets.push(
      headline === undefined || t === undefined || p === undefined ? notMeasured(name) : {
        target: name,
        measured: `${fixed(headline.serverCpuPerUpload)} (${fixed(t.serverCpuMsPerUpload)} / ${
          fixed(p.serverCpuMsPerUpload)
        } ms)`,
        value: headline.serverCpuPerUpload,
        met: headline.serverCpuPerUpload <= 1.4
      }
    )
  }
  {
    const name = "in memory c64: tandem uploads/s ≥ 0.7 × Effect floor's"
    const comparison = Matrix.find(ratio("memory", 64), "tandem", "effect-floor")
    const t = summary("memory", "tandem", 64)
    const e = summary("memory", "effect-floor", 64)
    targets.push(
      comparison === undefined || t === undefined || e === undefined ? notMeasured(name) : {
        target: name,
        measured: `${fixed(comparison.uploadsPerSecond)} (${t.uploadsPerSecond.toFixed(0)} / ${
          e.uploadsPerSecond.toFixed(0)
        })`,
        value: comparison.uploadsPerSecond,
        met: comparison.uploadsPerSecond >= 0.7
      }
    )
  }
  {
    const name = `idle RSS with DATABASE_URL and S3 ≤ ${IDLE_RSS_FULL_MB} MB`
    const full = footprints.find((f) => f.side === "tandem")
    targets.push(
      full === undefined ? notMeasured(name) : {
        target: name,
        measured: `${full.idleRssMB.toFixed(0)} MB`,
        value: full.idleRssMB,
        met: full.idleRssMB <= IDLE_RSS_FULL_MB
      }
    )
  }
  {
    const name =
      `embedded default: idle RSS of everything it runs ≤ ${IDLE_RSS_EMBEDDED_MB} MB, fresh and reused DATA_DIR`
    const fresh = footprints.find((f) => f.side === "embedded" && f.dataDir === "fresh")
    const reused = footprints.filter((f) => f.side === "embedded" && f.dataDir === "reused")
    const worstReused = reused.reduce<Footprint | undefined>(
      (worst, f) => (worst === undefined || f.idleRssMB > worst.idleRssMB ? f : worst),
      undefined
    )
    targets.push(
      fresh === undefined || worstReused === undefined ? notMeasured(name) : {
        target: name,
        measured: `fresh ${fresh.idleRssMB.toFixed(0)} MB, reused ${worstReused.idleRssMB.toFixed(0)} MB`,
        value: Math.max(fresh.idleRssMB, worstReused.idleRssMB),
        met: fresh.idleRssMB <= IDLE_RSS_EMBEDDED_MB && worstReused.idleRssMB <= IDLE_RSS_EMBEDDED_MB
      }
    )
  }
  {
    const name = "embedded default c16: uploads/s ≥ 0.8 × tandem on PostgreSQL + local disk (same run)"
    const headline = ratio("embedded", 16)?.headline
    const e = summary("embedded", "embedded", 16)
    const p = summary("embedded", "pg-disk", 16)
    targets.push(
      headline === undefined || e === undefined || p === undefined ? notMeasured(name) : {
        target: name,
        measured: `${fixed(headline.uploadsPerSecond)} (${e.uploadsPerSecond.toFixed(0)} / ${
          p.uploadsPerSecond.toFixed(0)
        })`,
        value: headline.uploadsPerSecond,
        met: headline.uploadsPerSecond >= 0.8
      }
    )
  }
  {
    const name = `embedded default, reused DATA_DIR: start to /readyz 200 ≤ ${READY_REUSED_MS / 1000} s`
    const reused = footprints.filter((f) => f.side === "embedded" && f.dataDir === "reused")
    const slowest = Math.max(...reused.map((f) => f.readyMs))
    targets.push(
      reused.length === 0 ? notMeasured(name) : {
        target: name,
        measured: `${(slowest / 1000).toFixed(2)} s${reused.length > 1 ? ` (slowest of ${reused.length})` : ""}`,
        value: slowest,
        met: slowest <= READY_REUSED_MS
      }
    )
  }
  return targets
}

export const describe = (target: Target): string =>
  `${target.met === null ? "n/a    " : target.met ? "met    " : "NOT met"} ${target.target}: ${target.measured}`
