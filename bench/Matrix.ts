/**
 * The default benchmark: 1 KB uploads at each concurrency level, tandem, the
 * protocol floor, the floor and the Effect floor taking turns (A B C D A B C D …) on a
 * fresh server process per run, full stack and in memory; medians of the
 * repetitions and the ratios between contenders.
 */
import * as Contenders from "./Contenders.js"
import type { Shared, Side, Stack } from "./Contenders.js"
import * as LoadGenerator from "./LoadGenerator.js"
import * as ProcStats from "./ProcStats.js"
import type { RunningServer } from "./ServerProcess.js"
import * as ServerProcess from "./ServerProcess.js"
import { median, mib, percentile, round } from "./Stats.js"

export interface Counts {
  readonly warmup: number
  readonly measured: number
}

export interface Plan {
  readonly levels: ReadonlyArray<number>
  readonly reps: number
  readonly stacks: ReadonlyArray<Stack>
  readonly fileBytes: number
  readonly counts: (stack: Stack, concurrency: number) => Counts
}

/** Sized so that the default run (2 repetitions, every stack) stays under about 5 minutes on a 2-core machine. */
const baseCounts: Record<Stack, Record<number, Counts>> = {
  full: { 1: { warmup: 50, measured: 200 }, 16: { warmup: 100, measured: 400 }, 64: { warmup: 200, measured: 600 } },
  memory: {
    1: { warmup: 100, measured: 400 },
    16: { warmup: 300, measured: 1000 },
    64: { warmup: 300, measured: 1000 }
  },
  // One server process per repetition serves every level in turn (its start is the slow part).
  embedded: { 1: { warmup: 10, measured: 60 }, 16: { warmup: 64, measured: 300 }, 64: { warmup: 64, measured: 200 } }
}

export const defaultCounts = (scale: number) => (stack: Stack, concurrency: number): Counts => {
  const base = baseCounts[stack][concurrency] ?? { warmup: 20 * concurrency, measured: 100 * concurrency }
  return {
    warmup: Math.max(concurrency, Math.round(base.warmup * scale)),
    measured: Math.max(concurrency * 2, Math.round(base.measured * scale))
  }
}

export interface RunResult {
  readonly stack: Stack
  readonly side: Side
  readonly concurrency: number
  readonly rep: number
  readonly warmup: number
  readonly count: number
  readonly durationMs: number
  readonly uploadsPerSecond: number
  readonly latencyMs: { readonly p50: number; readonly p95: number; readonly p99: number; readonly max: number }
  readonly errors: number
  readonly errorKinds: Readonly<Record<string, number>>
  /** The server's peak RSS so far (its process tree's, where it has children). */
  readonly peakRssMiB: number
  /** Server CPU (user + system, its whole process tree) during the measured uploads, per upload. */
  readonly serverCpuMsPerUpload: number
  /** s3rver's CPU per upload (full stack only): the shared object store's own cost. */
  readonly s3rverCpuMsPerUpload: number | null
  readonly loadGeneratorCpuMs: number
  /** Load-generator CPU as a share of one core over the measured wall time. */
  readonly loadGeneratorCpuPercent: number
}

const delta = (before: number | undefined, after: number | undefined): number =>
  before === undefined || after === undefined ? Number.NaN : after - before

export interface Target {
  readonly stack: Stack
  readonly side: Side
  readonly concurrency: number
  readonly rep: number
  readonly counts: Counts
  readonly fileBytes: number
  /** s3rver's pid, to count its CPU. */
  readonly s3Pid?: number | undefined
  /** Processes whose command line names this (its data directory) count as the server's too. */
  readonly mention?: string | undefined
  /** The server's peak RSS so far; its VmHWM unless given. */
  readonly peakRss?: () => number | undefined
}

