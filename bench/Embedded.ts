/**
 * The embedded stack: tandem as `npm start` runs it with nothing configured (no
 * DATABASE_URL, no S3_BUCKET: the embedded database and the local-disk store under
 * DATA_DIR) beside tandem on PostgreSQL + the local-disk store, taking turns; each
 * start on a data directory of its own, fresh the first time and reused after. Per
 * start: the time from the spawn to the first GET /readyz 200, the memory of
 * everything it runs (its process tree, a child database server included) 2 s
 * after that and at its peak, then the uploads at each level on that same process.
 * Last, tandem's idle memory on PostgreSQL + S3.
 */
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import * as Cleanup from "./Cleanup.js"
import * as Contenders from "./Contenders.js"
import type { Shared, Side } from "./Contenders.js"
import * as Matrix from "./Matrix.js"
import type { Plan, RunResult } from "./Matrix.js"
import * as ProcStats from "./ProcStats.js"
import type { RunningServer, ServerSpec } from "./ServerProcess.js"
import * as ServerProcess from "./ServerProcess.js"
import * as SharedServers from "./SharedServers.js"
import { round } from "./Stats.js"

/** Memory in MB (10^6 bytes), as the targets state it. */
export const mb = (bytes: number): number => round(bytes / 1e6, 1)

const SETTLE_MS = 2_000
const POLL_MS = 15
const SAMPLE_MS = 50

export type DataDir = "fresh" | "reused" | "none"

export interface Footprint {
  readonly side: Side
  /** What the contender runs on. */
  readonly stores: string
  readonly rep: number
  /** DATA_DIR: new and empty, or the one the previous start of the same contender left; none when unused. */
  readonly dataDir: DataDir
  /** From the spawn to the first 200 from GET /readyz, polled every 15 ms. */
  readonly readyMs: number
  /** 2 s after ready: VmRSS summed over the process tree (MB = 10^6 bytes). */
  readonly idleRssMB: number
  /** The same moment, Pss summed (shared pages split between the processes that map them). */
  readonly idlePssMB: number
  readonly processes: number
  /** The tree's summed VmRSS at its largest from the spawn to the idle reading (sampled every 50 ms). */
  readonly startPeakRssMB: number
  /** The same, from the spawn to the end of the last level's uploads; null without uploads. */
  readonly peakRssMB: number | null
  /** Processes of its tree still alive 5 s after it exited (then stopped by the benchmark). */
  readonly leftBehind: number
}

export interface EmbeddedResult {
  readonly runs: ReadonlyArray<RunResult>
  readonly footprints: ReadonlyArray<Footprint>
}

interface Started {
  readonly server: RunningServer
  readonly sampler: ReturnType<typeof ProcStats.sampleTreeRss>
  readonly footprint: Omit<Footprint, "peakRssMB" | "leftBehind">
}

/** Starts a contender, waits for /readyz and 2 s more, and reads its memory. */
const startAndSettle = async (
  spec: ServerSpec,
  side: Side,
  stores: string,
  rep: number,
  dataDir: DataDir,
  mention: string | undefined
): Promise<Started> => {
  const watch: { sampler?: ReturnType<typeof ProcStats.sampleTreeRss> } = {}
  let server: RunningServer
  try {
    server = await ServerProcess.start(spec, {
      path: "/readyz",
      pollMs: POLL_MS,
      timeoutMs: 180_000,
      onSpawn: (pid) => (watch.sampler = ProcStats.sampleTreeRss(pid, SAMPLE_MS, mention))
    })
  } catch (error) {
    watch.sampler?.stop()
    throw error
  }
  const sampler = watch.sampler
  if (sampler === undefined) throw new Error("no pid to sample")
  await sleep(SETTLE_MS)
  const idle = ProcStats.treeMemory(server.pid, mention)
  return {
    server,
    sampler,
    footprint: {
      side,
      stores,
      rep,
      dataDir,
      readyMs: Math.round(server.startMs),
      idleRssMB: mb(idle.rss),
      idlePssMB: mb(idle.pss),
      processes: idle.processes,
      startPeakRssMB: mb(sampler.peak())
    }
  }
}

/** Stops the server; counts (and ends) what it left running. */
const stopAll = async (server: RunningServer, mention: string | undefined): Promise<number> => {
  const before = ProcStats.tree(server.pid, mention).map(ProcStats.identity)
  await server.stop()
  const deadline = Date.now() + 5_000
  const alive = () => before.filter((id) => id !== undefined && ProcStats.identity(Number(id.split("@")[0])) === id)
  while (alive().length > 0 && Date.now() < deadline) await sleep(100)
  const left = alive()
  for (const id of left) {
    try {
      process.kill(Number(id?.split("@")[0]), "SIGKILL")
    } catch {
      // gone meanwhile
    }
  }
  return left.length
}

