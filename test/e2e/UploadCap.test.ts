/**
 * MAX_CONCURRENT_UPLOADS on the built server (`npm start`) against PostgreSQL and the
 * local-disk store: 32 clients upload 12 MiB each at once against a cap of 8. Every
 * client sends its headers and a first chunk; the ones the server took hold the rest
 * of their body until all the others were refused, so exactly 8 are stored and 24
 * get 503 ServerBusy, whatever the timing. The server's memory follows the cap: its
 * peak RSS (VmHWM, reset just before the uploads) stays under idle + 8 × 2 × S3_PART_SIZE
 * + 64 MiB.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Option, Redacted } from "effect"
import * as Fs from "node:fs/promises"
import * as http from "node:http"
import * as Path from "node:path"
import { textOfSize } from "../support/Http.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as TempDirectory from "../support/TempDirectory.js"
import * as TestDatabase from "../support/TestDatabase.js"

const MiB = 1024 * 1024
const PART_SIZE = 5 * MiB
const CAP = 8
const CLIENTS = 32
const FILE_SIZE = 12 * MiB
const FIRST_CHUNK = 64 * 1024

/** VmRSS and VmHWM of a process, in bytes. */
const memoryOf = (pid: number) =>
  Effect.promise(async () => {
    const status = await Fs.readFile(`/proc/${pid}/status`, "utf8")
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024
    return { rss: field("VmRSS"), hwm: field("VmHWM") }
  })