/** A warm-up, then the measured uploads, on a running server. */
export const measureOn = async (server: RunningServer, target: Target): Promise<RunResult> => {
  const { concurrency, counts: { measured, warmup }, s3Pid, side, stack } = target
  const upload = LoadGenerator.smallUpload(target.fileBytes)
  const pool = LoadGenerator.connect(server.origin, concurrency)
  try {
    await LoadGenerator.run(pool, upload, warmup, concurrency)
    const cpuBefore = ProcStats.treeCpuMillis(server.pid, target.mention)
    const s3Before = s3Pid === undefined ? undefined : ProcStats.cpuMillis(s3Pid)
    const load = await LoadGenerator.run(pool, upload, measured, concurrency)
    const serverCpu = delta(cpuBefore, ProcStats.treeCpuMillis(server.pid, target.mention))
    const s3Cpu = s3Pid === undefined ? Number.NaN : delta(s3Before, ProcStats.cpuMillis(s3Pid))
    const peak = (target.peakRss ?? (() => ProcStats.peakRss(server.pid)))()
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new Error(`${side} (${stack}) died during the run:\n${server.output()}`)
    }
    return {
      stack,
      side,
      concurrency,
      rep: target.rep,
      warmup,
      count: measured,
      durationMs: round(load.durationMs),
      uploadsPerSecond: round((measured / load.durationMs) * 1000, 1),
      latencyMs: {
        p50: round(percentile(load.latenciesMs, 50), 3),
        p95: round(percentile(load.latenciesMs, 95), 3),
        p99: round(percentile(load.latenciesMs, 99), 3),
        max: round(percentile(load.latenciesMs, 100), 3)
      },
      errors: load.errors,
      errorKinds: load.errorKinds,
      peakRssMiB: peak === undefined ? Number.NaN : mib(peak),
      serverCpuMsPerUpload: round(serverCpu / measured, 3),
      s3rverCpuMsPerUpload: Number.isNaN(s3Cpu) ? null : round(s3Cpu / measured, 3),
      loadGeneratorCpuMs: round(load.clientCpuMs, 1),
      loadGeneratorCpuPercent: round((load.clientCpuMs / load.durationMs) * 100, 1)
    }
  } finally {
    await pool.close()
  }
}

/** One fresh server, a warm-up, then the measured uploads. */
const measure = async (
  plan: Plan,
  shared: Shared | undefined,
  stack: Stack,
  side: Side,
  concurrency: number,
  rep: number
): Promise<RunResult> => {
  const server = await ServerProcess.start(Contenders.spec(stack, side, shared))
  try {
    return await measureOn(server, {
      stack,
      side,
      concurrency,
      rep,
      counts: plan.counts(stack, concurrency),
      fileBytes: plan.fileBytes,
      s3Pid: stack === "full" ? shared?.s3.pid : undefined
    })
  } finally {
    await server.stop()
  }
}

export interface Summary {
  readonly stack: Stack
  readonly side: Side
  readonly concurrency: number
  readonly runs: number
  readonly uploadsPerSecond: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly errors: number
  readonly peakRssMiB: number
  readonly serverCpuMsPerUpload: number
  readonly s3rverCpuMsPerUpload: number | null
  readonly loadGeneratorCpuPercent: number
}

export const summarize = (runs: ReadonlyArray<RunResult>): Summary | undefined => {
  const first = runs[0]
  if (first === undefined) return undefined
  return {
    stack: first.stack,
    side: first.side,
    concurrency: first.concurrency,
    runs: runs.length,
    uploadsPerSecond: round(median(runs.map((r) => r.uploadsPerSecond)), 1),
    p50: round(median(runs.map((r) => r.latencyMs.p50)), 3),
    p95: round(median(runs.map((r) => r.latencyMs.p95)), 3),
    p99: round(median(runs.map((r) => r.latencyMs.p99)), 3),
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
    peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)),
    serverCpuMsPerUpload: round(median(runs.map((r) => r.serverCpuMsPerUpload)), 3),
    s3rverCpuMsPerUpload: first.s3rverCpuMsPerUpload === null
      ? null
      : round(median(runs.map((r) => r.s3rverCpuMsPerUpload ?? Number.NaN)), 3),
    loadGeneratorCpuPercent: round(median(runs.map((r) => r.loadGeneratorCpuPercent)), 1)
  }
}

/** Every (level, stack, side) the runs cover, in plan order. */
export const summaries = (
  runs: ReadonlyArray<RunResult>,
  levels: ReadonlyArray<number>,
  stacks: ReadonlyArray<Stack>
): Array<Summary> =>
  levels.flatMap((concurrency) =>
    stacks.flatMap((stack) =>
      Contenders.sidesOf[stack].flatMap((side) => {
        const summary = summarize(
          runs.filter((r) => r.stack === stack && r.side === side && r.concurrency === concurrency)
        )
        return summary === undefined ? [] : [summary]
      })
    )
  )

/** One contender against another at one stack and level: `of` / `to`, of the medians. */
export interface Comparison {
  readonly of: Side
  readonly to: Side
  readonly uploadsPerSecond: number
  readonly p99: number
  readonly serverCpuPerUpload: number
  /** The same ratios run by run, each `of` run against the `to` run of the same repetition. */
  readonly pairs: { readonly uploadsPerSecond: ReadonlyArray<number>; readonly p99: ReadonlyArray<number> }
}

