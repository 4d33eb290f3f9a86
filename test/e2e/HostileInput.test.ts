/**
 * Hostile input, fuzzed: whole raw HTTP requests (test/support/HostileRequests.ts),
 * written over raw TCP sockets to the built server as `npm start` runs it, with a
 * small upload policy so that valid uploads happen among the garbage, and short
 * header and idle timeouts so that stalled senders are dropped quickly.
 *
 * Per request: never a 5xx (LANES = 8 senders stay far below MAX_CONCURRENT_UPLOADS,
 * so not even a 503 ServerBusy is due; the one exception is s3rver's, see Tolerated),
 * and an answer or a closed socket within a bound. Per run: the server logs no error
 * but those exceptions' (nothing a client sends is the server's error), the process
 * never dies (`/healthz` still 200, the child still running); then, the server
 * stopped, one `npm run reconcile` pass with no grace
 * period leaves no intent (pending or otherwise), no orphan (`--dry-run`:
 * "consistent", and the stores read directly agree), and every file the API lists
 * has its object with the recorded size and sha256 (G1), every file acknowledged
 * with a 201 among them (G3), and every upload a tus PATCH acknowledged as finished.
 *
 * About one request in six speaks tus (`/uploads`): creations, PATCHes to the seed
 * uploads (kept alive: one that is gone is made again before a request names it) and
 * to garbage, HEAD, DELETE, OPTIONS. An upload the fuzz left unfinished is a live
 * intent, no leak, until TUS_EXPIRY_SECONDS (short here) passes: the test waits that
 * long after the server stops, then the one reconcile pass must leave no pending
 * row, no resumable_uploads or resumable_tail row and no object but the files'.
 *
 * Against the embedded default (the embedded PostgreSQL and the local disk store) and, with
 * TEST_DATABASE_URL, PostgreSQL and s3rver. FUZZ_SEED (fixed by default) seeds
 * fast-check, lane i with FUZZ_SEED + i (PostgreSQL's lanes FUZZ_SEED + 8 + i);
 * FUZZ_REQUESTS (default 1,000) per backend; FUZZ_VERBOSE=1 prints one line per
 * request, FUZZ_VERBOSE=2 its head too. A failure names its lane's seed and the
 * shrunk request, with `{id:K}`-style placeholders (test/support/HostileRequests.ts).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import {
  Console,
  Duration,
  Effect,
  Exit,
  FastCheck as fc,
  Fiber,
  Layer,
  Option,
  Redacted,
  Schema,
  Stream
} from "effect"
import { type ChildProcess, execFile } from "node:child_process"
import { createHash } from "node:crypto"
import * as Path from "node:path"
import * as EmbeddedDatabase from "../../src/adapters/database/EmbeddedDatabase.js"
import * as PgTransaction from "../../src/adapters/database/PgTransaction.js"
import * as PostgresDatabase from "../../src/adapters/database/PostgresDatabase.js"
import * as LocalDiskObjectStore from "../../src/adapters/objects/LocalDiskObjectStore.js"
import * as S3ObjectStore from "../../src/adapters/objects/S3ObjectStore.js"
import { markerKeyFor } from "../../src/app/StoreBinding.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import {
  type HostileRequest,
  hostileRequest,
  render,
  SEED_FILES,
  type Seeds,
  type SeedUpload,
  seedUploadShapes,
  textOf,
  uploadsNamed
} from "../support/HostileRequests.js"
import { request, textOfSize, upload } from "../support/Http.js"
import { exchange, type Outcome, type RawResponse } from "../support/RawHttpClient.js"
import * as S3TestServer from "../support/S3TestServer.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as TempDirectory from "../support/TempDirectory.js"
import * as TestDatabase from "../support/TestDatabase.js"

const intFromEnv = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? "")
  return (process.env[name] ?? "") !== "" && Number.isSafeInteger(value) ? value : fallback
}

const SEED = intFromEnv("FUZZ_SEED", 20_250_611)
const REQUESTS = intFromEnv("FUZZ_REQUESTS", 1_000)
/** FUZZ_VERBOSE=1: one line per request (what was sent, what came back); 2: its head too. */
const VERBOSE = intFromEnv("FUZZ_VERBOSE", 0)
/** Requests in flight at once: one fast-check property per lane, each sequential. */
const LANES = 8
/** After its last byte, a request is answered or its socket closed by then, or it hangs. */
const DEADLINE_MS = 10_000
/** After an answer on a connection kept alive: how long to wait for a second (pipelined) one. */
const LINGER_MS = 100

/** How long a resumable upload lives idle: short, so that the test can wait for every one to expire. */
const TUS_EXPIRY_SECONDS = 3

