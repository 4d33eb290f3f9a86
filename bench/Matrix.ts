/**
 * The default benchmark: 1 KB uploads at each concurrency level, tandem, the floor
 * and the Effect floor taking turns (A B C A B C …) on a fresh server process per run, full stack
 * and in memory; medians of the repetitions and the tandem/floor ratios.
 */
import * as Contenders from "./Contenders.js"
import type { Shared, Side, Stack } from "./Contenders.js"
import * as LoadGenerator from "./LoadGenerator.js"
import * as ProcStats from "./ProcStats.js"
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

/** Sized so that the default run (2 repetitions) stays under about 5 minutes on a 2-core machine. */
const baseCounts: Record<Stack, Record<number, Counts>> = {
  full: { 1: { warmup: 50, measured: 200 }, 16: { warmup: 100, measured: 400 }, 64: { warmup: 200, measured: 600 } },
  memory: {
    1: { warmup: 100, measured: 400 },
    16: { warmup: 300, measured: 1000 },
    64: { warmup: 300, measured: 1000 }
  }
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
  readonly peakRssMiB: number
  /** Server CPU (user + system) during the measured uploads, per upload. */
  readonly serverCpuMsPerUpload: number
  /** s3rver's CPU per upload (full stack only): the shared object store's own cost. */
  readonly s3rverCpuMsPerUpload: number | null
  readonly loadGeneratorCpuMs: number
  /** Load-generator CPU as a share of one core over the measured wall time. */
  readonly loadGeneratorCpuPercent: number
}

const delta = (before: number | undefined, after: number | undefined): number =>
  before === undefined || after === undefined ? Number.NaN : after - before