const compare = (
  runs: ReadonlyArray<RunResult>,
  stack: Stack,
  concurrency: number,
  of: Side,
  to: Side
): Comparison | undefined => {
  const pick = (side: Side) => runs.filter((r) => r.stack === stack && r.concurrency === concurrency && r.side === side)
  const mine = pick(of)
  const theirs = pick(to)
  const a = summarize(mine)
  const b = summarize(theirs)
  if (a === undefined || b === undefined) return undefined
  const pairs = mine.flatMap((run) => {
    const partner = theirs.find((candidate) => candidate.rep === run.rep)
    return partner === undefined ? [] : [[run, partner] as const]
  })
  return {
    of,
    to,
    uploadsPerSecond: round(a.uploadsPerSecond / b.uploadsPerSecond, 3),
    p99: round(a.p99 / b.p99, 3),
    serverCpuPerUpload: round(a.serverCpuMsPerUpload / b.serverCpuMsPerUpload, 2),
    pairs: {
      uploadsPerSecond: pairs.map(([x, y]) => round(x.uploadsPerSecond / y.uploadsPerSecond, 3)),
      p99: pairs.map(([x, y]) => round(x.latencyMs.p99 / y.latencyMs.p99, 3))
    }
  }
}

/** The comparisons reported per stack and level; the first is the headline. */
export const comparisons: Record<Stack, ReadonlyArray<readonly [Side, Side]>> = {
  full: [["tandem", "protocol-floor"], ["tandem", "effect-floor"], ["protocol-floor", "floor"], [
    "effect-floor",
    "floor"
  ], ["tandem", "floor"]],
  memory: [["tandem", "protocol-floor"], ["tandem", "effect-floor"], ["protocol-floor", "floor"], [
    "effect-floor",
    "floor"
  ], ["tandem", "floor"]],
  embedded: [["embedded", "pg-disk"]]
}

export interface Ratios {
  readonly stack: Stack
  readonly concurrency: number
  /** tandem / protocol floor (embedded: the embedded default / PostgreSQL + local disk). */
  readonly headline: Comparison
  readonly comparisons: ReadonlyArray<Comparison>
}

export const ratios = (
  runs: ReadonlyArray<RunResult>,
  levels: ReadonlyArray<number>,
  stacks: ReadonlyArray<Stack>
): Array<Ratios> =>
  stacks.flatMap((stack) =>
    levels.flatMap((concurrency) => {
      const all = comparisons[stack].flatMap(([of, to]) => {
        const comparison = compare(runs, stack, concurrency, of, to)
        return comparison === undefined ? [] : [comparison]
      })
      const headline = all[0]
      return headline === undefined || headline.of !== comparisons[stack][0]?.[0] ||
          headline.to !== comparisons[stack][0]?.[1]
        ? []
        : [{ stack, concurrency, headline, comparisons: all }]
    })
  )

export const find = (
  ratio: Ratios | undefined,
  of: Side,
  to: Side
): Comparison | undefined => ratio?.comparisons.find((c) => c.of === of && c.to === to)

export const describeRun = (run: RunResult): string =>
  [
    `${run.side.padEnd(14)} ${String(run.uploadsPerSecond).padStart(8)} uploads/s`,
    `p50 ${run.latencyMs.p50} ms, p95 ${run.latencyMs.p95} ms, p99 ${run.latencyMs.p99} ms`,
    `errors ${run.errors}${run.errors > 0 ? ` ${JSON.stringify(run.errorKinds)}` : ""}`,
    `peak RSS ${run.peakRssMiB} MiB`,
    `server CPU ${run.serverCpuMsPerUpload} ms/upload`,
    `load-gen CPU ${run.loadGeneratorCpuMs} ms (${run.loadGeneratorCpuPercent}% of a core)`
  ].join(", ")

export const describeRatios = (ratio: Ratios): string =>
  ratio.comparisons.map((c) =>
    `  ${c.of}/${c.to}: uploads/s ${c.uploadsPerSecond}, p99 ${c.p99}, CPU/upload ${c.serverCpuPerUpload}${
      c === ratio.headline ? ` (pairs: ${c.pairs.uploadsPerSecond.join(", ")})` : ""
    }`
  ).join("\n")

/** The full and in-memory stacks of the plan (the embedded stack runs in Embedded.ts). */
export const run = async (plan: Plan, shared: Shared | undefined): Promise<Array<RunResult>> => {
  const runs: Array<RunResult> = []
  const stacks = plan.stacks.filter((stack) => stack !== "embedded")
  for (const concurrency of plan.levels) {
    for (const stack of stacks) {
      const { measured, warmup } = plan.counts(stack, concurrency)
      console.log(
        `\n${
          Contenders.stackTitle[stack]
        }, concurrency ${concurrency}: ${warmup} warm-up + ${measured} measured uploads per run`
      )
      for (let rep = 1; rep <= plan.reps; rep++) {
        for (const side of Contenders.sidesOf[stack]) {
          const result = await measure(plan, shared, stack, side, concurrency, rep)
          runs.push(result)
          console.log(`  rep ${rep}/${plan.reps} ${describeRun(result)}`)
        }
      }
      const [ratio] = ratios(runs, [concurrency], [stack])
      if (ratio !== undefined) console.log(describeRatios(ratio))
    }
  }
  return runs
}