/** Resets the process's peak RSS to its current RSS (Linux ≥ 4.0); false where that is not allowed. */
const resetPeak = (pid: number) =>
  Effect.promise(() => Fs.writeFile(`/proc/${pid}/clear_refs`, "5").then(() => true, () => false))

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`

interface Outcome {
  readonly status: number
  readonly retryAfter: string | undefined
  readonly body: string
}

/**
 * One upload: headers and the first chunk at once; the rest only once `go` opens
 * (or never, if the server answers first). A response other than 201 counts as a
 * refusal through `onRefused`.
 */
const uploadHolding = (
  url: string,
  content: Buffer,
  name: string,
  go: Promise<void>,
  onRefused: () => void
) =>
  new Promise<Outcome>((resolve) => {
    const head = Buffer.from(
      `--b\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: text/plain\r\n\r\n`
    )
    const tail = Buffer.from("\r\n--b--\r\n")
    let answered = false
    const req = http.request(`${url}/files`, {
      method: "POST",
      agent: false,
      headers: {
        "content-type": "multipart/form-data; boundary=b",
        "content-length": String(head.byteLength + content.byteLength + tail.byteLength)
      }
    })
    req.on("response", (res) => {
      answered = true
      if (res.statusCode !== 201) onRefused()
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () => {
        resolve({
          status: res.statusCode ?? 0,
          retryAfter: res.headers["retry-after"],
          body: Buffer.concat(chunks).toString("utf8")
        })
        req.destroy()
      })
    })
    req.on("error", (error) => {
      if (!answered) resolve({ status: 0, retryAfter: undefined, body: String(error) })
    })
    req.write(Buffer.concat([head, content.subarray(0, FIRST_CHUNK)]))
    void go.then(async () => {
      for (let offset = FIRST_CHUNK; offset < content.byteLength && !answered; offset += 256 * 1024) {
        if (!req.write(content.subarray(offset, offset + 256 * 1024))) {
          await new Promise<void>((resume) => {
            const done = () => {
              req.off("drain", done)
              req.off("close", done)
              resume()
            }
            req.on("drain", done)
            req.on("close", done)
          })
        }
      }
      if (!answered) req.end(tail)
    })
  })

describe.skipIf(Option.isNone(TestDatabase.serverUrl))("npm start with MAX_CONCURRENT_UPLOADS=8", () => {
  it.live(
    "32 concurrent 12 MiB uploads: exactly 8 stored, 24 refused with 503 ServerBusy, peak memory bounded by the cap",
    () =>
      Effect.gen(function*() {
        const server = Option.getOrThrow(TestDatabase.serverUrl)
        const databaseUrl = yield* TestDatabase.freshDatabaseUrl(server)
        const dataDir = yield* TempDirectory.make("upload-cap")
        const tandem = yield* ServerProcess.start({
          DATA_DIR: dataDir,
          DATABASE_URL: Redacted.value(databaseUrl),
          S3_PART_SIZE: String(PART_SIZE),
          UPLOAD_MAX_BYTES: String(16 * MiB),
          MAX_CONCURRENT_UPLOADS: String(CAP),
          RECONCILE_INTERVAL_SECONDS: "0",
          // One line per request is the Info level's; refusals are warnings.
          LOG_LEVEL: "Info"
        })
        const pid = tandem.child.pid
        if (pid === undefined) return yield* Effect.die(new Error("the server has no pid"))
        const ready = yield* Effect.promise(() => fetch(`${tandem.url}/readyz`))
        expect(ready.status).toBe(200)

        const content = Buffer.from(textOfSize(FILE_SIZE))
        const startupPeak = (yield* memoryOf(pid)).hwm
        const idle = (yield* memoryOf(pid)).rss
        const reset = yield* resetPeak(pid)

        // The held bodies go on once every refusal is in; the deadline only matters
        // when the cap does not work (then the test fails on the counts, not a hang).
        const allRefused = yield* Deferred.make<void>()
        let refusals = 0
        const onRefused = () => {
          refusals += 1
          if (refusals === CLIENTS - CAP) Deferred.unsafeDone(allRefused, Effect.void)
        }
        const go = Effect.runPromise(
          Deferred.await(allRefused).pipe(Effect.timeout("20 seconds"), Effect.ignore)
        )
        let sampledPeak = idle
        const sampler = setInterval(() => {
          void Fs.readFile(`/proc/${pid}/status`, "utf8").then((status) => {
            const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024
            sampledPeak = Math.max(sampledPeak, rss)
          }, () => undefined)
        }, 50)
        const started = performance.now()
        const outcomes = yield* Effect.promise(() =>
          Promise.all(
            Array.from(
              { length: CLIENTS },
              (_, i) => uploadHolding(tandem.url, content, `load-${i}.txt`, go, onRefused)
            )
          )
        ).pipe(Effect.ensuring(Effect.sync(() => clearInterval(sampler))))
        const seconds = (performance.now() - started) / 1000
        const { hwm: peak, rss: after } = yield* memoryOf(pid)

        const budget = idle + CAP * 2 * PART_SIZE + 64 * MiB
        const stored = outcomes.filter((o) => o.status === 201)
        const busy = outcomes.filter((o) => o.status === 503)
        console.log(
          [
            `upload cap: ${CLIENTS} clients × ${mib(FILE_SIZE)}, MAX_CONCURRENT_UPLOADS=${CAP}, ` +
            `S3_PART_SIZE=${mib(PART_SIZE)}, in ${seconds.toFixed(1)} s`,
            `  201: ${stored.length}, 503: ${busy.length}, other: ${CLIENTS - stored.length - busy.length}`,
            `  RSS idle ${mib(idle)}, peak (VmHWM${reset ? ", reset before the uploads" : ", since start-up"}) ` +
            `${mib(peak)} (+${mib(peak - idle)}), sampled peak ${mib(sampledPeak)}, after ${mib(after)}; ` +
            `start-up peak ${mib(startupPeak)}`,
            `  budget idle + ${CAP} × 2 × ${mib(PART_SIZE)} + 64 MiB = ${mib(budget)}`
          ].join("\n")
        )

        expect(stored).toHaveLength(CAP)
        expect(busy).toHaveLength(CLIENTS - CAP)
        for (const refusal of busy) {
          expect(JSON.parse(refusal.body)).toMatchObject({ error: "ServerBusy" })
          expect(refusal.retryAfter).toBe("1")
        }
        for (const accepted of stored) expect(JSON.parse(accepted.body)).toMatchObject({ size: FILE_SIZE })
        const listed = yield* Effect.promise(() =>
          fetch(`${tandem.url}/files?limit=100`).then((r) =>
            r.json() as Promise<{ items: Array<{ id: string; size: number }> }>
          )
        )
        expect(listed.items.map((item) => item.size)).toEqual(Array.from({ length: CAP }, () => FILE_SIZE))
        // The files' objects, and no others (object names end with the file's id).
        const objects = yield* Effect.promise(() => Fs.readdir(Path.join(dataDir, "objects")))
        const fileObjects = objects.filter((name) => /[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/.test(name))
        expect(fileObjects).toHaveLength(CAP)
        for (const { id } of listed.items) expect(fileObjects.some((name) => name.endsWith(id))).toBe(true)
        // No refused or finished upload left a temp file behind.
        const temps = yield* Effect.promise(() => Fs.readdir(Path.join(dataDir, "objects", ".tmp")).catch(() => []))
        expect(temps).toEqual([])
        expect(peak).toBeLessThan(budget)
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