const describe = (f: Omit<Footprint, "peakRssMB" | "leftBehind">) =>
  `${f.side} (${f.dataDir} DATA_DIR): /readyz after ${f.readyMs} ms; idle ${f.idleRssMB} MB RSS (${f.idlePssMB} MB PSS) in ${f.processes} process(es); peak during start ${f.startPeakRssMB} MB`

export const run = async (plan: Plan, shared: Shared, databaseServer: string): Promise<EmbeddedResult> => {
  const runs: Array<RunResult> = []
  const footprints: Array<Footprint> = []
  const embeddedDir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-bench-embedded-"))
  const pgDiskDir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-bench-pg-disk-"))
  // mkdtemp's 0700 would keep out an embedded server that runs as another user (PostgreSQL refuses root).
  await Promise.all([embeddedDir, pgDiskDir].map((dir) => Fs.chmod(dir, 0o755)))
  const removeDirs = Cleanup.register(() =>
    Promise.all([embeddedDir, pgDiskDir].map((dir) => Fs.rm(dir, { recursive: true, force: true })))
  )
  // A database of its own: tandem on PostgreSQL + local disk must not share the full stack's.
  const database = await SharedServers.createDatabase(databaseServer)
  const dropDatabase = Cleanup.register(database.drop)
  const contenders: Record<"embedded" | "pg-disk", { spec: ServerSpec; stores: string; mention?: string }> = {
    embedded: {
      spec: Contenders.spec("embedded", "embedded", shared, { DATA_DIR: embeddedDir }),
      stores: "embedded database + local disk",
      mention: embeddedDir
    },
    "pg-disk": {
      spec: Contenders.spec("embedded", "pg-disk", { ...shared, database }, { DATA_DIR: pgDiskDir }),
      stores: "PostgreSQL + local disk"
    }
  }
  // Always a fresh start and a reused one, whatever --reps says.
  const reps = Math.max(2, plan.reps)
  try {
    console.log(
      `\n${Contenders.stackTitle.embedded}: one process per start, levels ${
        plan.levels.map((level) => {
          const { measured, warmup } = plan.counts("embedded", level)
          return `c${level} ${warmup} + ${measured}`
        }).join(", ")
      }; the first start on a fresh DATA_DIR, then reused`
    )
    for (let rep = 1; rep <= reps; rep++) {
      for (const side of Contenders.sidesOf.embedded) {
        const contender = contenders[side as "embedded" | "pg-disk"]
        const dataDir: DataDir = rep === 1 ? "fresh" : "reused"
        const { footprint, sampler, server } = await startAndSettle(
          contender.spec,
          side,
          contender.stores,
          rep,
          dataDir,
          contender.mention
        )
        console.log(`  rep ${rep}/${reps} ${describe(footprint)}`)
        let peak: number | null = null
        let leftBehind = 0
        try {
          for (const concurrency of plan.levels) {
            const result = await Matrix.measureOn(server, {
              stack: "embedded",
              side,
              concurrency,
              rep,
              counts: plan.counts("embedded", concurrency),
              fileBytes: plan.fileBytes,
              mention: contender.mention,
              peakRss: sampler.peak
            })
            runs.push(result)
            console.log(`    c${concurrency} ${Matrix.describeRun(result)}`)
          }
          peak = mb(sampler.stop())
        } finally {
          sampler.stop()
          leftBehind = await stopAll(server, contender.mention)
        }
        if (leftBehind > 0) console.log(`    ${leftBehind} process(es) of its tree still ran 5 s after it exited`)
        footprints.push({ ...footprint, peakRssMB: peak, leftBehind })
      }
    }
    for (const ratio of Matrix.ratios(runs, plan.levels, ["embedded"])) {
      console.log(`  c${ratio.concurrency}\n${Matrix.describeRatios(ratio)}`)
    }
    // tandem on PostgreSQL + S3 (the full stack's stores), idle only.
    const full = await startAndSettle(
      Contenders.spec("full", "tandem", shared),
      "tandem",
      "PostgreSQL + S3 (s3rver)",
      1,
      "none",
      undefined
    )
    full.sampler.stop()
    const leftBehind = await stopAll(full.server, undefined)
    console.log(`  ${describe(full.footprint)}`)
    footprints.push({ ...full.footprint, peakRssMB: null, leftBehind })
    return { runs, footprints }
  } finally {
    await dropDatabase()
    await removeDirs()
  }
}