/** One fresh server, a warm-up, then the measured uploads. */
const measure = async (
  plan: Plan,
  shared: Shared | undefined,
  stack: Stack,
  side: Side,
  concurrency: number,
  rep: number
): Promise<RunResult> => {
  const { measured, warmup } = plan.counts(stack, concurrency)
  const upload = LoadGenerator.smallUpload(plan.fileBytes)
  const server = await ServerProcess.start(Contenders.spec(stack, side, shared))
  const pool = LoadGenerator.connect(server.origin, concurrency)
  try {
    await LoadGenerator.run(pool, upload, warmup, concurrency)
    const s3Pid = stack === "full" ? shared?.s3.pid : undefined
    const cpuBefore = ProcStats.cpuMillis(server.pid)
    const s3Before = s3Pid === undefined ? undefined : ProcStats.cpuMillis(s3Pid)
    const load = await LoadGenerator.run(pool, upload, measured, concurrency)
    const serverCpu = delta(cpuBefore, ProcStats.cpuMillis(server.pid))
    const s3Cpu = s3Pid === undefined ? Number.NaN : delta(s3Before, ProcStats.cpuMillis(s3Pid))
    const peak = ProcStats.peakRss(server.pid)
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new Error(`${side} (${stack}) died during the run:\n${server.output()}`)
    }
    return {
      stack,
      side,
      concurrency,
      rep,
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

export interface Ratio {
  readonly stack: Stack
  readonly concurrency: number
  /** tandem / floor, of the medians. */
  readonly uploadsPerSecond: number
  readonly p99: number
  readonly serverCpuPerUpload: number
  /** Effect floor / floor, of the medians: what the framework alone keeps of the floor. */
  readonly effectFloor: { readonly uploadsPerSecond: number; readonly serverCpuPerUpload: number } | undefined
  /** tandem / floor of each adjacent pair (rep by rep). */
  readonly pairs: { readonly uploadsPerSecond: ReadonlyArray<number>; readonly p99: ReadonlyArray<number> }
}

export interface Target {
  readonly description: string
  readonly measured: number
  readonly met: boolean
}

export interface MatrixResult {
  readonly runs: ReadonlyArray<RunResult>
  readonly summaries: ReadonlyArray<Summary>
  readonly ratios: ReadonlyArray<Ratio>
  readonly targets: ReadonlyArray<Target>
}

const summarize = (runs: ReadonlyArray<RunResult>): Summary | undefined => {
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

const ratioOf = (runs: ReadonlyArray<RunResult>, stack: Stack, concurrency: number): Ratio | undefined => {
  const of = (side: Side) => runs.filter((r) => r.stack === stack && r.concurrency === concurrency && r.side === side)
  const tandem = of("tandem")
  const floor = of("floor")
  const t = summarize(tandem)
  const f = summarize(floor)
  const e = summarize(of("effect-floor"))
  if (t === undefined || f === undefined) return undefined
  const pairs = tandem.flatMap((run) => {
    const partner = floor.find((candidate) => candidate.rep === run.rep)
    return partner === undefined ? [] : [[run, partner] as const]
  })
  return {
    stack,
    concurrency,
    uploadsPerSecond: round(t.uploadsPerSecond / f.uploadsPerSecond, 3),
    p99: round(t.p99 / f.p99, 3),
    serverCpuPerUpload: round(t.serverCpuMsPerUpload / f.serverCpuMsPerUpload, 2),
    effectFloor: e === undefined ? undefined : {
      uploadsPerSecond: round(e.uploadsPerSecond / f.uploadsPerSecond, 3),
      serverCpuPerUpload: round(e.serverCpuMsPerUpload / f.serverCpuMsPerUpload, 2)
    },
    pairs: {
      uploadsPerSecond: pairs.map(([a, b]) => round(a.uploadsPerSecond / b.uploadsPerSecond, 3)),
      p99: pairs.map(([a, b]) => round(a.latencyMs.p99 / b.latencyMs.p99, 3))
    }
  }
}

/** The issue's targets, where this run measured the levels they name. */
const targetsOf = (ratios: ReadonlyArray<Ratio>): Array<Target> =>
  ratios.flatMap((ratio): Array<Target> => {
    if (ratio.stack === "full" && (ratio.concurrency === 16 || ratio.concurrency === 64)) {
      return [
        {
          description: `full stack, c${ratio.concurrency}: uploads/s >= 0.85 x floor`,
          measured: ratio.uploadsPerSecond,
          met: ratio.uploadsPerSecond >= 0.85
        },
        {
          description: `full stack, c${ratio.concurrency}: p99 <= 1.3 x floor`,
          measured: ratio.p99,
          met: ratio.p99 <= 1.3
        }
      ]
    }
    if (ratio.stack === "memory" && ratio.concurrency === 64) {
      return [{
        description: "in memory, c64: uploads/s >= 0.6 x floor",
        measured: ratio.uploadsPerSecond,
        met: ratio.uploadsPerSecond >= 0.6
      }]
    }
    return []
  })

const describeRun = (run: RunResult): string =>
  [
    `${run.side.padEnd(6)} ${String(run.uploadsPerSecond).padStart(8)} uploads/s`,
    `p50 ${run.latencyMs.p50} ms, p95 ${run.latencyMs.p95} ms, p99 ${run.latencyMs.p99} ms`,
    `errors ${run.errors}${run.errors > 0 ? ` ${JSON.stringify(run.errorKinds)}` : ""}`,
    `peak RSS ${run.peakRssMiB} MiB`,
    `server CPU ${run.serverCpuMsPerUpload} ms/upload`,
    `load-gen CPU ${run.loadGeneratorCpuMs} ms (${run.loadGeneratorCpuPercent}% of a core)`
  ].join(", ")

export const run = async (plan: Plan, shared: Shared | undefined): Promise<MatrixResult> => {
  const runs: Array<RunResult> = []
  for (const concurrency of plan.levels) {
    for (const stack of plan.stacks) {
      const { measured, warmup } = plan.counts(stack, concurrency)
      console.log(
        `\n${
          Contenders.stackTitle[stack]
        }, concurrency ${concurrency}: ${warmup} warm-up + ${measured} measured uploads per run`
      )
      for (let rep = 1; rep <= plan.reps; rep++) {
        for (const side of Contenders.sides) {
          const result = await measure(plan, shared, stack, side, concurrency, rep)
          runs.push(result)
          console.log(`  rep ${rep}/${plan.reps} ${describeRun(result)}`)
        }
      }
      const ratio = ratioOf(runs, stack, concurrency)
      if (ratio !== undefined) {
        console.log(
          `  tandem/floor: uploads/s ${ratio.uploadsPerSecond}, p99 ${ratio.p99} (pairs: ${
            ratio.pairs.uploadsPerSecond.join(", ")
          })`
        )
        if (ratio.effectFloor !== undefined) {
          console.log(`  Effect floor/floor: uploads/s ${ratio.effectFloor.uploadsPerSecond}`)
        }
      }
    }
  }
  const summaries = plan.levels.flatMap((concurrency) =>
    plan.stacks.flatMap((stack) =>
      Contenders.sides.flatMap((side) => {
        const summary = summarize(
          runs.filter((r) => r.stack === stack && r.side === side && r.concurrency === concurrency)
        )
        return summary === undefined ? [] : [summary]
      })
    )
  )
  const ratios = plan.stacks.flatMap((stack) =>
    plan.levels.flatMap((concurrency) => {
      const ratio = ratioOf(runs, stack, concurrency)
      return ratio === undefined ? [] : [ratio]
    })
  )
  return { runs, summaries, ratios, targets: targetsOf(ratios) }
}
