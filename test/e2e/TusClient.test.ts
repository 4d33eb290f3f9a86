/**
 * tus-js-client (a client nobody here wrote, in Node) against the built server
 * (`node dist/bin/serve.js`): a 40 MiB text upload in 1 MiB PATCHes that is
 * aborted and resumed from the fingerprint the client stored, that survives the
 * server being SIGKILLed and restarted on the same port (the dead holder's lease
 * blocks the upload for up to 10 s: the client retries through it), and that moves
 * between two replicas on one database and one bucket. Each ends with exactly one
 * file, the source's bytes, and nothing else: no intent, no upload state, no other
 * object, no multipart upload or temp file left.
 *
 * Random points (where to abort, where to kill) come from a seed printed at the
 * start: TUS_E2E_SEED=<seed> replays a run.
 */
import { DeleteBucketCommand, DeleteObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Option, Redacted, Schedule } from "effect"
import type { Scope } from "effect"
import type { ChildProcess } from "node:child_process"
import { createHash, randomInt } from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Path from "node:path"
import { DefaultHttpStack, type HttpRequest, type HttpStack, type PreviousUpload, Upload } from "tus-js-client"
import * as PostgresDatabase from "../../src/adapters/database/PostgresDatabase.js"
import * as EmbeddedCluster from "../support/EmbeddedCluster.js"
import * as FauxqsTestServer from "../support/FauxqsTestServer.js"
import { request } from "../support/Http.js"
import { mulberry32 } from "../support/Random.js"
import * as ServerOnDatabase from "../support/ServerOnDatabase.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as TestDatabase from "../support/TestDatabase.js"

const noDatabase = Option.isNone(TestDatabase.serverUrl)

const MiB = 1024 * 1024
const SIZE = 40 * MiB
const CHUNK = 1 * MiB
const PART = 5 * MiB
const PREFIX = "files/"
/** With a multibyte character, as tus metadata (base64 of UTF-8) carries it. */
const NAME = "notes-résumé.txt"

/** What every server here runs with: room for 40 MiB, the smallest parts, and no reconciler to tidy up after it. */
const SERVER_ENV = {
  UPLOAD_MAX_BYTES: String(64 * MiB),
  S3_PART_SIZE: String(PART),
  RECONCILE_INTERVAL_SECONDS: "0"
}

/** Alone, a test takes 20 to 40 s; all five at once on two cores, 70 to 80 s (more on a loaded machine). */
const TEST_TIMEOUT = 240_000

/** For an abort: a few quick retries, for the 409 UploadBusy while the aborted PATCH's lease goes. */
const BRIEF_RETRIES = [0, 200, 500, 1000, 2000, 3000]
/**
 * Through a SIGKILL: the restart (seconds; half a minute on a loaded machine), then
 * up to 10 s of the dead holder's lease; 90 s in all.
 */
const PATIENT_RETRIES = Array.from({ length: 90 }, (_, i) => (i < 4 ? 250 : 1000))

// ---------------------------------------------------------------------------
// Seeded randomness

const SUITE_SEED = Number(process.env["TUS_E2E_SEED"] ?? randomInt(2 ** 31))
console.log(`TusClient.test.ts: TUS_E2E_SEED=${SUITE_SEED} replays this run`)

const prng = mulberry32

/** Each test its own stream, from the suite's seed and its name. */
const randomFor = (test: string) => {
  let seed = SUITE_SEED
  for (const char of test) seed = (Math.imul(seed, 31) + char.charCodeAt(0)) | 0
  return prng(seed)
}

const between = (random: () => number, low: number, high: number) => low + Math.floor(random() * (high - low))

const WORDS = [
  "tandem ",
  "upload ",
  "résumé ",
  "naïve ",
  "Größe ",
  "Ωμέγα ",
  "日本語の",
  "テキスト ",
  "😀 ",
  "𝄞 ",
  "—",
  "\n",
  "a",
  "bc "
].map((word) => new TextEncoder().encode(word))