/**
 * The server's settings: the default policy (512-2048 bytes, text/plain, .txt), short timeouts, no reconciler,
 * resumable uploads that expire within seconds.
 */
const serverEnv = {
  TUS_EXPIRY_SECONDS: String(TUS_EXPIRY_SECONDS),
  UPLOAD_MIN_BYTES: "512",
  UPLOAD_MAX_BYTES: "2048",
  UPLOAD_CONTENT_TYPES: "text/plain",
  UPLOAD_EXTENSIONS: "txt",
  HTTP_HEADERS_TIMEOUT_SECONDS: "2",
  HTTP_IDLE_TIMEOUT_SECONDS: "2",
  RECONCILE_INTERVAL_SECONDS: "0",
  // LANES senders never reach it: a 503 ServerBusy would be a defect here too.
  MAX_CONCURRENT_UPLOADS: "64"
}

/** What the fuzz saw, across lanes. */
class Tally {
  sent = 0
  answered = 0
  closedWithoutAnswer = 0
  destroyedByClient = 0
  hangs = 0
  slowestMs = 0
  readonly statuses = new Map<number, number>()
  /** 5xx answers the test server is to blame for, by reason (see Tolerated). */
  readonly tolerated = new Map<string, number>()
  /** Files acknowledged with a 201, by id: G3 says each is listed at the end. */
  readonly created = new Map<string, { readonly size: number; readonly sha256: string }>()
  /** Requests to /uploads. */
  tus = 0
  /** Files a tus request was told its upload became (201 or 204 with `Location: /files/{id}`): listed at the end too. */
  readonly finishedUploads = new Set<string>()

  record(outcome: Outcome, tus: boolean) {
    this.sent += 1
    if (tus) this.tus += 1
    this.slowestMs = Math.max(this.slowestMs, outcome.elapsedMs)
    switch (outcome.ending) {
      case "answered":
        this.answered += 1
        break
      case "closed":
        this.closedWithoutAnswer += 1
        break
      case "destroyed":
        this.destroyedByClient += 1
        break
      case "hang":
        this.hangs += 1
        break
    }
    for (const response of outcome.responses) {
      this.statuses.set(response.status, (this.statuses.get(response.status) ?? 0) + 1)
      if (response.status === 201) {
        const created = decodeCreated(response.body.toString("utf8"))
        if (Option.isSome(created)) this.created.set(created.value.id, created.value)
      }
      const file = /^\/files\/([0-9a-f-]{36})$/.exec(response.headers["location"] ?? "")?.[1]
      if (tus && (response.status === 201 || response.status === 204) && file !== undefined) {
        this.finishedUploads.add(file)
      }
    }
  }

  summary(backend: Backend, elapsedMs: number, seedUploadsMadeAgain: number): string {
    const statuses = [...this.statuses.entries()].sort(([a], [b]) => a - b).map(([status, n]) => `${status}: ${n}`)
    return [
      `hostile input on ${backend.name}: ${this.sent} requests in ${(elapsedMs / 1000).toFixed(1)} s ` +
      `(${LANES} lanes seeded ${backend.seed}-${backend.seed + LANES - 1}, ` +
      `slowest exchange ${(this.slowestMs / 1000).toFixed(2)} s)`,
      `  answered ${this.answered}, closed by the server without an answer ${this.closedWithoutAnswer}, ` +
      `given up by the client (stalls) ${this.destroyedByClient}, hangs ${this.hangs}`,
      `  statuses: ${statuses.join(", ")}`,
      ...[...this.tolerated.entries()].map(([reason, n]) => `  tolerated ${n}: ${reason}`),
      `  files acknowledged with 201: ${this.created.size}`,
      `  tus (/uploads): ${this.tus} requests, ${this.finishedUploads.size} uploads finished as files, ` +
      `${seedUploadsMadeAgain} seed uploads made again (finished, terminated or expired)`
    ].join("\n")
  }
}

const Created = Schema.parseJson(Schema.Struct({ id: Schema.String, size: Schema.Number, sha256: Schema.String }))
const decodeCreated = Schema.decodeUnknownOption(Created)

const Listed = Schema.Struct({ id: Schema.String, size: Schema.Number, sha256: Schema.String })
const Page = Schema.Struct({ items: Schema.Array(Listed), nextCursor: Schema.NullOr(Schema.String) })
const decodePage = Schema.decodeUnknownSync(Page)
const decodeLink = Schema.decodeUnknownSync(Schema.Struct({ url: Schema.String }))

/**
 * A 5xx the test server is to blame for, not tandem: its reason, or undefined.
 * s3rver 3.7 reads `Range: bytes=0-0` as the whole object (`options.end || Infinity`);
 * tandem sees a Content-Range other than the one it asked for and refuses to serve it
 * (503 ObjectStoreUnavailable), as it should. The contract suite marks the same
 * (test/ObjectBackend.contract.test.ts, firstByteOnly); AWS S3 reads that range right.
 */
