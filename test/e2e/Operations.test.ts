/**
 * What operators see, on the built server: Prometheus metrics at /metrics that move
 * by exactly what happened, OTLP traces (one upload's spans under one trace id),
 * one JSON log line per request carrying its X-Request-Id, and a graceful shutdown
 * on SIGTERM that lets uploads in flight finish, interrupts the rest (which then
 * leave nothing behind) and exits 0.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Schedule } from "effect"
import * as http from "node:http"
import * as net from "node:net"
import type { AddressInfo } from "node:net"
import { fileForm, request, textOfSize } from "../support/Http.js"
import * as ServerOnDatabase from "../support/ServerOnDatabase.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as TestDatabase from "../support/TestDatabase.js"

const noDatabase = Option.isNone(TestDatabase.serverUrl)

const uploadText = (
  base: string,
  name: string,
  type: string,
  bytes: Uint8Array,
  headers: Record<string, string> = {}
) => request(`${base}/files`, { method: "POST", headers, body: fileForm([{ field: "file", name, type, bytes }]) })

/** `name{labels} value` lines of an exposition, as a map from the series to its value. */
const parseMetrics = (text: string): ReadonlyMap<string, number> =>
  new Map(
    text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).map((line) => {
      const space = line.lastIndexOf(" ")
      return [line.slice(0, space), Number(line.slice(space + 1))] as const
    })
  )

const scrape = (base: string) =>
  Effect.map(request(`${base}/metrics`), (response) => {
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/)
    return parseMetrics(new TextDecoder().decode(response.bytes))
  })

/** A loopback OTLP/HTTP receiver: every JSON body posted to /v1/traces. */
const otlpReceiver = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly bodies: Array<unknown>; readonly server: http.Server }>((resume) => {
    const bodies: Array<unknown> = []
    const server = http.createServer((req, res) => {
      let body = ""
      req.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")))
      req.on("end", () => {
        if (req.url === "/v1/traces") bodies.push(JSON.parse(body))
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(
      0,
      "127.0.0.1",
      () =>
        resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies, server }))
    )
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
    })
)

interface ExportedSpan {
  readonly traceId: string
  readonly spanId: string
  readonly name: string
}

const spansOf = (bodies: ReadonlyArray<unknown>): ReadonlyArray<ExportedSpan> =>
  bodies.flatMap((body) =>
    (body as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<ExportedSpan> }> }> }).resourceSpans
      .flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans))
  )

