/**
 * One large file sent to tandem two ways: one multipart POST /files, and a tus 1.0
 * upload at /uploads in sequential PATCHes of a fixed size, as a client sends it.
 * Each trial runs on a fresh server process (the same kind as --large: PostgreSQL +
 * s3rver, `node dist/bin/serve.js`): throughput, the server's idle and peak RSS, the
 * CPU the server, s3rver and the server's PostgreSQL backends spent, the WAL written,
 * and for tus what went through PostgreSQL's `resumable_tail`. Every upload is
 * checked (GET /files/{id}: size and sha256) and deleted.
 */
import { createSHA256 } from "hash-wasm"
import { createCipheriv, createHash } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import { Readable } from "node:stream"
import { setTimeout as sleep } from "node:timers/promises"
import { request } from "undici"
import * as Contenders from "./Contenders.js"
import type { Shared } from "./Contenders.js"
import * as LoadGenerator from "./LoadGenerator.js"
import * as Pg from "./Pg.js"
import * as ProcStats from "./ProcStats.js"
import * as ServerProcess from "./ServerProcess.js"
import { median, mib, round } from "./Stats.js"

export interface ResumableOptions {
  readonly size: number
  readonly partSize: number
  /** One tus row per size, in this order. */
  readonly patchSizes: ReadonlyArray<number>
  readonly reps: number
  readonly timeoutMs: number
}

/** POST: one multipart POST /files; tus: POST /uploads, then PATCHes of `patchBytes`. */
export type Way = { readonly kind: "post" } | { readonly kind: "tus"; readonly patchBytes: number }

export const labelOf = (way: Way): string =>
  way.kind === "post" ? "POST /files" : `tus in ${formatBytes(way.patchBytes)} PATCHes`

export const formatBytes = (bytes: number): string =>
  bytes % 1024 ** 3 === 0
    ? `${bytes / 1024 ** 3} GiB`
    : bytes % 1024 ** 2 === 0
    ? `${bytes / 1024 ** 2} MiB`
    : bytes % 1024 === 0
    ? `${bytes / 1024} KiB`
    : `${bytes} B`

export interface Trial {
  readonly label: string
  readonly way: Way
  readonly rep: number
  readonly outcome: "verified" | "failed"
  /** What went wrong, if it did. */
  readonly error: string | null
  /** HTTP requests the upload took (tus: the creation and every PATCH). */
  readonly requests: number
  /** From the first byte sent to the last answer; tus: the tail probes between PATCHes left out. */
  readonly elapsedSeconds: number
  readonly throughputMiBps: number | null
  /** VmRSS of the server's process tree 2 s after /healthz answered, before the upload. */
  readonly idleRssMiB: number
  /** The largest VmRSS of the tree sampled every 50 ms during the upload (or the process's VmHWM if larger). */
  readonly peakRssMiB: number
  readonly serverCpuSeconds: number
  readonly s3rverCpuSeconds: number
  /** The PostgreSQL backends of the benchmark's database (the server's pool), sampled every 200 ms. */
  readonly postgresCpuSeconds: number
  /** pg_wal_lsn_diff over the upload: the whole PostgreSQL cluster's WAL, not only this database's. */
  readonly walMiB: number
  /** tus: bytes the PATCHes left in resumable_tail (written to PostgreSQL), and read back when a part or the object is cut. */
  readonly tailWrittenMiB: number | null
  readonly tailReadMiB: number | null
  readonly fileId: string | null
  readonly sha256: string | null
  readonly deleted: boolean
  readonly serverOutput: string
}

export interface Summary {
  readonly label: string
  readonly way: Way
  readonly runs: number
  readonly verified: number
  readonly requests: number
  readonly elapsedSeconds: number
  readonly throughputMiBps: number
  readonly idleRssMiB: number
  readonly peakRssMiB: number
  /** Median of each trial's peak − idle. */
  readonly peakOverIdleMiB: number
  readonly serverCpuSeconds: number
  readonly s3rverCpuSeconds: number
  readonly postgresCpuSeconds: number
  readonly walMiB: number
  readonly tailWrittenMiB: number | null
  readonly tailReadMiB: number | null
}

export interface HashSpeed {
  readonly name: string
  /** Median of 3 runs over the upload's bytes in 64 KiB updates. */
  readonly seconds: number
  readonly MiBps: number
}