type Tolerated = (request: HostileRequest, response: RawResponse) => string | undefined

const nothingTolerated: Tolerated = () => undefined

const s3rverFirstByte: Tolerated = (request, response) => {
  const range = request.headers.map(textOf).map((line) => /^range:(.*)$/is.exec(line)?.[1]?.trim())
    .find((value) => value !== undefined)
  return response.status === 503 && response.body.toString("utf8").includes("\"ObjectStoreUnavailable\"") &&
      range !== undefined && /^bytes=0+-0+$/.test(range)
    ? "s3rver reads Range: bytes=0-0 as the whole object; tandem refuses the mismatch (503)"
    : undefined
}

/** What is wrong with one exchange, if anything. */
const problemsOf = (hostile: HostileRequest, outcome: Outcome, tolerated: Tolerated): ReadonlyArray<string> => [
  ...outcome.responses.filter((response) => response.status >= 500 && tolerated(hostile, response) === undefined)
    .map((response) => `${response.status} ${response.body.toString("utf8").slice(0, 300)}`),
  ...(outcome.ending === "hang" ? [`no answer and no close within ${DEADLINE_MS} ms`] : [])
]

/** Whether a request goes to tus's routes. */
const isTus = (hostile: HostileRequest) => /^(?:https?:\/\/[^/]*)?\/+uploads/i.test(textOf(hostile.target))

/** Sends one request and checks it; thrown failures are what fast-check shrinks. */
const check = (port: number, seeds: Seeds, uploads: SeedUploads, tally: Tally, tolerated: Tolerated) =>
async (
  hostile: HostileRequest
) => {
  // The seed uploads it names, as they are now (and made again if gone).
  const named = uploadsNamed(hostile)
  if (named.length > 0) await uploads.refresh(named)
  const bytes = render(hostile, { ...seeds, uploads: [...uploads.uploads], gone: [...uploads.gone] })
  const outcome = await Effect.runPromise(exchange({
    port,
    bytes,
    delivery: hostile.delivery,
    head: hostile.method === "HEAD",
    deadlineMs: DEADLINE_MS,
    lingerMs: LINGER_MS
  }))
  tally.record(outcome, isTus(hostile))
  for (const response of outcome.responses) {
    const reason = tolerated(hostile, response)
    if (reason !== undefined) tally.tolerated.set(reason, (tally.tolerated.get(reason) ?? 0) + 1)
  }
  if (VERBOSE > 0) {
    console.log(
      `${outcome.ending} ${outcome.responses.map((r) => r.status).join(",") || "-"} ${outcome.elapsedMs | 0}ms ` +
        `${JSON.stringify(hostile.method)} ${JSON.stringify(textOf(hostile.target).slice(0, 80))} ` +
        `${hostile.body._tag} ${hostile.framing._tag}${
          hostile.framing._tag === "Hostile" ? JSON.stringify(hostile.framing.lines) : ""
        } ${hostile.delivery._tag} ${
          outcome.responses.map((r) => r.body.toString("utf8").slice(0, 160)).join(" | ").replace(/\s+/g, " ")
        }`
    )
    if (VERBOSE > 1) {
      console.log(
        `  head: ${JSON.stringify(Buffer.from(bytes).toString("latin1").split("\r\n\r\n")[0]?.slice(0, 600))}`
      )
    }
  }
  const problems = problemsOf(hostile, outcome, tolerated)
  if (problems.length > 0) {
    throw new Error(`${problems.join("; ")} (statuses ${outcome.responses.map((r) => r.status).join(",")})`)
  }
}

/** The runs lane `index` makes so that the lanes make REQUESTS in all. */
const runsOf = (index: number) => Math.floor(REQUESTS / LANES) + (index < REQUESTS % LANES ? 1 : 0)

/** Seed files the requests name (`{id:K}`, `{etag:K}`): hostile names, all valid. */
const seedNames = [
  "seed.txt",
  "e\u0301te\u0301.txt",
  "日本語.txt",
  "a'b (1);%41.txt",
  "🙂 smile.TXT",
  "C:\\fakepath\\notes.txt"
] as const

const uploadSeed = (base: string, k: number) =>
  Effect.gen(function*() {
    const bytes = textOfSize(600 + 97 * k, "héllo wörld ")
    const created = yield* upload(base, seedNames[k % seedNames.length] ?? "seed.txt", "text/plain", bytes)
    expect(created.status).toBe(201)
    return Option.getOrThrow(decodeCreated(new TextDecoder().decode(created.bytes)))
  })