/**
 * `size` bytes of valid UTF-8 text (one- to four-byte characters, in a random
 * order: no period, so a PATCH sent twice or skipped changes the sha256), padded
 * with spaces.
 */
const textOf = (size: number, random: () => number): Buffer => {
  const out = Buffer.alloc(size, 0x20)
  let at = 0
  for (;;) {
    const word = WORDS[Math.floor(random() * WORDS.length)] ?? WORDS[0]
    if (word === undefined || at + word.byteLength > size) break
    for (let i = 0; i < word.byteLength; i++) out[at + i] = word[i] ?? 0x20
    at += word.byteLength
  }
  return out
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

// ---------------------------------------------------------------------------
// tus-js-client, driven from Effect

type UrlStorage = NonNullable<ConstructorParameters<typeof Upload>[1]["urlStorage"]>

/** tus-js-client has no storage of its own in Node: this one keeps the uploads in memory, as its FileUrlStorage does on disk. */
class MemoryUrlStorage implements UrlStorage {
  readonly entries = new Map<string, PreviousUpload>()
  private next = 0
  findAllUploads() {
    return Promise.resolve(Array.from(this.entries.values()))
  }
  findUploadsByFingerprint(fingerprint: string) {
    return Promise.resolve(
      Array.from(this.entries.values()).filter((entry) => entry.urlStorageKey.startsWith(`tus::${fingerprint}::`))
    )
  }
  removeUpload(urlStorageKey: string) {
    this.entries.delete(urlStorageKey)
    return Promise.resolve()
  }
  addUpload(fingerprint: string, upload: PreviousUpload) {
    const urlStorageKey = `tus::${fingerprint}::${this.next++}`
    this.entries.set(urlStorageKey, { ...upload, urlStorageKey })
    return Promise.resolve(urlStorageKey)
  }
}

/** One request the client sent: its Upload-Offset, and the status and when it came, or none when it got no answer. */
interface Sent {
  readonly method: string
  readonly url: string
  readonly offset: number | undefined
  status: number | undefined
  answeredAt: number | undefined
}

/** What the client has sent and been told so far, as it goes. */
interface Progress {
  readonly requests: Array<Sent>
  /** The last offset a PATCH's answer acknowledged. */
  acknowledged: number
}

interface Plan {
  readonly endpoint: string
  readonly storage: MemoryUrlStorage
  readonly retryDelays: Array<number>
  readonly fingerprint?: () => Promise<string>
  readonly httpStack?: HttpStack
  /** Resume from the storage: given what `findPreviousUploads` found, the upload to resume. */
  readonly resume?: (found: ReadonlyArray<PreviousUpload>) => PreviousUpload
  /**
   * Once a PATCH's body has passed this offset, mid-body: `abort` the upload and
   * stop, or call `trigger` and go on.
   */
  readonly at?: number
  readonly action?: "abort" | "trigger"
  readonly trigger?: () => void
  /** Where the run records its progress, for a test to read while it runs. */
  readonly progress?: Progress
}

interface Run {
  readonly outcome: "finished" | "aborted"
  /** The upload's URL, as the client knows it. */
  readonly url: string
  /** The final response's Location (the file), when finished. */
  readonly location: string | undefined
  readonly requests: ReadonlyArray<Sent>
  /** The last offset a PATCH's answer acknowledged. */
  readonly acknowledged: number
  /** Where the PATCH in flight was when the abort or trigger fired. */
  readonly firedAt: number | undefined
}

/**
 * One `new Upload(...)` of `bytes` in 1 MiB chunks, until it succeeds, gives up
 * (a failure), or is aborted by the plan; at most 150 s (on a loaded machine), aborted if interrupted.
 */
const send = (bytes: Buffer, plan: Plan): Effect.Effect<Run, Error> =>
  Effect.async<Run, Error>((resume) => {
    const progress = plan.progress ?? { requests: [], acknowledged: 0 }
    const { requests } = progress
    const byRequest = new Map<HttpRequest, Sent>()
    let firedAt: number | undefined
    let settled = false
    const settle = (result: Effect.Effect<Run, Error>) => {
      if (settled) return
      settled = true
      resume(result)
    }
    const run = (outcome: Run["outcome"], location: string | undefined): Run => ({
      outcome,
      url: upload.url ?? "",
      location,
      requests,
      acknowledged: progress.acknowledged,
      firedAt
    })
    const upload = new Upload(bytes, {
      endpoint: plan.endpoint,
      chunkSize: CHUNK,
      retryDelays: plan.retryDelays,
      metadata: { filename: NAME, filetype: "text/plain" },
      urlStorage: plan.storage,
      ...(plan.fingerprint === undefined ? {} : { fingerprint: plan.fingerprint }),
      ...(plan.httpStack === undefined ? {} : { httpStack: plan.httpStack }),
      onBeforeRequest: (req) => {
        const offset = req.getHeader("Upload-Offset")
        const sent: Sent = {
          method: req.getMethod(),
          url: req.getURL(),
          offset: offset === undefined ? undefined : Number(offset),
          status: undefined,
          answeredAt: undefined
        }
        requests.push(sent)
        byRequest.set(req, sent)
      },
      onAfterResponse: (req, res) => {
        const sent = byRequest.get(req)
        if (sent === undefined) return
        sent.status = res.getStatus()
        sent.answeredAt = Date.now()
      },
      onChunkComplete: (_size, accepted) => {
        progress.acknowledged = accepted
      },
      onProgress: (position) => {
        // Mid-body only: at a chunk's edge the PATCH is not sent yet, and an abort then does not stop it.
        if (plan.at === undefined || firedAt !== undefined || position < plan.at || position % CHUNK === 0) return
        firedAt = position
        if (plan.action === "abort") {
          void upload.abort().then(() => settle(Effect.succeed(run("aborted", undefined))))
        } else {
          plan.trigger?.()
        }
      },
      onSuccess: ({ lastResponse }) => settle(Effect.succeed(run("finished", lastResponse.getHeader("Location")))),
      onError: (error) =>
        settle(Effect.fail(
          new Error(`tus-js-client gave up: ${error.message}\nrequests: ${JSON.stringify(requests)}`, { cause: error })
        ))
    })
    if (plan.resume === undefined) {
      upload.start()
    } else {
      const pick = plan.resume
      upload.findPreviousUploads().then(
        (found) => {
          try {
            upload.resumeFromPreviousUpload(pick(found))
          } catch (error) {
            return settle(Effect.fail(new Error("no upload to resume", { cause: error })))
          }
          upload.start()
        },
        (error: unknown) => settle(Effect.fail(new Error("findPreviousUploads failed", { cause: error })))
      )
    }
    return Effect.promise(() => upload.abort())
  }).pipe(
    Effect.timeoutFail({ duration: "150 seconds", onTimeout: () => new Error("the upload did not end in 150 s") })
  )

/** The one upload found in the storage; its URL's origin replaced by `origin` when given. */
const onlyUpload = (origin?: string) => (found: ReadonlyArray<PreviousUpload>): PreviousUpload => {
  expect(found.map((entry) => entry.size)).toEqual([SIZE])
  const [entry] = found
  if (entry === undefined || entry.uploadUrl === null) throw new Error("no stored upload URL")
  return origin === undefined ? entry : { ...entry, uploadUrl: rebase(entry.uploadUrl, origin) }
}

/** `url` on another server: same path, `origin`'s scheme, host and port. */
const rebase = (url: string, origin: string) => {
  const moved = new URL(url)
  const target = new URL(origin)
  moved.protocol = target.protocol
  moved.host = target.host
  return moved.toString()
}

/** A load balancer in the client: each request to the next of `origins`, in turn. */
const roundRobin = (origins: ReadonlyArray<string>): HttpStack => {
  const stack = new DefaultHttpStack({})
  let next = 0
  return {
    createRequest: (method, url) => stack.createRequest(method, rebase(url, origins[next++ % origins.length] ?? url)),
    getName: () => "RoundRobinHttpStack"
  }
}

const patches = (requests: ReadonlyArray<Sent>) => requests.filter((sent) => sent.method === "PATCH")
const offsetsOf = (requests: ReadonlyArray<Sent>) => patches(requests).map((sent) => sent.offset ?? -1)

// ---------------------------------------------------------------------------
// Servers and what they store

const log = (line: string) => Effect.sync(() => console.log(`TusClient.test.ts: ${line}`))

/** A port free now, for a server that must come back on it after a kill. */
const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A server life on `env` (a start that fails, e.g. the port not free yet, is logged and retried twice). */
const startServer = (env: Record<string, string>) =>
  ServerProcess.start(env).pipe(
    Effect.tapError((error) => log(`a server start failed (retried): ${error.message}`)),
    Effect.retry(Schedule.spaced("1 second").pipe(Schedule.intersect(Schedule.recurs(2))))
  )

const killNine = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

/** What the database holds: `files` by status, the live uploads' offsets, the tail's rows. */
interface Stored {
  readonly files: Record<string, number>
  readonly uploadOffsets: ReadonlyArray<number>
  readonly tailRows: number
}

const storedIn = (sql: SqlClient.SqlClient): Effect.Effect<Stored> =>
  Effect.gen(function*() {
    const files = yield* ServerOnDatabase.counts(sql)
    const uploads = yield* sql<{ offset: number }>`SELECT upload_offset::int AS offset FROM resumable_uploads`
    const tail = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM resumable_tail`
    return { files, uploadOffsets: uploads.map((row) => row.offset), tailRows: tail[0]?.n ?? -1 }
  }).pipe(Effect.orDie)

/** When the lease on the upload runs out (ms since the epoch, by the database's clock), if one is held now. */
const leaseUntil = (sql: SqlClient.SqlClient) =>
  sql<{ until: number }>`
    SELECT (extract(epoch FROM lease_until) * 1000)::float8 AS until FROM resumable_uploads WHERE lease_until > now()`
    .pipe(Effect.map((rows) => Option.fromNullable(rows[0]?.until)), Effect.orDie)

/** Database and object store under test, and how to look at them behind the server's back. */
interface Stack {
  /** The server's environment, PORT included: a restart comes back on the same URL. */
  readonly env: Record<string, string>
  /** The server's database, for as long as the scope lasts (the embedded one: while this life of it runs). */
  readonly database: Effect.Effect<SqlClient.SqlClient, never, Scope.Scope>
  readonly stored: Effect.Effect<Stored>
  /** Object keys, the store's binding marker left out. */
  readonly objectKeys: Effect.Effect<ReadonlyArray<string>>
  /** Nothing half-written is left in the store (the file `id` may be deleted to show it). */
  readonly expectNoLeftovers: (base: string, id: string) => Effect.Effect<void>
}

/** A fresh PostgreSQL database (TEST_DATABASE_URL's server) and a fresh fauxqs bucket. */
const postgresAndFauxqs: Effect.Effect<Stack, unknown, Scope.Scope> = Effect.gen(function*() {
  const databaseUrl = yield* TestDatabase.freshDatabaseUrl(Option.getOrThrow(TestDatabase.serverUrl))
  const s3 = yield* FauxqsTestServer.settings
  const dataDir = yield* ServerOnDatabase.tempDirectory("tandem-tus-")
  const sql = Context.get(yield* Layer.build(PostgresDatabase.layerUrl(databaseUrl, 2)), SqlClient.SqlClient)
  const client = yield* Effect.acquireRelease(
    Effect.sync(() =>
      new S3Client({
        region: s3.region,
        endpoint: s3.endpoint ?? "",
        forcePathStyle: true,
        credentials: { accessKeyId: "fauxqs", secretAccessKey: "fauxqs" },
        maxAttempts: 1
      })
    ),
    (client) => Effect.sync(() => client.destroy())
  )
  const keys = Effect.promise(async () => {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }))
    return (listed.Contents ?? []).map((object) => object.Key ?? "")
  })
  const port = yield* freePort
  return {
    env: {
      ...SERVER_ENV,
      PORT: String(port),
      DATA_DIR: dataDir,
      DATABASE_URL: Redacted.value(databaseUrl),
      S3_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint ?? "",
      S3_REGION: s3.region,
      S3_FORCE_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: "fauxqs",
      AWS_SECRET_ACCESS_KEY: "fauxqs"
    },
    database: Effect.succeed(sql),
    stored: storedIn(sql),
    objectKeys: Effect.map(keys, (all) => all.filter((key) => key !== `${PREFIX}.tandem-binding`)),
    // A listing does not show multipart uploads (and fauxqs has no ListMultipartUploads), but a
    // bucket with one in progress cannot be deleted: empty it (the file through tandem), then delete it.
    expectNoLeftovers: (base, id) =>
      Effect.gen(function*() {
        expect((yield* request(`${base}/files/${id}`, { method: "DELETE" })).status).toBe(204)
        expect(yield* keys).toEqual([`${PREFIX}.tandem-binding`])
        yield* Effect.promise(() =>
          client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: `${PREFIX}.tandem-binding` }))
        )
        const deleted = yield* Effect.either(
          Effect.tryPromise(() => client.send(new DeleteBucketCommand({ Bucket: s3.bucket })))
        )
        expect(deleted._tag, `DeleteBucket: ${JSON.stringify(deleted)} (a multipart upload left behind?)`).toBe(
          "Right"
        )
      })
  }
})

/** The embedded default: nothing but DATA_DIR (embedded PostgreSQL, local-disk objects). */
const embeddedDefault: Effect.Effect<Stack, unknown, Scope.Scope> = Effect.gen(function*() {
  const dataDir = yield* EmbeddedCluster.dataDirectory("tus")
  const port = yield* freePort
  // The running cluster, through the socket its postmaster.pid names (as root, or as the user who started it).
  const database = Effect.gen(function*() {
    const lines = Option.getOrThrow(yield* EmbeddedCluster.postmasterFile(dataDir))
    const url = Redacted.make(
      `postgres://postgres@localhost:${lines[3] ?? ""}/postgres?host=${encodeURIComponent(lines[4] ?? "")}`
    )
    return Context.get(yield* Layer.build(PostgresDatabase.layerUrl(url, 1)), SqlClient.SqlClient)
  }).pipe(Effect.orDie)
  return {
    env: { ...SERVER_ENV, PORT: String(port), DATA_DIR: dataDir },
    database,
    stored: Effect.scoped(Effect.flatMap(database, storedIn)),
    objectKeys: Effect.map(ServerOnDatabase.objectsIn(dataDir), (names) => names.map(decodeURIComponent)),
    // A multipart upload is a temp file in objects/.tmp until it completes.
    expectNoLeftovers: () =>
      Effect.gen(function*() {
        expect(yield* Effect.promise(() => Fs.readdir(Path.join(dataDir, "objects", ".tmp")))).toEqual([])
      })
  }
})