// ---------------------------------------------------------------------------
// The content: deterministic, valid UTF-8 (ASCII), incompressible enough that
// PostgreSQL's TOAST compression does not shrink the tail (the worst case for it).

const CHUNK = 1024 * 1024
const POOL_CHUNKS = 16
const ALPHABET = Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", "ascii")
const NEWLINE = 0x0a

/**
 * 16 distinct 1 MiB chunks of 64-symbol text in 64-byte lines, from AES-128-CTR over
 * zeros with a fixed key (about 20 ms); the content at byte n is chunk ⌊n / 1 MiB⌋ mod 16.
 */
const makePool = (): ReadonlyArray<Buffer> => {
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16, 0))
  return Array.from({ length: POOL_CHUNKS }, () => {
    const random = cipher.update(Buffer.alloc(CHUNK))
    const text = Buffer.allocUnsafe(CHUNK)
    for (let i = 0; i < CHUNK; i++) {
      text[i] = (i & 63) === 63 ? NEWLINE : (ALPHABET[(random[i] ?? 0) & 63] ?? NEWLINE)
    }
    return text
  })
}

let pool: ReadonlyArray<Buffer> | undefined
const contentPool = (): ReadonlyArray<Buffer> => (pool ??= makePool())

/** The content's bytes [from, to), as views of the pool's chunks (nothing copied). */
export function* pieces(from: number, to: number): Generator<Buffer> {
  const chunks = contentPool()
  for (let at = from; at < to;) {
    const index = Math.floor(at / CHUNK)
    const within = at - index * CHUNK
    const end = Math.min(CHUNK, within + (to - at))
    const chunk = chunks[index % POOL_CHUNKS]
    if (chunk === undefined) throw new Error("no chunk")
    yield chunk.subarray(within, end)
    at += end - within
  }
}

/** 64 KiB updates, as a socket delivers them. */
function* socketPieces(size: number): Generator<Buffer> {
  for (const piece of pieces(0, size)) {
    for (let at = 0; at < piece.byteLength; at += 65536) yield piece.subarray(at, at + 65536)
  }
}

export const expectedSha256 = (size: number): string => {
  const hash = createHash("sha256")
  for (const piece of pieces(0, size)) hash.update(piece)
  return hash.digest("hex")
}

/** SHA-256 of the upload's bytes in this process: node:crypto (POST /files) against hash-wasm (tus). */
export const hashSpeeds = async (size: number): Promise<ReadonlyArray<HashSpeed>> => {
  const time = async (run: () => Promise<string> | string): Promise<number> => {
    const started = process.hrtime.bigint()
    await run()
    return Number(process.hrtime.bigint() - started) / 1e9
  }
  const runs: Record<string, () => Promise<string> | string> = {
    "node:crypto createHash (POST /files)": () => {
      const hash = createHash("sha256")
      for (const piece of socketPieces(size)) hash.update(piece)
      return hash.digest("hex")
    },
    "hash-wasm createSHA256 (tus)": async () => {
      const hash = await createSHA256()
      for (const piece of socketPieces(size)) hash.update(piece)
      return hash.digest("hex")
    }
  }
  const speeds: Array<HashSpeed> = []
  for (const [name, run] of Object.entries(runs)) {
    const seconds: Array<number> = []
    for (let i = 0; i < 3; i++) seconds.push(await time(run))
    const middle = median(seconds)
    speeds.push({ name, seconds: round(middle, 3), MiBps: round(size / 1024 ** 2 / middle, 0) })
  }
  return speeds
}

// ---------------------------------------------------------------------------
// PostgreSQL: the tail, the server's backends' CPU, the WAL.

const readText = (file: string): string | undefined => {
  try {
    return readFileSync(file, "utf8")
  } catch {
    return undefined
  }
}

/** Backends of `database` (their process title names it), but not `except` (the benchmark's own probe). */
const backendsOf = (database: string, except: number): Array<number> =>
  readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) => {
    if (pid === except) return false
    const title = readText(`/proc/${pid}/cmdline`)
    return title !== undefined && title.startsWith("postgres: ") && title.includes(` ${database} `)
  })

/**
 * CPU of a database's backends, sampled every `intervalMs`: a backend that exits
 * counts up to its last sample; one already running counts from the first.
 */