/** The seed files the requests read, as many that DELETEs take, and a real cursor. */
const uploadSeeds = (base: string) =>
  Effect.gen(function*() {
    const seeds = yield* Effect.forEach(Array.from({ length: SEED_FILES }, (_, k) => k), (k) => uploadSeed(base, k))
    const victims = yield* Effect.forEach(
      Array.from({ length: SEED_FILES }, (_, k) => k),
      (k) => uploadSeed(base, SEED_FILES + k)
    )
    const page = decodePage((yield* request(`${base}/files?limit=2`)).json)
    const first = seeds[0]?.id ?? ""
    const link = yield* request(`${base}/files/${first}/links`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ expiresInSeconds: 3600 })
    })
    expect(link.status).toBe(201)
    return {
      ids: seeds.map((record) => record.id),
      etags: seeds.map((record) => `"${record.sha256}"`),
      victims: victims.map((record) => record.id),
      cursor: page.nextCursor ?? "",
      link: decodeLink(link.json).url,
      uploads: [],
      gone: []
    } satisfies Seeds
  })

const TUS = { "tus-resumable": "1.0.0" }
const base64 = (text: string) => Buffer.from(text, "utf8").toString("base64")

/** Seed upload `k`, made as a tus client makes it: created, then its first bytes (ASCII) sent. */
const createSeedUpload = async (base: string, k: number): Promise<SeedUpload> => {
  const shape = seedUploadShapes[k] ?? { length: 600, offset: 0 }
  const name = seedNames[k % seedNames.length] ?? "seed.txt"
  const created = await fetch(`${base}/uploads`, {
    method: "POST",
    headers: {
      ...TUS,
      "upload-length": String(shape.length),
      "upload-metadata": `filename ${base64(name)},filetype ${base64("text/plain")}`
    }
  })
  const location = created.headers.get("location") ?? ""
  const answer = await created.text()
  if (created.status !== 201 || !location.startsWith("/uploads/")) {
    throw new Error(`seed upload ${k}: POST /uploads answered ${created.status} ${answer}`)
  }
  if (shape.offset > 0) {
    const patched = await fetch(`${base}${location}`, {
      method: "PATCH",
      headers: { ...TUS, "content-type": "application/offset+octet-stream", "upload-offset": "0" },
      body: textOfSize(shape.offset, "tus seed ")
    })
    const patchAnswer = await patched.text()
    if (patched.status !== 204) throw new Error(`seed upload ${k}: PATCH answered ${patched.status} ${patchAnswer}`)
  }
  return { id: location.slice("/uploads/".length), offset: shape.offset, length: shape.length }
}

/**
 * The seed uploads the requests name (`{upload:K}`, `{offset:K}`): before a request
 * names one, a HEAD says where it stands; one that is gone (finished, terminated by a
 * DELETE or a bad byte, expired) is remembered (`{gone:K}`) and made again.
 */
class SeedUploads {
  readonly uploads: Array<SeedUpload>
  readonly gone: Array<string> = []
  madeAgain = 0
  private readonly refreshing = new Map<number, Promise<void>>()

  constructor(private readonly base: string, uploads: ReadonlyArray<SeedUpload>) {
    this.uploads = [...uploads]
  }

  static make(base: string) {
    return Effect.promise(() => Promise.all(seedUploadShapes.map((_, k) => createSeedUpload(base, k)))).pipe(
      Effect.map((uploads) => new SeedUploads(base, uploads))
    )
  }

  async refresh(named: ReadonlyArray<number>): Promise<void> {
    await Promise.all(named.map((k) => {
      const running = this.refreshing.get(k)
      if (running !== undefined) return running
      const next = this.look(k).finally(() => this.refreshing.delete(k))
      this.refreshing.set(k, next)
      return next
    }))
  }

  private async look(k: number): Promise<void> {
    const current = this.uploads[k]
    if (current === undefined) return
    const status = await fetch(`${this.base}/uploads/${current.id}`, { method: "HEAD", headers: TUS })
    if (status.status !== 200 && status.status !== 404) {
      throw new Error(`seed upload ${k}: HEAD /uploads/${current.id} answered ${status.status}`)
    }
    const offset = Number(status.headers.get("upload-offset"))
    if (status.status === 200 && status.headers.get("upload-expires") !== null && offset < current.length) {
      this.uploads[k] = { ...current, offset }
      return
    }
    this.gone.push(current.id)
    this.madeAgain += 1
    this.uploads[k] = await createSeedUpload(this.base, k)
  }
}

const reconcileScript = ServerProcess.mainScript.replace(/serve\.js$/, "reconcile.js")

