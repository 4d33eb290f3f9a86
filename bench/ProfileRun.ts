/** tandem (in memory, or full stack) under `node --cpu-prof`, loaded at concurrency 64; its self time summed by function and package. */
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as Contenders from "./Contenders.js"
import type { Shared, Stack } from "./Contenders.js"
import * as CpuProfile from "./CpuProfile.js"
import * as LoadGenerator from "./LoadGenerator.js"
import { profilesDir, repoRoot, tandemMain, tandemUnbundled } from "./Paths.js"
import * as ServerProcess from "./ServerProcess.js"
import { round } from "./Stats.js"

export interface ProfileResult {
  readonly stack: Stack
  readonly concurrency: number
  readonly warmup: number
  readonly count: number
  readonly uploadsPerSecond: number
  readonly errors: number
  /** Where the .cpuprofile was written (not committed). */
  readonly profile: string
  readonly summary: CpuProfile.Summary
}

const micros = () => Number(process.hrtime.bigint() / 1000n)

export const run = async (
  stack: Stack,
  shared: Shared | undefined,
  concurrency: number,
  warmup: number,
  count: number,
  fileBytes: number
): Promise<ProfileResult> => {
  await Fs.mkdir(profilesDir, { recursive: true })
  const name = `tandem-${stack}-c${concurrency}.cpuprofile`
  const base = Contenders.spec(stack, "tandem", shared)
  const server = await ServerProcess.start({
    ...base,
    script: base.script === tandemMain ? tandemUnbundled : base.script,
    nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${profilesDir}`, `--cpu-prof-name=${name}`]
  })
  const pool = LoadGenerator.connect(server.origin, concurrency)
  const upload = LoadGenerator.smallUpload(fileBytes)
  let load: LoadGenerator.LoadResult
  let window: readonly [number, number]
  try {
    await LoadGenerator.run(pool, upload, warmup, concurrency)
    const from = micros()
    load = await LoadGenerator.run(pool, upload, count, concurrency)
    window = [from, micros()]
  } finally {
    await pool.close()
    // The profile is written as the process exits; runMain exits on SIGTERM.
    await server.stop(60_000)
  }
  const file = Path.join(profilesDir, name)
  const summary = CpuProfile.summarize(await Fs.readFile(file, "utf8"), window)
  return {
    stack,
    concurrency,
    warmup,
    count,
    uploadsPerSecond: round((count / load.durationMs) * 1000, 1),
    errors: load.errors,
    profile: Path.relative(repoRoot, file),
    summary
  }
}
