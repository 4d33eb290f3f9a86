import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { createServer } from "node:net"
import { setTimeout as sleep } from "node:timers/promises"
import { request } from "undici"
import * as Cleanup from "./Cleanup.js"

export interface ServerSpec {
  readonly script: string
  /** The server's whole environment besides PATH, HOME, HOST and PORT. */
  readonly env: Readonly<Record<string, string>>
  readonly nodeArgs?: ReadonlyArray<string>
}

export interface StartOptions {
  /** Answered 200 when the server is up: /healthz (the default), or /readyz (the stores answer too). */
  readonly path?: string
  /** How often to ask, from the moment the process is spawned. */
  readonly pollMs?: number
  readonly timeoutMs?: number
  /** Called right after the spawn, with the new pid (to sample its memory from the start). */
  readonly onSpawn?: (pid: number) => void
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface RunningServer {
  readonly origin: string
  readonly pid: number
  /** From the spawn to the first 200 on the start path, in milliseconds. */
  readonly startMs: number
  readonly child: ChildProcess
  /** Everything the process wrote so far (capped). */
  readonly output: () => string
  /** Resolves when the process exits, whoever stopped it. */
  readonly exited: Promise<Exit>
  /** SIGTERM, then SIGKILL after `graceMs`. */
  readonly stop: (graceMs?: number) => Promise<Exit>
}

const MAX_OUTPUT = 64 * 1024

export const freePort = async (): Promise<number> => {
  const server = createServer()
  server.listen(0, "127.0.0.1")
  await once(server, "listening")
  const address = server.address()
  server.close()
  if (address === null || typeof address === "string") throw new Error("no port")
  return address.port
}

const answers200 = async (url: string): Promise<boolean> => {
  try {
    const response = await request(url, { headersTimeout: 2_000, bodyTimeout: 2_000 })
    await response.body.dump()
    return response.statusCode === 200
  } catch {
    return false
  }
}

/** Starts `node <script>` on a free loopback port and waits until GET /healthz (or `options.path`) answers 200. */
export const start = async (spec: ServerSpec, options: StartOptions = {}): Promise<RunningServer> => {
  const { path = "/healthz", pollMs = 50, timeoutMs: startTimeoutMs = 60_000 } = options
  const port = await freePort()
  const origin = `http://127.0.0.1:${port}`
  const spawned = performance.now()
  const child = spawn(process.execPath, [...(spec.nodeArgs ?? []), spec.script], {
    env: {
      PATH: process.env["PATH"] ?? "",
      HOME: process.env["HOME"] ?? "",
      ...spec.env,
      HOST: "127.0.0.1",
      PORT: String(port)
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  const collect = (chunk: Buffer) => {
    if (output.length < MAX_OUTPUT) output += chunk.toString("utf8")
  }
  child.stdout?.on("data", collect)
  child.stderr?.on("data", collect)
  const exited = new Promise<Exit>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
  const pid = child.pid
  if (pid === undefined) throw new Error(`could not start ${spec.script}`)
  options.onSpawn?.(pid)

  const terminate = async (graceMs: number): Promise<Exit> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
      const exit = await exited
      clearTimeout(timer)
      return exit
    }
    return exited
  }
  const unregister = Cleanup.register(() => terminate(2_000))
  const stop = async (graceMs = 15_000): Promise<Exit> => {
    const exit = await terminate(graceMs)
    await unregister()
    return exit
  }

  const deadline = Date.now() + startTimeoutMs
  while (!(await answers200(`${origin}${path}`))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${spec.script} exited (${child.exitCode ?? child.signalCode}) before answering:\n${output}`)
    }
    if (Date.now() > deadline) {
      await stop(1_000)
      throw new Error(`${spec.script} did not answer ${path} in ${startTimeoutMs} ms:\n${output}`)
    }
    await sleep(pollMs)
  }
  const startMs = performance.now() - spawned
  return { origin, pid, startMs, child, output: () => output, exited, stop }
}