/** `npm run reconcile` on the same configuration as the server. */
const reconcile = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.async<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resume) => {
    const child = execFile(
      process.execPath,
      [reconcileScript, ...args],
      { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env }, timeout: 120_000 },
      (error, stdout, stderr) =>
        resume(Effect.succeed({
          code: error === null ? 0 : typeof error.code === "number" ? error.code : -1,
          stdout,
          stderr
        }))
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Every page of GET /files. */
const listAll = (base: string) =>
  Effect.gen(function*() {
    const items: Array<typeof Listed.Type> = []
    let cursor: string | null = null
    do {
      const query: string = cursor === null ? "" : `&cursor=${cursor}`
      const response = yield* request(`${base}/files?limit=100${query}`)
      expect(response.status).toBe(200)
      const page = decodePage(response.json)
      items.push(...page.items)
      cursor = page.nextCursor
    } while (cursor !== null)
    return items
  })

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** What the server logged as errors (a 5xx, a defect, a failed cleanup): each entry with its indented details. */
const errorLines = (output: string): ReadonlyArray<string> => {
  const entries: Array<string> = []
  let current: string | undefined = undefined
  for (const line of output.split("\n")) {
    if (/^\[[\d:.]+\] /.test(line)) {
      if (current !== undefined) entries.push(current)
      current = /^\[[\d:.]+\] (ERROR|FATAL) /.test(line) ? line : undefined
    } else if (current !== undefined) current += `\n${line}`
  }
  if (current !== undefined) entries.push(current)
  return entries
}

/** The server's error entries grouped by kind (the first word of their details), each with one example. */
const errorSummary = (errors: ReadonlyArray<string>): string => {
  const kinds = new Map<string, { count: number; example: string }>()
  for (const entry of errors) {
    const kind = /\n {2}(\w+)/.exec(entry)?.[1] ?? entry.split("\n")[0] ?? ""
    const seen = kinds.get(kind)
    kinds.set(kind, { count: (seen?.count ?? 0) + 1, example: seen?.example ?? entry.slice(0, 2000) })
  }
  return [
    `server errors logged: ${errors.length}`,
    ...[...kinds].map(([kind, { count, example }]) => `  ${kind} x${count}, e.g.:\n${example.replace(/^/gm, "    ")}`)
  ].join("\n")
}

interface Backend {
  readonly name: string
  /** Lane i is seeded with `seed + i`: each backend gets its own requests. */
  readonly seed: number
  readonly tolerated: Tolerated
  /** Error log entries the tolerated answers come with; every other error entry fails the run. */
  readonly toleratedLog: RegExp | undefined
  readonly env: Record<string, string>
  /** The object store and the database, read directly once the server is stopped. */
  readonly stores: Layer.Layer<ObjectStore | SqlClient.SqlClient, unknown>
}

/** The key prefix the server writes under (S3_PREFIX's default). */
const PREFIX = "files/"

/** Behind the API's back: every object under the prefix but the binding's marker, and every record. */
const readStores = Effect.gen(function*() {
  const store = yield* ObjectStore
  const sql = yield* SqlClient.SqlClient
  const objects = Array.from(yield* Stream.runCollect(store.list(PREFIX)))
    .filter((key) => key !== markerKeyFor(PREFIX))
    .sort()
  const records = yield* sql<{ objectKey: string; status: string }>`SELECT object_key AS "objectKey", status FROM files`
  return {
    objects,
    files: records.filter((row) => row.status === "committed").map((row) => row.objectKey).sort(),
    unfinished: records.filter((row) => row.status !== "committed").map((row) => `${row.status} ${row.objectKey}`),
    resumable: yield* resumableRows
  }
})

/** Rows of resumable uploads (tus) and of their tails. */
const resumableRows = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ uploads: number; tails: number }>`
    SELECT (SELECT count(*) FROM resumable_uploads)::int AS uploads, (SELECT count(*) FROM resumable_tail)::int AS tails`
  return { uploads: row?.uploads ?? -1, tails: row?.tails ?? -1 }
})

/** ServerProcess.stop (SIGTERM, SIGKILL after 10 s), then the child's exit awaited: the process is gone after it. */
const stopped = (child: ChildProcess) =>
  Effect.zipRight(
    ServerProcess.stop(child),
    Effect.async<void>((resume) => {
      const exited = () => resume(Effect.void)
      if (child.exitCode !== null || child.signalCode !== null) return exited()
      child.once("exit", exited)
      return Effect.sync(() => child.off("exit", exited))
    }).pipe(Effect.timeout("10 seconds"), Effect.orDie)
  )