describe("operations, on the built server", () => {
  it.scopedLive.skipIf(noDatabase)(
    "GET /metrics moves by exactly the uploads, refusals, bytes and downloads that happened",
    () =>
      Effect.gen(function*() {
        const server = yield* ServerOnDatabase.start({ RECONCILE_INTERVAL_SECONDS: "0" })
        const before = yield* scrape(server.url)
        const sizes = [600, 700, 800]
        const stored = yield* Effect.forEach(sizes, (size, i) =>
          uploadText(server.url, `ok-${i}.txt`, "text/plain", textOfSize(size)))
        expect(stored.map((r) =>
          r.status
        )).toEqual([201, 201, 201])
        expect((yield* uploadText(server.url, "small.txt", "text/plain", textOfSize(10))).status).toBe(422)
        expect((yield* uploadText(server.url, "x.png", "image/png", textOfSize(600))).status).toBe(415)
        const id = (stored[0]?.json as { id: string }).id
        expect((yield* request(`${server.url}/files/${id}/content`)).status).toBe(200)
        const after = yield* scrape(server.url)
        const moved = (series: string) => (after.get(series) ?? 0) - (before.get(series) ?? 0)
        expect(moved("tandem_uploads_total{outcome=\"stored\"}")).toBe(3)
        expect(moved("tandem_uploads_total{outcome=\"FileTooSmall\"}")).toBe(1)
        expect(moved("tandem_uploads_total{outcome=\"ContentTypeNotAllowed\"}")).toBe(1)
        expect(moved("tandem_upload_duration_seconds_count")).toBe(5)
        expect(moved("tandem_stored_bytes_total")).toBe(600 + 700 + 800)
        expect(moved("tandem_downloads_total")).toBe(1)
        expect(after.get("tandem_uploads_in_flight")).toBe(0)
        expect(after.get("tandem_uploads_in_flight_limit")).toBeGreaterThan(0)
        expect(after.get("tandem_database_pool_size")).toBeGreaterThan(0)
        expect(after.has("tandem_database_connections_in_use")).toBe(true)
        // A refused upload compensates (its intent goes): counted, and none failed.
        expect(moved("tandem_compensations_total{result=\"failed\"}")).toBe(0)
      }),
    60_000
  )

  it.scopedLive.skipIf(noDatabase)(
    "with OTEL_EXPORTER_OTLP_ENDPOINT, one upload's spans (the request, the workflow, the port calls) arrive under one trace id",
    () =>
      Effect.gen(function*() {
        const receiver = yield* otlpReceiver
        const server = yield* ServerOnDatabase.start({
          RECONCILE_INTERVAL_SECONDS: "0",
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url
        })
        const response = yield* uploadText(server.url, "traced.txt", "text/plain", textOfSize(700))
        expect(response.status).toBe(201)
        // Spans are exported in batches; a clean stop flushes the last one.
        yield* ServerProcess.stop(server.child)
        const spans = spansOf(receiver.bodies)
        const requestSpan = spans.find((span) => span.name === "http.server POST")
        expect(requestSpan).toBeDefined()
        const trace = spans.filter((span) => span.traceId === requestSpan?.traceId).map((span) => span.name)
        // The request, the workflow, each port call (the repository's and the object
        // store's) and the SQL under them: one trace.
        expect(trace).toEqual(expect.arrayContaining([
          "http.server POST",
          "FileService.uploadOnce",
          "PgFileRepository.insertPending",
          "LocalDiskObjectStore.put",
          "PgFileRepository.withTransaction",
          "PgFileRepository.commitPending",
          "sql.execute"
        ]))
      }),
    60_000
  )

  it.scopedLive.skipIf(noDatabase)(
    "with LOG_FORMAT=json every request is one JSON line with its X-Request-Id, accepted or made up, and returned",
    () =>
      Effect.gen(function*() {
        const server = yield* ServerOnDatabase.start({ LOG_FORMAT: "json", LOG_LEVEL: "Info" })
        const sent = yield* uploadText(server.url, "logged.txt", "text/plain", textOfSize(700), {
          "x-request-id": "client-chosen-id-1"
        })
        expect(sent.status).toBe(201)
        expect(sent.headers.get("x-request-id")).toBe("client-chosen-id-1")
        const id = (sent.json as { id: string }).id
        const made = yield* request(`${server.url}/files/does-not-exist`)
        expect(made.status).toBe(404)
        const madeId = made.headers.get("x-request-id") ?? ""
        expect(madeId).toMatch(/^[0-9a-f-]{36}$/)
        // A request id that is not short and plain is replaced, not echoed.
        const hostile = yield* request(`${server.url}/healthz`, {
          headers: { "x-request-id": "a b\u00e9".repeat(100) }
        })
        expect(hostile.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
        const lines = yield* Effect.retry(
          Effect.suspend(() => {
            const parsed = server.output().split("\n").filter((line) => line.startsWith("{")).map((line) =>
              JSON.parse(line) as { message: unknown; annotations: Record<string, unknown> }
            )
            const requests = parsed.filter((entry) =>
              entry.message === "request" || (Array.isArray(entry.message) && entry.message[0] === "request")
            )
            return requests.length >= 3 ? Effect.succeed(requests) : Effect.fail("not yet")
          }),
          Schedule.spaced("50 millis").pipe(Schedule.upTo("5 seconds"))
        )
        const upload = lines.find((entry) => entry.annotations.requestId === "client-chosen-id-1")
        expect(upload?.annotations).toMatchObject({
          method: "POST",
          route: "/files",
          status: 201,
          owner: "local",
          fileId: id,
          requestId: "client-chosen-id-1"
        })
        expect(typeof upload?.annotations.durationMs).toBe("number")
        expect(lines.filter((entry) => entry.annotations.requestId === "client-chosen-id-1")).toHaveLength(1)
        expect(lines.find((entry) => entry.annotations.requestId === madeId)?.annotations).toMatchObject({
          method: "GET",
          status: 404
        })
      }),
    60_000
  )

  it.scopedLive.skipIf(noDatabase)(
    "SIGTERM after a client was dropped mid-response (a HEAD, then garbage on the same connection): exit 0",
    () =>
      Effect.gen(function*() {
        const server = yield* ServerOnDatabase.start({ RECONCILE_INTERVAL_SECONDS: "0", SHUTDOWN_TIMEOUT_SECONDS: "2" })
        const exited = yield* Deferred.make<number | null>()
        server.child.once("exit", (code) => Deferred.unsafeDone(exited, Exit.succeed(code)))
        const { hostname, port } = new URL(server.url)
        // Node answers the garbage with 400 and destroys the socket while the HEAD's
        // handler is still at the database: its response can then never end.
        for (const path of [`/uploads/${crypto.randomUUID()}`, `/files/${crypto.randomUUID()}`, "/readyz"]) {
          yield* Effect.async<void>((resume) => {
            const socket = net.connect(Number(port), hostname, () => {
              socket.write(`HEAD ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n\r\nGARBAGE\r\n\r\n`)
            })
            socket.on("error", () => undefined)
            socket.on("close", () => resume(Effect.void))
            socket.resume()
          })
        }
        yield* Effect.sleep("500 millis")
        server.child.kill("SIGTERM")
        const code = yield* Deferred.await(exited).pipe(Effect.timeout("20 seconds"))
        expect(code).toBe(0)
      }),
    60_000
  )

  it.scopedLive.skipIf(noDatabase)(
    "SIGTERM during 20 uploads: each one got a 201 and is readable after a restart, or left nothing behind; exit 0",
    () =>
      Effect.gen(function*() {
        const server = yield* ServerOnDatabase.start({
          RECONCILE_INTERVAL_SECONDS: "0",
          SHUTDOWN_TIMEOUT_SECONDS: "5",
          UPLOAD_MAX_BYTES: String(64 * 1024 * 1024),
          S3_PART_SIZE: String(5 * 1024 * 1024)
        })
        const exited = yield* Deferred.make<number | null>()
        server.child.once("exit", (code) => Deferred.unsafeDone(exited, Exit.succeed(code)))
        // Half the uploads take about 2 s, within the shutdown timeout: they must be let
        // finish. Half trickle for 32 s: the server must interrupt them.
        const finishing = (i: number) => i % 2 === 0
        const uploads = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
          Effect.fork(ServerOnDatabase.slowUpload(server.url, `f-${i}.txt`, {
            size: finishing(i) ? 1024 * 1024 : 8 * 1024 * 1024,
            chunksPerSecond: finishing(i) ? 8 : 4
          })))
        // SIGTERM once all 20 are in flight.
        yield* ServerOnDatabase.untilInFlight(server.url, 20)
        server.child.kill("SIGTERM")
        const code = yield* Deferred.await(exited).pipe(Effect.timeout("30 seconds"))
        expect(code).toBe(0)
        const outcomes = yield* Fiber.joinAll(uploads)
        const acknowledged = outcomes.flatMap((outcome) => (outcome.status === 201 ? [outcome.id] : []))
        expect(outcomes.map((outcome, i) => [i, finishing(i) ? outcome.status : outcome.status === 201]))
          .toEqual(outcomes.map((_, i) => [i, finishing(i) ? 201 : false]))
        // Nothing left behind: no intent, and an object for each stored file only.
        expect(yield* ServerOnDatabase.counts(server.sql)).toEqual({ committed: acknowledged.length })
        expect((yield* ServerOnDatabase.objectsIn(server.dataDir)).length).toBe(acknowledged.length)
        const restarted = yield* ServerProcess.start(server.env)
        for (const id of acknowledged) {
          expect((yield* request(`${restarted.url}/files/${id}/content`)).status).toBe(200)
        }
      }),
    120_000
  )
})
