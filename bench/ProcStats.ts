import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"

/** Clock ticks per second for /proc/<pid>/stat times (almost always 100). */
const ticksPerSecond = (() => {
  try {
    const ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim())
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100
  } catch {
    return 100
  }
})()

const read = (file: string): string | undefined => {
  try {
    return readFileSync(file, "utf8")
  } catch {
    return undefined
  }
}

const kbField = (text: string | undefined, field: string): number | undefined => {
  const match = text === undefined ? null : new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)
  return match?.[1] === undefined ? undefined : Number(match[1]) * 1024
}

const statusField = (pid: number, field: string): number | undefined => kbField(read(`/proc/${pid}/status`), field)

/** The fields of /proc/<pid>/stat after the command name (which may contain spaces): state is [0], ppid [1]. */
const statFields = (pid: number): Array<string> | undefined => {
  const stat = read(`/proc/${pid}/stat`)
  return stat === undefined ? undefined : stat.slice(stat.lastIndexOf(")") + 2).split(" ")
}

/** Peak resident set size (VmHWM) in bytes; undefined once the process is gone. */
export const peakRss = (pid: number): number | undefined => statusField(pid, "VmHWM")

/** Current resident set size (VmRSS) in bytes. */
export const currentRss = (pid: number): number | undefined => statusField(pid, "VmRSS")

/** User + system CPU time the process has used, in milliseconds (10 ms resolution). */
export const cpuMillis = (pid: number): number | undefined => {
  const fields = statFields(pid)
  if (fields === undefined) return undefined
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond
}

/** Direct children: from /proc/<pid>/task/<tid>/children where the kernel has it, else by a scan of every ppid. */
const childrenOf = (pid: number): Array<number> => {
  try {
    const tasks = readdirSync(`/proc/${pid}/task`)
    const lists = tasks.map((tid) => read(`/proc/${pid}/task/${tid}/children`))
    if (lists.every((list) => list !== undefined)) {
      return lists.flatMap((list) => list.trim().split(/\s+/).filter((s) => s.length > 0).map(Number))
    }
  } catch {
    return []
  }
  return numericEntries().filter((candidate) => candidate !== pid && statFields(candidate)?.[1] === String(pid))
}

const numericEntries = (): Array<number> => readdirSync("/proc").filter((e) => /^\d+$/.test(e)).map(Number)

const mentions = new Map<string, { readonly at: number; readonly pids: ReadonlyArray<number> }>()

/**
 * Processes whose command line contains `text` (a server started with a unique data
 * directory in its arguments). Reading every command line costs milliseconds, so
 * the answer is reused for a second.
 */
const mentioning = (text: string): ReadonlyArray<number> => {
  const cached = mentions.get(text)
  if (cached !== undefined && performance.now() - cached.at < 1_000) return cached.pids
  const pids = numericEntries().filter((pid) =>
    pid !== process.pid && read(`/proc/${pid}/cmdline`)?.replace(/\0/g, " ").includes(text) === true
  )
  mentions.set(text, { at: performance.now(), pids })
  return pids
}

/**
 * The process and all its descendants still alive (a child database server and its
 * backends included); with `mention`, also every process whose command line contains
 * it, and their descendants: a database server that left the tree (daemonized) but
 * runs on the contender's data directory.
 */
export const tree = (pid: number, mention?: string): Array<number> => {
  const all = new Set<number>()
  const queue = [pid, ...(mention === undefined ? [] : mentioning(mention))]
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    if (all.has(next) || statFields(next) === undefined) continue
    all.add(next)
    queue.push(...childrenOf(next))
  }
  return [...all]
}

/** A process's identity (pid and start time): a pid reused by another process later does not match. */
export const identity = (pid: number): string | undefined => {
  const start = statFields(pid)?.[19]
  return start === undefined ? undefined : `${pid}@${start}`
}

const sum = (pids: ReadonlyArray<number>, of: (pid: number) => number | undefined): number =>
  pids.reduce((total, pid) => total + (of(pid) ?? 0), 0)

export interface TreeMemory {
  /** Sum of VmRSS over the tree, in bytes. */
  readonly rss: number
  /** Sum of Pss (shared pages split between their users) over the tree, in bytes: what the tree really holds. */
  readonly pss: number
  readonly processes: number
}

/** The tree's memory now. */
export const treeMemory = (pid: number, mention?: string): TreeMemory => {
  const pids = tree(pid, mention)
  return {
    rss: sum(pids, currentRss),
    pss: sum(pids, (p) => kbField(read(`/proc/${p}/smaps_rollup`), "Pss")),
    processes: pids.length
  }
}

/** User + system CPU of the tree's live processes, in milliseconds. */
export const treeCpuMillis = (pid: number, mention?: string): number | undefined =>
  statFields(pid) === undefined ? undefined : sum(tree(pid, mention), cpuMillis)

/** Samples VmRSS every `intervalMs`: the peak survives a process that dies (VmHWM does not). */
export const sampleRss = (pid: number, intervalMs = 100) => {
  let peak = 0
  const timer = setInterval(() => {
    const rss = currentRss(pid)
    if (rss !== undefined && rss > peak) peak = rss
  }, intervalMs)
  timer.unref()
  return {
    stop: (): number => {
      clearInterval(timer)
      return Math.max(peak, peakRss(pid) ?? 0)
    }
  }
}

/**
 * Samples the tree's summed VmRSS every `intervalMs`. `peak()`: the largest sample,
 * or the main process's own VmHWM if larger (a spike between samples): a lower bound
 * of the tree's true peak, exact for a single process.
 */
export const sampleTreeRss = (pid: number, intervalMs = 50, mention?: string) => {
  let peak = 0
  const sample = () => {
    const pids = tree(pid, mention)
    if (pids.length === 0) return
    const rss = sum(pids, currentRss)
    if (rss > peak) peak = rss
  }
  const timer = setInterval(sample, intervalMs)
  timer.unref()
  const peakNow = () => Math.max(peak, peakRss(pid) ?? 0)
  return {
    peak: (): number => {
      sample()
      return peakNow()
    },
    stop: (): number => {
      clearInterval(timer)
      sample()
      return peakNow()
    }
  }
}