/** The whole run on one backend: fire, check the survivor, reconcile, check the stores and every listed file. */
const fuzz = (backend: Backend) =>
  Effect.gen(function*() {
    const env = { ...serverEnv, ...backend.env }
    const tally = new Tally()
    const started = performance.now()

    // 1. The server under fire: LANES properties at once, each request checked as it is answered.
    yield* Effect.scoped(Effect.gen(function*() {
      const server = yield* ServerProcess.start(env)
      const port = Number(new URL(server.url).port)
      const seeds = yield* uploadSeeds(server.url)
      const seedUploads = yield* SeedUploads.make(server.url)
      const firing = performance.now()
      const lanes = yield* Effect.forEach(
        Array.from({ length: LANES }, (_, index) => index),
        (index) =>
          Effect.exit(Effect.tryPromise({
            try: () =>
              fc.assert(fc.asyncProperty(hostileRequest, check(port, seeds, seedUploads, tally, backend.tolerated)), {
                seed: backend.seed + index,
                numRuns: runsOf(index)
              }),
            catch: (error) => `lane ${index} (seed ${backend.seed + index}): ${String(error)}`
          })),
        { concurrency: "unbounded" }
      )
      yield* Console.log(tally.summary(backend, performance.now() - firing, seedUploads.madeAgain))
      const failures = lanes.flatMap((exit) =>
        Exit.isFailure(exit) ? [String(Option.getOrElse(Exit.causeOption(exit), () => "?"))] : []
      )
      // The process never died, and still answers.
      const health = yield* request(`${server.url}/healthz`)
      const running = [server.child.exitCode, server.child.signalCode]
      const errors = errorLines(server.output())
      // Stopped before anything is asserted: a failed assertion would leave it to the scope's finalizer, where
      // ServerProcess.stop cannot time out (it runs uninterruptibly) and a server that does not exit hangs the test.
      yield* stopped(server.child)
      if (errors.length > 0) yield* Console.log(errorSummary(errors))
      expect(failures, failures.join("\n\n")).toEqual([])
      expect(tally.hangs).toBe(0)
      expect(
        [...tally.statuses.entries()].filter(([status]) => status >= 500).map(([, n]) => n)
          .reduce((sum, n) => sum + n, 0)
      ).toBe([...tally.tolerated.values()].reduce((sum, n) => sum + n, 0))
      expect(health.status).toBe(200)
      expect(running).toEqual([null, null])
      // Nothing a client sends is the server's error: the log holds none but the tolerated answers'.
      const unexpected = errors.filter((entry) => backend.toleratedLog?.test(entry) !== true)
      expect(unexpected.length, errorSummary(unexpected)).toBe(0)
    }))

    // 2. Unfinished resumable uploads (the seed uploads at least) are live intents until they expire: wait
    // for that, then one reconciliation pass with no grace period: every unfinished intent is stale.
    const [left] = yield* Effect.all([
      Effect.provide(resumableRows, backend.stores).pipe(Effect.orDie),
      Effect.sleep(Duration.seconds(TUS_EXPIRY_SECONDS + 1))
    ], { concurrency: "unbounded" })
    yield* Console.log(
      `${left.uploads} resumable uploads unfinished (${left.tails} tail rows) when the server stopped; ` +
        `reconciling once they expired (TUS_EXPIRY_SECONDS=${TUS_EXPIRY_SECONDS})`
    )
    expect(left.uploads).toBeGreaterThan(0)
    const reconcileEnv = { ...env, RECONCILE_GRACE_SECONDS: "0" }
    const pass = yield* reconcile([], reconcileEnv)
    yield* Console.log(`reconcile: exit ${pass.code}\n${pass.stdout.trim()}`)
    expect(pass.code, pass.stdout + pass.stderr).toBe(0)
    const dryRun = yield* reconcile(["--dry-run"], reconcileEnv)
    expect(dryRun.code, dryRun.stdout + dryRun.stderr).toBe(0)
    expect(dryRun.stdout.trim().split("\n").at(-1)).toBe("consistent")

    // 3. The stores, read directly: no record in any state but committed, no object that is not a file's.
    const stored = yield* Effect.provide(readStores, backend.stores).pipe(Effect.orDie)
    expect(stored.unfinished).toEqual([])
    expect(stored.resumable).toEqual({ uploads: 0, tails: 0 })
    expect(stored.objects).toEqual(stored.files)

    // 4. Every listed file has its object, with the recorded size and sha256 (G1); every 201 is among them (G3).
    yield* Effect.scoped(Effect.gen(function*() {
      const server = yield* ServerProcess.start(env)
      const listed = yield* listAll(server.url)
      expect(listed.map((file) => `${PREFIX}${file.id}`).sort()).toEqual(stored.files)
      const listedIds = new Set(listed.map((file) => file.id))
      expect([...tally.created.keys()].filter((id) => !listedIds.has(id))).toEqual([])
      expect([...tally.finishedUploads].filter((id) => !listedIds.has(id))).toEqual([])
      for (const file of listed) {
        const content = yield* request(`${server.url}/files/${file.id}/content`)
        expect(content.status).toBe(200)
        expect([content.bytes.byteLength, sha256(content.bytes)]).toEqual([file.size, file.sha256])
      }
      expect((yield* request(`${server.url}/healthz`)).status).toBe(200)
      yield* Console.log(
        `after reconcile: ${listed.length} files listed, each read back whole and verified; ` +
          `${(performance.now() - started) / 1000 | 0} s in all`
      )
    }))
  })

