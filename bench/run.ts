/**
 * npm run bench [-- --reps N --scale X --levels 1,16,64 --stacks full,memory,embedded]
 *   1 KB uploads: tandem vs the protocol floor, the floor and the Effect floor (full stack, in memory);
 *   the embedded default vs tandem on PostgreSQL + local disk, with start-up time and memory
 * npm run bench -- --profile [--count N --stacks memory]   tandem under --cpu-prof at c64 (in memory, then full stack)
 * npm run bench -- --large [--size 1GiB --part-size 8MiB --timeout 600]
 * npm run bench -- --resumable [--resumable-size 256MiB --patch-sizes 8MiB,1MiB --part-size 8MiB --reps 3 --timeout 600]
 *   one multipart POST /files beside tus uploads in PATCHes of each size: MiB/s, idle and peak RSS, CPU, the tail
 */
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import * as Chart from "./Chart.js"
import * as Cleanup from "./Cleanup.js"
import * as Contenders from "./Contenders.js"
import type { Shared, Side, Stack } from "./Contenders.js"
import * as Embedded from "./Embedded.js"
import * as LargeUpload from "./LargeUpload.js"
import * as Machine from "./Machine.js"
import * as Matrix from "./Matrix.js"
import { repoRoot, resultsDir } from "./Paths.js"
import * as ProfileRun from "./ProfileRun.js"
import * as Report from "./Report.js"
import * as ResumableUpload from "./ResumableUpload.js"
import * as SharedServers from "./SharedServers.js"
import * as Targets from "./Targets.js"

const { values: args } = parseArgs({
  options: {
    large: { type: "boolean", default: false },
    size: { type: "string", default: "1GiB" },
    resumable: { type: "boolean", default: false },
    "resumable-size": { type: "string", default: "256MiB" },
    "patch-sizes": { type: "string", default: "8MiB,1MiB" },
    "part-size": { type: "string", default: "8MiB" },
    timeout: { type: "string", default: "600" },
    profile: { type: "boolean", default: false },
    count: { type: "string", default: "2000" },
    /** Default: 2 for the uploads benchmark, 3 for --resumable. */
    reps: { type: "string" },
    scale: { type: "string", default: "1" },
    levels: { type: "string", default: "1,16,64" },
    stacks: { type: "string", default: "full,memory,embedded" },
    "no-report": { type: "boolean", default: false }
  }
})