const stacks: ReadonlyArray<readonly [string, Effect.Effect<Stack, unknown, Scope.Scope>, boolean]> = [
  ["PostgreSQL + fauxqs", postgresAndFauxqs, noDatabase],
  ["the embedded default", embeddedDefault, false]
]

/**
 * The upload became one file with the source's size, sha256 and bytes, and
 * nothing else is stored: one committed row, no upload state, one object.
 */
const expectOnlyTheFile = (stack: Stack, base: string, finished: Run, bytes: Buffer, context: string) =>
  Effect.gen(function*() {
    expect(finished.outcome, context).toBe("finished")
    const id = finished.url.split("/").pop() ?? ""
    expect(finished.url, context).toMatch(/\/uploads\/[0-9a-f-]{36}$/)
    expect(finished.location, context).toBe(`/files/${id}`)
    const record = yield* request(`${base}/files/${id}`)
    expect(record.status, context).toBe(200)
    expect(record.json, context).toMatchObject({
      id,
      name: NAME,
      size: SIZE,
      contentType: "text/plain",
      sha256: sha256(bytes)
    })
    const content = yield* request(`${base}/files/${id}/content`)
    expect(content.status, context).toBe(200)
    expect(content.bytes.byteLength, context).toBe(SIZE)
    expect(sha256(content.bytes), context).toBe(sha256(bytes))
    expect(yield* stack.stored, context).toEqual({ files: { committed: 1 }, uploadOffsets: [], tailRows: 0 })
    expect(yield* stack.objectKeys, context).toEqual([`${PREFIX}${id}`])
    yield* stack.expectNoLeftovers(base, id)
  })

