import { readFileSync } from "node:fs"
import * as Os from "node:os"

export interface Machine {
  readonly cpus: number
  readonly cpuModel: string
  readonly memoryGiB: number
  readonly node: string
  readonly os: string
  /** 1, 5 and 15 minute load averages when the run started: how busy the machine already was. */
  readonly loadAverage: ReadonlyArray<number>
}

const cpuModel = (): string => {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))
    return match?.[1]?.trim() ?? "unknown"
  } catch {
    return Os.cpus()[0]?.model ?? "unknown"
  }
}

export const describe = (): Machine => ({
  cpus: Os.availableParallelism(),
  cpuModel: cpuModel(),
  memoryGiB: Math.round((Os.totalmem() / 1024 ** 3) * 10) / 10,
  node: process.version,
  os: `${Os.type()} ${Os.release()} ${Os.arch()}`,
  loadAverage: Os.loadavg().map((load) => Math.round(load * 100) / 100)
})

export const toMarkdown = (machine: Machine): string =>
  [
    `- CPU: ${machine.cpuModel}, ${machine.cpus} cores (nproc)`,
    `- Memory: ${machine.memoryGiB} GiB`,
    `- Node.js ${machine.node} on ${machine.os}`,
    `- Load average when the run started: ${machine.loadAverage.join(", ")} (the machine was shared with other work)`
  ].join("\n")
