import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"

/** Clock ticks per second for /proc/<pid>/stat times (almost always 100). */
const ticksPerSecond = (() => {
  try {
    const ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim())
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100
  } catch {
    return 100
  }
})()

const statusField = (pid: number, field: string): number | undefined => {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match?.[1] === undefined ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

/** Peak resident set size (VmHWM) in bytes; undefined once the process is gone. */
export const peakRss = (pid: number): number | undefined => statusField(pid, "VmHWM")

/** Current resident set size (VmRSS) in bytes. */
export const currentRss = (pid: number): number | undefined => statusField(pid, "VmRSS")

/** User + system CPU time the process has used, in milliseconds (10 ms resolution). */
export const cpuMillis = (pid: number): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name, which may contain spaces, start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const user = Number(fields[11])
    const system = Number(fields[12])
    return ((user + system) * 1000) / ticksPerSecond
  } catch {
    return undefined
  }
}

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