describe("hostile input over raw TCP, against the built server", () => {
  it.live(
    "embedded default (embedded PostgreSQL, local disk): never a 5xx, a crash or a hang; consistent after one reconcile pass",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* TempDirectory.make("hostile")
        yield* fuzz({
          name: "the embedded default (embedded PostgreSQL + local disk)",
          seed: SEED,
          tolerated: nothingTolerated,
          toleratedLog: undefined,
          env: { DATA_DIR: dataDir },
          stores: Layer.merge(
            LocalDiskObjectStore.layer(Path.join(dataDir, "objects")),
            EmbeddedDatabase.layerEmbedded(dataDir)
          )
        })
      }).pipe(Effect.scoped),
    { timeout: 600_000 }
  )

  it.live.skipIf(Option.isNone(TestDatabase.serverUrl))(
    "PostgreSQL and s3rver: never a 5xx, a crash or a hang; consistent after one reconcile pass",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* TestDatabase.freshDatabaseUrl(Option.getOrThrow(TestDatabase.serverUrl))
        const s3 = yield* S3TestServer.settings
        const dataDir = yield* TempDirectory.make("hostile")
        yield* fuzz({
          name: "PostgreSQL + s3rver",
          seed: SEED + LANES,
          tolerated: s3rverFirstByte,
          // The failure's entry, with its cause, and the request's own line (RequestLog: a 5xx is an error).
          toleratedLog:
            /ObjectStoreUnavailable[\s\S]*Asked for bytes=0-0, got bytes 0-|^\[[\d:.]+\] ERROR \(#\d+\): request\n(?=[\s\S]*^ {2}status: 503$)(?=[\s\S]*^ {2}route: \/files\/\{id\}\/content$)(?=[\s\S]*^ {2}error: ObjectStoreUnavailable$)/m,
          env: {
            DATA_DIR: dataDir,
            DATABASE_URL: Redacted.value(databaseUrl),
            S3_BUCKET: s3.bucket,
            S3_ENDPOINT: s3.endpoint ?? "",
            S3_REGION: s3.region,
            S3_FORCE_PATH_STYLE: "true",
            AWS_ACCESS_KEY_ID: "S3RVER",
            AWS_SECRET_ACCESS_KEY: "S3RVER"
          },
          stores: Layer.merge(S3ObjectStore.layer(s3), PostgresDatabase.layerUrl(databaseUrl, 2))
        })
      }).pipe(Effect.scoped),
    { timeout: 600_000 }
  )
})

/** A cursor naming `millis` and `id`, as the API would write it. */
const cursorAt = (millis: number, id: string) => Buffer.from(JSON.stringify([millis, id])).toString("base64url")

/**
 * What the fuzz found, shrunk, as plain cases. Each failed before its fix.
 *
 * 1. A cursor naming a time past 9999-12-31 (any millisecond up to DateTime's last,
 *    275760-09-13, decodes) reached PostgreSQL as `+010000-01-01T00:00:00.000Z`, which it
 *    cannot parse ("time zone displacement out of range"): 503 DatabaseUnavailable for
 *    `GET /files?cursor=WzI1MzQwMjMwMDgwMDAwMCwiMDAwMDAwMDAtMDAwMC0xMDAwLTgwMDAtMDAwMDAwMDAwMDAwIl0`
 *    (seed 100, PostgreSQL + s3rver; the same on PGlite). It names a position after
 *    every file: the first page.
 * 2. A client that hangs up while its query runs made another client's request fail
 *    with 503 DatabaseUnavailable ("canceling statement due to user request"): the
 *    interrupted query is cancelled by pg_cancel_backend(pid) over another pooled
 *    connection, and when the query ends first its connection goes back to the pool,
 *    where the cancel hits the next statement it runs (seed 300, PostgreSQL; about 1 in
 *    800 GETs next to abandoned ones with DATABASE_POOL_SIZE=3).
 * 3. `POST /files/{id}/links` with `Content-Type: multipart/form-data; boundary=x` and
 *    the body `{}` (any body that is not a form): 500, the platform dying with a
 *    MultipartError. With `Content-Type: application/json` and a body that is not JSON
 *    (`nope`): 400 with an empty body, logged as a defect ("request died").
 * 4. `PUT /files` (any route that does not exist): 404, logged as an error with
 *    `status: 500` ("request failed", RouteNotFound): every scanner's probe an error.
 */
