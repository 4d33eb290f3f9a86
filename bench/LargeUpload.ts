/**
 * One large upload, its body generated as it is sent (valid ASCII text, one
 * reused chunk, never the whole file in memory): throughput, the server's idle
 * RSS before it and peak RSS during it, or what went wrong, as it happened.
 */
import { Readable } from "node:stream"
import { setTimeout as sleep } from "node:timers/promises"
import { request } from "undici"
import * as Contenders from "./Contenders.js"
import type { Shared, Side } from "./Contenders.js"
import * as LoadGenerator from "./LoadGenerator.js"
import * as ProcStats from "./ProcStats.js"
import * as ServerProcess from "./ServerProcess.js"
import { mib, round } from "./Stats.js"

export interface LargeOptions {
  readonly size: number
  readonly partSize: number
  readonly timeoutMs: number
}

export interface LargeResult {
  readonly side: Side
  readonly size: number
  readonly env: Readonly<Record<string, string>>
  readonly outcome: "stored" | "refused" | "failed"
  readonly status: number | null
  /** The response body (cut to 1 KB), or the client's error. */
  readonly response: string
  readonly sentBytes: number
  readonly elapsedSeconds: number
  /** size / elapsed, in MB/s (10^6 bytes), only for a stored file. */
  readonly throughputMBps: number | null
  /** VmRSS 2 s after the server answered /healthz, before the upload. */
  readonly idleRssMiB: number
  readonly peakRssMiB: number
  /** The issue's bound: idle RSS + 2 × S3_PART_SIZE + 32 MiB. */
  readonly boundMiB: number
  readonly withinBound: boolean
  readonly serverExit: string | null
  readonly serverOutput: string
}

const CHUNK = 1024 * 1024

/** The form around `size` bytes of text, yielded chunk by chunk; `sent` counts what was handed to the socket. */
async function* body(size: number, counter: { sent: number }): AsyncGenerator<Buffer> {
  const chunk = LoadGenerator.textOf(CHUNK)
  const head = LoadGenerator.multipartHead("large.txt", "text/plain")
  yield head
  counter.sent += head.byteLength
  for (let left = size; left > 0; left -= CHUNK) {
    const piece = left >= CHUNK ? chunk : chunk.subarray(CHUNK - left)
    yield piece
    counter.sent += piece.byteLength
  }
  yield LoadGenerator.multipartTail
  counter.sent += LoadGenerator.multipartTail.byteLength
}

export const run = async (side: Side, shared: Shared, options: LargeOptions): Promise<LargeResult> => {
  const env = { UPLOAD_MAX_BYTES: String(Math.max(options.size, 2048)), S3_PART_SIZE: String(options.partSize) }
  const server = await ServerProcess.start(Contenders.spec("full", side, shared, env))
  await sleep(2_000)
  const idle = ProcStats.currentRss(server.pid) ?? Number.NaN
  const bound = idle + 2 * options.partSize + 32 * 1024 * 1024
  const rss = ProcStats.sampleRss(server.pid, 50)
  const counter = { sent: 0 }
  const length = LoadGenerator.multipartHead("large.txt", "text/plain").byteLength + options.size +
    LoadGenerator.multipartTail.byteLength
  const started = process.hrtime.bigint()
  let status: number | null = null
  let response = ""
  try {
    const answer = await request(`${server.origin}/files`, {
      method: "POST",
      headers: { ...LoadGenerator.multipartHeaders, "content-length": String(length) },
      body: Readable.from(body(options.size, counter), { objectMode: false }),
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      signal: AbortSignal.timeout(options.timeoutMs)
    })
    status = answer.statusCode
    response = (await answer.body.text()).slice(0, 1024)
  } catch (error) {
    response = error instanceof Error
      ? `${error.name}: ${error.message}${"code" in error ? ` (${String(error.code)})` : ""}`
      : String(error)
  }
  const elapsedSeconds = Number(process.hrtime.bigint() - started) / 1e9
  const peak = rss.stop()
  const died = server.child.exitCode !== null || server.child.signalCode !== null
  const serverExit = died ? `exited (${server.child.exitCode ?? server.child.signalCode})` : null
  await server.stop()
  const outcome = status === 201 ? "stored" : status !== null && status < 500 ? "refused" : "failed"
  return {
    side,
    size: options.size,
    env,
    outcome,
    status,
    response,
    sentBytes: counter.sent,
    elapsedSeconds: round(elapsedSeconds, 2),
    throughputMBps: outcome === "stored" ? round(options.size / 1e6 / elapsedSeconds, 1) : null,
    idleRssMiB: mib(idle),
    peakRssMiB: mib(peak),
    boundMiB: mib(bound),
    withinBound: peak <= bound,
    serverExit,
    serverOutput: server.output().slice(-2048)
  }
}