const positive = (name: string, raw: string): number => {
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, not ${raw}`)
  return value
}

const units: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3
}

/** "1GiB", "512MiB", "100MB", "1048576". */
const bytes = (name: string, raw: string): number => {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(raw.trim())
  const unit = units[(match?.[2] ?? "?").toLowerCase()]
  if (match?.[1] === undefined || unit === undefined) {
    throw new Error(`--${name}: expected a size such as 1GiB or 500MB, not ${raw}`)
  }
  return Math.round(Number(match[1]) * unit)
}

const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`
const today = new Date().toISOString().replace(/\.\d+Z$/, "Z")
const machine = Machine.describe()
const startedAt = Date.now()
const fileBytes = 1024

const writeJson = async (name: string, value: unknown): Promise<string> => {
  await Fs.mkdir(resultsDir, { recursive: true })
  const file = Path.join(resultsDir, name)
  await Fs.writeFile(file, `${JSON.stringify(value, null, 2)}\n`)
  return Path.relative(repoRoot, file)
}

const databaseServer = process.env["BENCH_DATABASE_URL"] ?? process.env["TEST_DATABASE_URL"] ??
  "postgres://postgres@127.0.0.1:5432/postgres"

/** PostgreSQL (a fresh database) and s3rver, shared by every contender, removed afterwards whatever happens. */
const withSharedServers = async <A>(use: (shared: Shared) => Promise<A>): Promise<A> => {
  const database = await SharedServers.createDatabase(databaseServer)
  const dropDatabase = Cleanup.register(database.drop)
  const s3 = await SharedServers.startS3rver()
  const stopS3 = Cleanup.register(s3.stop)
  console.log(`PostgreSQL ${database.serverVersion}: database ${database.name}; s3rver at ${s3.endpoint}`)
  try {
    return await use({ s3, database })
  } finally {
    await stopS3()
    await dropDatabase()
  }
}

const parseStacks = (): Array<Stack> =>
  args.stacks.split(",").map((s): Stack => {
    const stack = Contenders.stacks.find((known) => known === s)
    if (stack === undefined) throw new Error(`--stacks: some of ${Contenders.stacks.join(", ")}, not ${s}`)
    return stack
  })

const matrix = async () => {
  // In the order the stacks run and are reported, whatever order --stacks names them in.
  const stacks = Contenders.stacks.filter((stack) => parseStacks().includes(stack))
  const plan: Matrix.Plan = {
    levels: args.levels.split(",").map((level) => positive("levels", level)),
    reps: positive("reps", args.reps ?? "2"),
    stacks,
    fileBytes,
    counts: Matrix.defaultCounts(positive("scale", args.scale))
  }
  const run = async (shared: Shared | undefined) => {
    const runs = await Matrix.run(plan, shared)
    if (!stacks.includes("embedded")) return { runs, footprints: [] }
    if (shared === undefined) throw new Error("the embedded stack needs PostgreSQL and s3rver")
    const embedded = await Embedded.run(plan, shared, databaseServer)
    return { runs: [...runs, ...embedded.runs], footprints: embedded.footprints }
  }
  let postgres = "not used"
  const { footprints, runs } = stacks.includes("full") || stacks.includes("embedded")
    ? await withSharedServers((shared) => {
      postgres = shared.database.serverVersion
      return run(shared)
    })
    : await run(undefined)
  const summaries = Matrix.summaries(runs, plan.levels, stacks)
  const ratios = Matrix.ratios(runs, plan.levels, stacks)
  const targets = Targets.of(summaries, ratios, footprints)
  console.log("\nHeadline ratios (medians):")
  for (const ratio of ratios) {
    const { headline } = ratio
    console.log(
      `  ${ratio.stack.padEnd(8)} c${String(ratio.concurrency).padEnd(3)} ${headline.of}/${headline.to}: uploads/s ${
        headline.uploadsPerSecond.toFixed(2)
      }  p99 ${headline.p99.toFixed(2)}  CPU/upload ${headline.serverCpuPerUpload.toFixed(2)}`
    )
  }
  console.log("\nTargets:")
  for (const target of targets) console.log(`  ${Targets.describe(target)}`)
  if (args["no-report"]) return
  const json = await writeJson("uploads.json", {
    date: today,
    command,
    machine,
    postgres,
    plan: {
      levels: plan.levels,
      reps: plan.reps,
      stacks: plan.stacks,
      fileBytes: plan.fileBytes,
      counts: Object.fromEntries(
        plan.stacks.map((
          stack
        ) => [stack, Object.fromEntries(plan.levels.map((level) => [`c${level}`, plan.counts(stack, level)]))])
      )
    },
    targets,
    footprints,
    ratios,
    summaries,
    runs
  })
  const chartFile = Path.join(resultsDir, "uploads-per-second.svg")
  await Fs.writeFile(
    chartFile,
    Chart.uploadsPerSecond(
      summaries,
      ratios,
      plan.levels,
      plan.stacks,
      `${today}, ${machine.cpus} × ${machine.cpuModel}, Node.js ${machine.node}: ${command}`
    )
  )
  await Report.write(
    "uploads",
    Report.uploads({
      date: today,
      command,
      machine,
      postgres,
      reps: plan.reps,
      levels: plan.levels,
      stacks: plan.stacks,
      counts: plan.counts,
      fileBytes,
      chart: Path.relative(repoRoot, chartFile),
      json,
      elapsedSeconds: (Date.now() - startedAt) / 1000,
      runs,
      summaries,
      ratios,
      footprints,
      targets
    })
  )
  console.log(`\nWrote ${json}, ${Path.relative(repoRoot, chartFile)} and BENCHMARKS.md`)
}

const profile = async () => {
  const count = positive("count", args.count)
  const warmup = Math.max(64, Math.round(count / 4))
  const stacks = parseStacks()
  // In memory first: the figure the issue asks for; the full stack shows what the stores add.
  const ordered = (["memory", "full"] satisfies ReadonlyArray<Stack>).filter((stack) => stacks.includes(stack))
  const profileOne = (stack: Stack, shared: Shared | undefined) => async () => {
    console.log(`tandem (${stack}) under --cpu-prof: ${warmup} warm-up + ${count} uploads at c64…`)
    const result = await ProfileRun.run(stack, shared, 64, warmup, count, fileBytes)
    const { summary } = result
    console.log(
      `  ${result.uploadsPerSecond} uploads/s under the profiler, ${result.errors} errors; ${summary.busyMs} ms busy (windowed: ${summary.windowed})`
    )
    for (const entry of summary.packages.slice(0, 8)) {
      console.log(`  ${entry.percent.toFixed(1).padStart(5)}%  ${entry.name}`)
    }
    for (const entry of summary.functions.slice(0, 12)) {
      console.log(`  ${entry.percent.toFixed(1).padStart(5)}%  ${entry.name}`)
    }
    return result
  }
  const results: Array<ProfileRun.ProfileResult> = []
  for (const stack of ordered) {
    results.push(
      stack === "full"
        ? await withSharedServers((shared) => profileOne(stack, shared)())
        : await profileOne(stack, undefined)()
    )
  }
  if (args["no-report"]) return
  const json = await writeJson("profile.json", { date: today, command, machine, results })
  await Report.write("profile", Report.profile({ date: today, command, machine, results, json }))
  console.log(`\nWrote ${json} and BENCHMARKS.md`)
}

const large = async () => {
  const options: LargeUpload.LargeOptions = {
    size: bytes("size", args.size),
    partSize: bytes("part-size", args["part-size"]),
    timeoutMs: positive("timeout", args.timeout) * 1000
  }
  const results = await withSharedServers(async (shared) => {
    const all: Array<LargeUpload.LargeResult> = []
    for (const side of ["tandem", "floor"] satisfies ReadonlyArray<Side>) {
      console.log(`${side}: uploading ${options.size} bytes…`)
      const result = await LargeUpload.run(side, shared, options)
      console.log(
        `  ${result.outcome} (${result.status ?? "no status"}) in ${result.elapsedSeconds} s, ${
          result.throughputMBps ?? "n/a"
        } MB/s, idle RSS ${result.idleRssMiB} MiB, peak RSS ${result.peakRssMiB} MiB (bound ${result.boundMiB} MiB: ${
          result.withinBound ? "within" : "over"
        }), server ${result.serverExit ?? "alive"}`
      )
      console.log(`  response: ${result.response.slice(0, 300)}`)
      all.push(result)
    }
    return all
  })
  if (args["no-report"]) return
  const json = await writeJson("large.json", { date: today, command, machine, results })
  await Report.write("large", Report.large({ date: today, command, machine, results, json }))
  console.log(`\nWrote ${json} and BENCHMARKS.md`)
}

const resumable = async () => {
  const options: ResumableUpload.ResumableOptions = {
    size: bytes("resumable-size", args["resumable-size"]),
    partSize: bytes("part-size", args["part-size"]),
    patchSizes: args["patch-sizes"].split(",").map((raw) => bytes("patch-sizes", raw)),
    reps: Math.round(positive("reps", args.reps ?? "3")),
    timeoutMs: positive("timeout", args.timeout) * 1000
  }
  if (options.patchSizes.some((size) => size <= 0) || options.size <= 0 || options.partSize <= 0) {
    throw new Error("--resumable-size, --part-size and --patch-sizes must be positive")
  }
  const sha256 = ResumableUpload.expectedSha256(options.size)
  console.log(`Content: ${options.size} bytes, sha256 ${sha256}. SHA-256 in this process (64 KiB updates):`)
  const hashes = await ResumableUpload.hashSpeeds(options.size)
  for (const hash of hashes) console.log(`  ${hash.name}: ${hash.MiBps} MiB/s (${hash.seconds} s)`)
  const ways = ResumableUpload.waysOf(options)
  let postgres = "unknown"
  const trials = await withSharedServers(async (shared) => {
    postgres = shared.database.serverVersion
    const all: Array<ResumableUpload.Trial> = []
    for (let rep = 1; rep <= options.reps; rep++) {
      for (const way of ways) {
        const trial = await ResumableUpload.trial(way, rep, shared, options, sha256)
        console.log(
          `round ${rep}, ${trial.label}: ${trial.outcome} in ${trial.elapsedSeconds} s (${trial.requests} requests), ${
            trial.throughputMiBps ?? "n/a"
          } MiB/s; RSS idle ${trial.idleRssMiB}, peak ${trial.peakRssMiB} MiB; CPU server ${trial.serverCpuSeconds} s, s3rver ${trial.s3rverCpuSeconds} s, PostgreSQL ${trial.postgresCpuSeconds} s; WAL ${trial.walMiB} MiB; tail written ${
            trial.tailWrittenMiB ?? "-"
          }, read ${trial.tailReadMiB ?? "-"} MiB${trial.deleted ? "" : "; NOT deleted"}`
        )
        if (trial.error !== null) console.log(`  error: ${trial.error}\n  server: ${trial.serverOutput.slice(-500)}`)
        all.push(trial)
      }
    }
    return all
  })
  const summaries = ResumableUpload.summarize(trials, ways)
  console.log("\nMedians:")
  for (const s of summaries) {
    console.log(
      `  ${
        s.label.padEnd(24)
      } ${s.verified}/${s.runs} verified, ${s.throughputMiBps} MiB/s, peak RSS ${s.peakRssMiB} MiB (idle ${s.idleRssMiB}), server CPU ${s.serverCpuSeconds} s, PostgreSQL CPU ${s.postgresCpuSeconds} s`
    )
  }
  if (trials.some((t) => t.outcome === "failed")) process.exitCode = 1
  if (args["no-report"]) return
  const json = await writeJson("resumable.json", {
    date: today,
    command,
    machine,
    postgres,
    options,
    sha256,
    hashes,
    summaries,
    trials
  })
  await Report.write(
    "resumable",
    Report.resumable({ date: today, command, machine, postgres, options, sha256, hashes, summaries, trials, json })
  )
  console.log(`\nWrote ${json} and BENCHMARKS.md`)
}

try {
  await (args.large ? large() : args.resumable ? resumable() : args.profile ? profile() : matrix())
} catch (error) {
  console.error("bench failed:", error)
  process.exitCode = 1
} finally {
  await Cleanup.all()
}