// ---------------------------------------------------------------------------

describe.concurrent("tus-js-client against the built server", () => {
  for (const [name, makeStack, skip] of stacks) {
    const abortTest =
      `on ${name}: 40 MiB in 1 MiB PATCHes, aborted at a random point, resumed from the stored fingerprint`
    it.scopedLive.skipIf(skip)(abortTest, () =>
      Effect.gen(function*() {
        const random = randomFor(abortTest)
        const stack = yield* makeStack
        const server = yield* startServer(stack.env)
        const bytes = textOf(SIZE, random)
        const abortAt = between(random, 2 * MiB, SIZE - 2 * MiB)
        const context = `TUS_E2E_SEED=${SUITE_SEED}, abort past ${abortAt}`
        const storage = new MemoryUrlStorage()
        const endpoint = `${server.url}/uploads`
        const started = Date.now()

        const first = yield* send(bytes, {
          endpoint,
          storage,
          retryDelays: BRIEF_RETRIES,
          at: abortAt,
          action: "abort"
        })
        expect(first.outcome, context).toBe("aborted")
        expect(first.requests.filter((sent) => sent.method === "POST"), context).toHaveLength(1)
        expect(storage.entries.size, context).toBe(1)
        // Behind the server's back: one pending intent, its offset at least what the client was told.
        const meanwhile = yield* stack.stored
        expect(meanwhile.files, context).toEqual({ pending: 1 })
        expect(meanwhile.uploadOffsets, context).toHaveLength(1)
        expect(meanwhile.uploadOffsets[0], context).toBeGreaterThanOrEqual(first.acknowledged)

        // As an application resumes: a new Upload, its previous upload found by fingerprint.
        const second = yield* send(bytes, { endpoint, storage, retryDelays: BRIEF_RETRIES, resume: onlyUpload() })
        const resumedAt = offsetsOf(second.requests)[0] ?? -1
        yield* log(
          `${abortTest}: aborted at ${first.firedAt} (acknowledged ${first.acknowledged}), resumed from ${resumedAt}; ` +
            `${Date.now() - started} ms`
        )
        expect(second.requests.filter((sent) => sent.method === "POST"), context).toEqual([])
        expect(second.url, context).toBe(first.url)
        // Resumed, not restarted: from what was acknowledged (durable), not from 0.
        expect(resumedAt, context).toBeGreaterThan(0)
        expect(resumedAt, context).toBeGreaterThanOrEqual(first.acknowledged)
        expect(resumedAt, context).toBeLessThan(SIZE)
        yield* expectOnlyTheFile(stack, server.url, second, bytes, context)
      }), TEST_TIMEOUT)

    const killTest =
      `on ${name}: the server SIGKILLed mid-upload and restarted on its port, the client retrying to the end`
    it.scopedLive.skipIf(skip)(killTest, () =>
      Effect.gen(function*() {
        const random = randomFor(killTest)
        const stack = yield* makeStack
        const starting = Date.now()
        const first = yield* startServer(stack.env)
        const startedIn = Date.now() - starting
        const bytes = textOf(SIZE, random)
        // After a whole part at least, so the multipart upload exists; well before the end.
        const killAt = between(random, PART + MiB, SIZE - 8 * MiB)
        const context = `TUS_E2E_SEED=${SUITE_SEED}, kill past ${killAt}`
        const storage = new MemoryUrlStorage()
        const progress: Progress = { requests: [], acknowledged: 0 }
        const reached = yield* Deferred.make<void>()
        const started = Date.now()

        const running = yield* Effect.fork(send(bytes, {
          endpoint: `${first.url}/uploads`,
          storage,
          retryDelays: PATIENT_RETRIES,
          at: killAt,
          action: "trigger",
          trigger: () => Deferred.unsafeDone(reached, Exit.void),
          progress
        }))
        // Killed while it holds the upload's lease, in a PATCH: the next life must wait the lease out.
        const atKill = yield* Effect.scoped(Effect.gen(function*() {
          const sql = yield* stack.database
          yield* Deferred.await(reached).pipe(
            Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error("the upload never got there") })
          )
          // Until the server holds the lease, mid-PATCH.
          yield* leaseUntil(sql).pipe(
            Effect.flatMap(Option.match({ onNone: () => Effect.fail("no lease yet"), onSome: Effect.succeed })),
            Effect.retry(Schedule.spaced("5 millis").pipe(Schedule.upTo("10 seconds"))),
            Effect.orElseFail(() => new Error("the server never held the upload's lease"))
          )
          yield* killNine(first.child)
          // Read again once it is dead: the PATCH may have ended (and let go) in between,
          // and the next one may have taken a lease of its own; this is the one left.
          const left = yield* leaseUntil(sql)
          return {
            leaseUntil: left,
            leaseLeft: Option.getOrElse(left, () => Date.now()) - Date.now(),
            acknowledged: progress.acknowledged,
            requests: progress.requests.length
          }
        }))
        const killedAfter = Date.now() - started
        const second = yield* startServer(stack.env)
        expect(second.url).toBe(first.url)
        const restartedAt = Date.now()
        const finished = yield* Fiber.join(running)

        const after = finished.requests.slice(atKill.requests)
        const answeredPatches = patches(after).filter((sent) => sent.status !== undefined)
        const resumedAt = answeredPatches[0]?.offset ?? -1
        const firstWritten = answeredPatches.find((sent) => sent.status === 204)
        const busy = after.filter((sent) => sent.status === 409).length
        const unanswered = after.filter((sent) => sent.status === undefined).length
        const restartedIn = restartedAt - started - killedAfter
        yield* log(
          `${killTest}: past ${finished.firedAt}, killed with ${atKill.acknowledged} acknowledged ` +
            `after ${killedAfter} ms, ${Math.round(atKill.leaseLeft)} ms of its lease left; started in ` +
            `${startedIn} ms, restarted in ${restartedIn} ms; after the kill ${unanswered} request(s) unanswered, ${busy} 409, ` +
            `resumed from ${resumedAt}; done after ${Date.now() - started} ms`
        )
        // One upload all along (never created again), resumed where the dead server had acknowledged.
        expect(finished.requests.filter((sent) => sent.method === "POST"), context).toHaveLength(1)
        expect(unanswered, context).toBeGreaterThan(0)
        expect(resumedAt, context).toBeGreaterThan(0)
        expect(resumedAt, context).toBeGreaterThanOrEqual(atKill.acknowledged)
        expect(Math.min(...offsetsOf(after)), context).toBeGreaterThanOrEqual(atKill.acknowledged)
        // The dead holder's lease was honoured: no PATCH wrote before it ran out (409 UploadBusy meanwhile).
        // None left: its PATCH ended just before the kill, and the next was not sent yet.
        if (Option.isSome(atKill.leaseUntil)) {
          expect(firstWritten?.answeredAt ?? 0, context).toBeGreaterThanOrEqual(atKill.leaseUntil.value - 50)
          if (restartedAt < atKill.leaseUntil.value - 3000) expect(busy, context).toBeGreaterThan(0)
        }
        yield* expectOnlyTheFile(stack, second.url, finished, bytes, context)
      }), TEST_TIMEOUT)
  }

  const replicasTest =
    "on PostgreSQL + fauxqs: two replicas, the client moving from A to B mid-upload, then to both in turn"
  it.scopedLive.skipIf(noDatabase)(replicasTest, () =>
    Effect.gen(function*() {
      const random = randomFor(replicasTest)
      const stack = yield* postgresAndFauxqs
      const a = yield* startServer(stack.env)
      const b = yield* startServer({ ...stack.env, PORT: String(yield* freePort) })
      const bytes = textOf(SIZE, random)
      const firstStop = between(random, 2 * MiB, 16 * MiB)
      const secondStop = between(random, firstStop + 4 * MiB, SIZE - 4 * MiB)
      const context = `TUS_E2E_SEED=${SUITE_SEED}, aborts past ${firstStop} and ${secondStop}`
      const storage = new MemoryUrlStorage()
      // Stored under the content, not the endpoint (tus-js-client's default adds it): found from either replica.
      const fingerprint = () => Promise.resolve(`sha256-${sha256(bytes)}`)
      const started = Date.now()

      const onA = yield* send(bytes, {
        endpoint: `${a.url}/uploads`,
        storage,
        fingerprint,
        retryDelays: BRIEF_RETRIES,
        at: firstStop,
        action: "abort"
      })
      expect(onA.outcome, context).toBe("aborted")
      expect(onA.url.startsWith(a.url), context).toBe(true)

      // B, from the stored URL rewritten to B.
      const onB = yield* send(bytes, {
        endpoint: `${b.url}/uploads`,
        storage,
        fingerprint,
        retryDelays: BRIEF_RETRIES,
        resume: onlyUpload(b.url),
        at: secondStop,
        action: "abort"
      })
      expect(onB.outcome, context).toBe("aborted")
      expect(onB.requests.every((sent) => sent.url.startsWith(b.url)), context).toBe(true)
      const onBFrom = offsetsOf(onB.requests)[0] ?? -1
      expect(onBFrom, context).toBeGreaterThan(0)
      expect(onBFrom, context).toBeGreaterThanOrEqual(onA.acknowledged)

      // Then every request to the other replica than the one before.
      const both = yield* send(bytes, {
        endpoint: `${a.url}/uploads`,
        storage,
        fingerprint,
        retryDelays: BRIEF_RETRIES,
        resume: onlyUpload(),
        httpStack: roundRobin([a.url, b.url])
      })
      const bothFrom = offsetsOf(both.requests)[0] ?? -1
      const patchedOn = (origin: string) => patches(both.requests).filter((sent) => sent.url.startsWith(origin)).length
      yield* log(
        `${replicasTest}: A to ${onA.firedAt} (acknowledged ${onA.acknowledged}), B from ${onBFrom} to ${onB.firedAt} ` +
          `(acknowledged ${onB.acknowledged}), both from ${bothFrom}: ${patchedOn(a.url)} PATCHes on A, ` +
          `${patchedOn(b.url)} on B; ${Date.now() - started} ms`
      )
      expect(bothFrom, context).toBeGreaterThanOrEqual(onB.acknowledged)
      expect(bothFrom, context).toBeGreaterThan(onBFrom)
      expect(patchedOn(a.url), context).toBeGreaterThan(0)
      expect(patchedOn(b.url), context).toBeGreaterThan(0)
      expect([...onB.requests, ...both.requests].filter((sent) => sent.method === "POST"), context).toEqual([])
      // The same upload throughout, whichever replica answered.
      const id = onA.url.split("/").pop() ?? ""
      expect(both.url.endsWith(`/uploads/${id}`), context).toBe(true)
      yield* expectOnlyTheFile(stack, b.url, { ...both, url: onA.url }, bytes, context)
    }), TEST_TIMEOUT)
})