describe("regressions the hostile-input fuzz found", () => {
  const farCursors = [
    cursorAt(253_402_300_800_000, "00000000-0000-1000-8000-000000000000"), // 10000-01-01T00:00:00.000Z
    cursorAt(8_640_000_000_000_000, "ffffffff-ffff-4fff-bfff-ffffffffffff"), // 275760-09-13, DateTime's last
    cursorAt(253_402_300_799_999, "00000000-0000-1000-8000-000000000000") // 9999-12-31T23:59:59.999Z
  ]

  const listsPastYear9999 = (env: Record<string, string>) =>
    Effect.gen(function*() {
      const server = yield* ServerProcess.start({ ...serverEnv, ...env })
      const created = yield* uploadSeed(server.url, 0)
      for (const cursor of farCursors) {
        const page = yield* request(`${server.url}/files?cursor=${cursor}`)
        expect([cursor, page.status]).toEqual([cursor, 200])
        expect(decodePage(page.json).items.map((file) => file.id)).toEqual([created.id])
      }
    })

  it.live(
    "a cursor past year 9999 names a position after every file: the first page (embedded default)",
    () =>
      Effect.gen(function*() {
        yield* listsPastYear9999({ DATA_DIR: yield* TempDirectory.make("hostile") })
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  it.live.skipIf(Option.isNone(TestDatabase.serverUrl))(
    "a cursor past year 9999 names a position after every file: the first page (PostgreSQL)",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* TestDatabase.freshDatabaseUrl(Option.getOrThrow(TestDatabase.serverUrl))
        yield* listsPastYear9999({
          DATA_DIR: yield* TempDirectory.make("hostile"),
          DATABASE_URL: Redacted.value(databaseUrl)
        })
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  const unreadableBodies: ReadonlyArray<readonly [contentType: string, body: string]> = [
    ["multipart/form-data; boundary=x", "{}"],
    ["multipart/form-data; boundary=x", "\u0000"],
    ["application/json", "nope"],
    ["application/json", "{"]
  ]

  it.live(
    "a body that cannot be read as its Content-Type says is 400 InvalidBody; an unknown route a 404, no error",
    () =>
      Effect.gen(function*() {
        const server = yield* ServerProcess.start({ ...serverEnv, DATA_DIR: yield* TempDirectory.make("hostile") })
        const { id } = yield* uploadSeed(server.url, 0)
        const link = (contentType: string, body: string) =>
          request(`${server.url}/files/${id}/links`, { method: "POST", headers: { "content-type": contentType }, body })
        for (
          const [contentType, body] of unreadableBodies
        ) {
          const refused = yield* link(contentType, body)
          expect([contentType, body, refused.status, refused.json]).toMatchObject([contentType, body, 400, {
            error: "InvalidBody"
          }])
        }
        expect((yield* link("application/json", "{\"expiresInSeconds\":60}")).status).toBe(201)
        expect((yield* request(`${server.url}/files`, { method: "PUT" })).status).toBe(404)
        expect((yield* request(`${server.url}/no/such/route`)).status).toBe(404)
        // Nothing the client did is the server's error.
        expect(errorLines(server.output())).toEqual([])
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  it.live.skipIf(Option.isNone(TestDatabase.serverUrl))(
    "a statement whose caller went away is never cancelled, so no cancel reaches another caller's statement",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { statement } = PgTransaction.make(sql)
        const sleep = (seconds: number, operation: string) =>
          statement(operation)(sql`SELECT pg_sleep(${seconds})`).pipe(Effect.asVoid)
        // The pool's two connections: the abandoned statement on one (0-0.4 s), a long one on the other (0-1 s).
        const abandoned = yield* Effect.fork(sleep(0.4, "abandoned"))
        const long = yield* Effect.fork(sleep(1, "long"))
        yield* Effect.sleep("100 millis")
        // Another caller waits for a connection: it gets the abandoned statement's once that ends (0.4-1.9 s).
        const innocent = yield* Effect.fork(sleep(1.5, "innocent"))
        yield* Effect.sleep("100 millis")
        // Its caller goes away. A cancel by pid would wait for a free connection (at 1 s) and then stop
        // whatever that connection runs by then: the innocent statement.
        yield* Effect.fork(Fiber.interrupt(abandoned))
        const outcome = yield* Fiber.await(innocent)
        expect(Exit.isSuccess(outcome), String(outcome)).toBe(true)
        yield* Fiber.join(long)
      }).pipe(
        Effect.provide(
          Layer.unwrapEffect(
            Effect.map(TestDatabase.serverUrl, (url) => PostgresDatabase.layerUrl(url, 2))
          )
        )
      ),
    { timeout: 60_000 }
  )
})