const sampleBackendCpu = (database: string, except: number, intervalMs = 200) => {
  const first = new Map<number, number>()
  const last = new Map<number, number>()
  const sample = (starting: boolean) => {
    for (const pid of backendsOf(database, except)) {
      const cpu = ProcStats.cpuMillis(pid)
      if (cpu === undefined) continue
      // The backends alive now count from now; later ones from their start.
      if (!first.has(pid)) first.set(pid, starting ? cpu : 0)
      last.set(pid, cpu)
    }
  }
  sample(true)
  const timer = setInterval(() => sample(false), intervalMs)
  timer.unref()
  return {
    stop: (): number => {
      clearInterval(timer)
      sample(false)
      let total = 0
      for (const [pid, cpu] of last) total += cpu - (first.get(pid) ?? 0)
      return total
    }
  }
}

interface Probe {
  readonly backendPid: number
  readonly walLsn: () => Promise<string>
  readonly walDiff: (from: string) => Promise<number>
  /** The upload's tail now: every byte of it, and the bytes of rows at or after `from` (what the last PATCH wrote). */
  readonly tail: (id: string, from: number) => Promise<{ readonly total: number; readonly written: number }>
  readonly end: () => Promise<void>
}

const asNumber = (value: unknown): number => Number(value ?? 0)

const openProbe = async (url: string): Promise<Probe> => {
  const db = Pg.pool(url, 1, { idleTimeoutMillis: 0 })
  const client = await db.connect()
  const pidRows = await client.query("SELECT pg_backend_pid() AS pid")
  return {
    backendPid: asNumber(pidRows.rows[0]?.["pid"]),
    walLsn: async () => String((await client.query("SELECT pg_current_wal_lsn() AS lsn")).rows[0]?.["lsn"]),
    walDiff: async (from) =>
      asNumber(
        (await client.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1) AS bytes", [from])).rows[0]?.[
          "bytes"
        ]
      ),
    tail: async (id, from) => {
      const { rows } = await client.query(
        `SELECT coalesce(sum(octet_length(bytes)), 0) AS total,
                coalesce(sum(octet_length(bytes)) FILTER (WHERE at >= $2), 0) AS written
         FROM resumable_tail WHERE file_id = $1`,
        [id, from]
      )
      return { total: asNumber(rows[0]?.["total"]), written: asNumber(rows[0]?.["written"]) }
    },
    end: async () => {
      client.release()
      await db.end()
    }
  }
}

// ---------------------------------------------------------------------------
// The uploads.

const describeError = (error: unknown): string =>
  error instanceof Error
    ? `${error.name}: ${error.message}${"code" in error ? ` (${String(error.code)})` : ""}`
    : String(error)

class UploadFailed extends Error {}

const base64 = (text: string) => Buffer.from(text, "utf8").toString("base64")
const TUS = { "tus-resumable": "1.0.0" }

interface Sent {
  readonly fileId: string
  readonly requests: number
  /** Time spent probing between PATCHes, to leave out of the upload's time. */
  readonly probeSeconds: number
  readonly tailWritten: number | null
  readonly tailRead: number | null
}

const answerText = async (body: { text: () => Promise<string> }): Promise<string> => (await body.text()).slice(0, 512)

const post = async (origin: string, size: number, signal: AbortSignal): Promise<Sent> => {
  const head = LoadGenerator.multipartHead("resumable-bench.txt", "text/plain")
  const length = head.byteLength + size + LoadGenerator.multipartTail.byteLength
  async function* body(): AsyncGenerator<Buffer> {
    yield head
    yield* pieces(0, size)
    yield LoadGenerator.multipartTail
  }
  const answer = await request(`${origin}/files`, {
    method: "POST",
    headers: { ...LoadGenerator.multipartHeaders, "content-length": String(length) },
    body: Readable.from(body(), { objectMode: false }),
    signal
  })
  const text = await answerText(answer.body)
  if (answer.statusCode !== 201) throw new UploadFailed(`POST /files: ${answer.statusCode} ${text}`)
  const parsed: unknown = JSON.parse(text)
  if (typeof parsed !== "object" || parsed === null || !("id" in parsed) || typeof parsed.id !== "string") {
    throw new UploadFailed(`POST /files: no id in ${text}`)
  }
  return { fileId: parsed.id, requests: 1, probeSeconds: 0, tailWritten: null, tailRead: null }
}

const header = (headers: Record<string, string | Array<string> | undefined>, name: string): string | undefined => {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

const tus = async (
  origin: string,
  size: number,
  patchBytes: number,
  partSize: number,
  probe: Probe,
  signal: AbortSignal
): Promise<Sent> => {
  const created = await request(`${origin}/uploads`, {
    method: "POST",
    headers: {
      ...TUS,
      "upload-length": String(size),
      "upload-metadata": `filename ${base64("resumable-bench.txt")},filetype ${base64("text/plain")}`
    },
    signal
  })
  const createdText = await answerText(created.body)
  const location = header(created.headers, "location")
  if (created.statusCode !== 201 || location === undefined) {
    throw new UploadFailed(`POST /uploads: ${created.statusCode} ${createdText}`)
  }
  const uploadId = location.split("/").pop() ?? ""
  let requests = 1
  let probeSeconds = 0
  let tailWritten = 0
  let tailRead = 0
  let tailBefore = 0
  let fileLocation: string | undefined
  for (let offset = 0; offset < size;) {
    const end = Math.min(size, offset + patchBytes)
    const parts = [...pieces(offset, end)]
    const answer = await request(`${origin}${location}`, {
      method: "PATCH",
      headers: {
        ...TUS,
        "content-type": "application/offset+octet-stream",
        "upload-offset": String(offset),
        "content-length": String(end - offset)
      },
      body: parts.length === 1 && parts[0] !== undefined ? parts[0] : Readable.from(parts, { objectMode: false }),
      signal
    })
    const text = await answerText(answer.body)
    requests++
    // The server reads the tail back only when this PATCH completes a part or the object.
    if (end === size || Math.floor(end / partSize) > Math.floor(offset / partSize)) tailRead += tailBefore
    if (answer.statusCode !== 204 || header(answer.headers, "upload-offset") !== String(end)) {
      throw new UploadFailed(
        `PATCH at ${offset}: ${answer.statusCode}, Upload-Offset ${header(answer.headers, "upload-offset")} ${text}`
      )
    }
    if (end < size) {
      // What this PATCH left in PostgreSQL (untimed).
      const started = process.hrtime.bigint()
      const tail = await probe.tail(uploadId, offset)
      tailWritten += tail.written
      tailBefore = tail.total
      probeSeconds += Number(process.hrtime.bigint() - started) / 1e9
    } else {
      fileLocation = header(answer.headers, "location")
    }
    offset = end
  }
  const fileId = fileLocation?.split("/").pop()
  if (fileLocation !== `/files/${fileId}` || fileId === undefined) {
    throw new UploadFailed(`the last PATCH named no file: Location ${fileLocation}`)
  }
  return { fileId, requests, probeSeconds, tailWritten, tailRead }
}

/** GET /files/{id}: the size and sha256 must be the content's. */
const verify = async (origin: string, id: string, size: number, sha256: string): Promise<void> => {
  const answer = await request(`${origin}/files/${id}`)
  const text = await answer.body.text()
  if (answer.statusCode !== 200) throw new UploadFailed(`GET /files/${id}: ${answer.statusCode} ${text.slice(0, 512)}`)
  const parsed: unknown = JSON.parse(text)
  const matches = typeof parsed === "object" && parsed !== null && "size" in parsed && "sha256" in parsed &&
    parsed.size === size && parsed.sha256 === sha256
  if (!matches) {
    throw new UploadFailed(`GET /files/${id}: expected size ${size} and sha256 ${sha256}, got ${text.slice(0, 512)}`)
  }
}

const remove = async (origin: string, id: string): Promise<boolean> => {
  const answer = await request(`${origin}/files/${id}`, { method: "DELETE" })
  await answer.body.dump()
  return answer.statusCode === 204
}

/** One upload on a fresh server. */
export const trial = async (
  way: Way,
  rep: number,
  shared: Shared,
  options: ResumableOptions,
  sha256: string
): Promise<Trial> => {
  const env = {
    UPLOAD_MAX_BYTES: String(Math.max(options.size, 2048)),
    S3_PART_SIZE: String(options.partSize)
  }
  const probe = await openProbe(shared.database.url)
  const server = await ServerProcess.start(Contenders.spec("full", "tandem", shared, env))
  try {
    await sleep(2_000)
    const idle = ProcStats.treeMemory(server.pid).rss
    const rss = ProcStats.sampleTreeRss(server.pid, 50)
    const serverCpu = ProcStats.treeCpuMillis(server.pid) ?? 0
    const s3rverCpu = ProcStats.cpuMillis(shared.s3.pid) ?? 0
    const postgresCpu = sampleBackendCpu(shared.database.name, probe.backendPid)
    const wal = await probe.walLsn()
    const signal = AbortSignal.timeout(options.timeoutMs)
    const started = process.hrtime.bigint()
    let sent: Sent | undefined
    let error: string | null = null
    try {
      sent = way.kind === "post"
        ? await post(server.origin, options.size, signal)
        : await tus(server.origin, options.size, way.patchBytes, options.partSize, probe, signal)
    } catch (cause) {
      error = describeError(cause)
    }
    const elapsedSeconds = Number(process.hrtime.bigint() - started) / 1e9 - (sent?.probeSeconds ?? 0)
    const peak = rss.stop()
    const serverCpuMs = (ProcStats.treeCpuMillis(server.pid) ?? serverCpu) - serverCpu
    const s3rverCpuMs = (ProcStats.cpuMillis(shared.s3.pid) ?? s3rverCpu) - s3rverCpu
    const postgresCpuMs = postgresCpu.stop()
    const walBytes = await probe.walDiff(wal)
    let deleted = false
    if (sent !== undefined && error === null) {
      try {
        await verify(server.origin, sent.fileId, options.size, sha256)
      } catch (cause) {
        error = describeError(cause)
      }
      deleted = await remove(server.origin, sent.fileId).catch(() => false)
    }
    const verified = error === null && sent !== undefined
    return {
      label: labelOf(way),
      way,
      rep,
      outcome: verified ? "verified" : "failed",
      error,
      requests: sent?.requests ?? 0,
      elapsedSeconds: round(elapsedSeconds, 2),
      throughputMiBps: verified ? round(options.size / 1024 ** 2 / elapsedSeconds, 1) : null,
      idleRssMiB: mib(idle),
      peakRssMiB: mib(peak),
      serverCpuSeconds: round(serverCpuMs / 1000, 2),
      s3rverCpuSeconds: round(s3rverCpuMs / 1000, 2),
      postgresCpuSeconds: round(postgresCpuMs / 1000, 2),
      walMiB: mib(walBytes),
      tailWrittenMiB: sent === undefined || sent.tailWritten === null ? null : mib(sent.tailWritten),
      tailReadMiB: sent === undefined || sent.tailRead === null ? null : mib(sent.tailRead),
      fileId: sent?.fileId ?? null,
      sha256: verified ? sha256 : null,
      deleted,
      serverOutput: server.output().slice(-2048)
    }
  } finally {
    await server.stop()
    await probe.end()
  }
}

export const waysOf = (options: ResumableOptions): ReadonlyArray<Way> => [
  { kind: "post" },
  ...options.patchSizes.map((patchBytes): Way => ({ kind: "tus", patchBytes }))
]

/** Medians by way, over the trials that verified (all of them, if none did). */
export const summarize = (trials: ReadonlyArray<Trial>, ways: ReadonlyArray<Way>): ReadonlyArray<Summary> =>
  ways.map((way) => {
    const label = labelOf(way)
    const all = trials.filter((t) => t.label === label)
    const good = all.filter((t) => t.outcome === "verified")
    const of = good.length > 0 ? good : all
    const med = (pick: (t: Trial) => number) => round(median(of.map(pick)), 2)
    const medOrNull = (pick: (t: Trial) => number | null): number | null => {
      const values = of.map(pick).filter((v): v is number => v !== null)
      return values.length === 0 ? null : round(median(values), 1)
    }
    return {
      label,
      way,
      runs: all.length,
      verified: good.length,
      requests: med((t) => t.requests),
      elapsedSeconds: med((t) => t.elapsedSeconds),
      throughputMiBps: good.length === 0 ? Number.NaN : round(median(good.map((t) => t.throughputMiBps ?? 0)), 1),
      idleRssMiB: med((t) => t.idleRssMiB),
      peakRssMiB: med((t) => t.peakRssMiB),
      peakOverIdleMiB: med((t) => t.peakRssMiB - t.idleRssMiB),
      serverCpuSeconds: med((t) => t.serverCpuSeconds),
      s3rverCpuSeconds: med((t) => t.s3rverCpuSeconds),
      postgresCpuSeconds: med((t) => t.postgresCpuSeconds),
      walMiB: med((t) => t.walMiB),
      tailWrittenMiB: medOrNull((t) => t.tailWrittenMiB),
      tailReadMiB: medOrNull((t) => t.tailReadMiB)
    }
  })
