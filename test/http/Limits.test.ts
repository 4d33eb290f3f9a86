/**
 * The HTTP server's timeouts and caps, on the real wiring (`Server.httpServerLayer`,
 * the factory `npm start` uses) with small values: no whole-request cap (a slow but
 * steady upload outlives every timeout and is stored), a client that stops sending
 * is dropped at the idle timeout and compensated, slow headers are dropped at the
 * headers timeout; uploads past MAX_CONCURRENT_UPLOADS are refused at once with 503
 * ServerBusy and their body is not read; connections past MAX_CONNECTIONS are closed.
 * Clients speak raw HTTP/1.1 over TCP, so the test sees exactly when the server
 * answers or drops them; each wait is on an event (a response, a close, a store call).
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Layer } from "effect"
import * as net from "node:net"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as ApiServer from "../../src/adapters/http/ApiServer.js"
import { FileService } from "../../src/app/FileService.js"
import * as UploadSettings from "../../src/app/UploadSettings.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import * as Server from "../../src/main/Server.js"
import * as Settings from "../../src/main/Settings.js"
import { noQuota } from "../../src/ports/FileRepository.js"
import * as Backends from "../support/Backends.js"
import * as FaultInjection from "../support/FaultInjection.js"
import { textOfSize, upload } from "../support/Http.js"
import { expectSettled, snapshot } from "../support/Snapshot.js"
import * as TestServer from "../support/TestServer.js"

const PART = TestServer.testPartSize
const settings = UploadSettings.layer({
  policy: new UploadPolicy({ minBytes: 512, maxBytes: 1024 * 1024, contentTypes: ["text/plain"], extensions: ["txt"] }),
  keyPrefix: TestServer.testPrefix,
  quota: noQuota
})

/** The real server factory over the in-memory stores, wrapped so the test can see every store call. */
const serverWith = (limits: Server.HttpServerLimits & { readonly maxConcurrentUploads: number }) => {
  const stores = FaultInjection.layer(Layer.merge(Backends.memory, MemoryFileRepository.layer), { partSize: PART })
  return ApiServer.layer({ ...TestServer.testApiOptions, maxConcurrentUploads: limits.maxConcurrentUploads }).pipe(
    Layer.provideMerge(FileService.Default.pipe(Layer.provideMerge(Layer.merge(stores, settings)))),
    Layer.provideMerge(Server.httpServerLayer({ host: "127.0.0.1", port: 0 }, limits)),
    Layer.provide(TestServer.quietLogs)
  )
}

interface RawResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/**
 * One HTTP/1.1 connection spoken byte by byte: the test decides what is sent and
 * when, reads responses as they come, and sees the moment the server closes it.
 */
class RawClient {
  private received = Buffer.alloc(0)
  private readonly waiters = new Set<() => void>()
  closedAt: number | undefined = undefined
  /** Bytes handed to the socket so far. */
  sent = 0
  readonly closed: Promise<number>

  constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk])
      this.wake()
    })
    // The server may cut the connection while the client still writes.
    socket.on("error", () => undefined)
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.closedAt = performance.now()
        this.wake()
        resolve(this.closedAt)
      })
    )
  }

  private wake() {
    for (const waiter of [...this.waiters]) waiter()
  }

  get isClosed() {
    return this.closedAt !== undefined
  }

  /** Everything received so far, as text. */
  get text() {
    return this.received.toString("latin1")
  }

  /** Resolves once the bytes are handed to the kernel (or the connection is gone). */
  write(data: string | Uint8Array): Promise<void> {
    if (this.isClosed || this.socket.destroyed) return Promise.resolve()
    this.sent += typeof data === "string" ? Buffer.byteLength(data) : data.byteLength
    return new Promise((resolve) => {
      const flushed = this.socket.write(data, () => resolve())
      if (!flushed) this.socket.once("close", () => resolve())
    })
  }

  /** The next whole response (Content-Length framed), or undefined if the connection closes first. */
  nextResponse(): Promise<RawResponse | undefined> {
    return new Promise((resolve) => {
      const check = () => {
        const parsed = this.takeResponse()
        if (parsed !== undefined || this.isClosed) {
          this.waiters.delete(check)
          resolve(parsed)
        }
      }
      this.waiters.add(check)
      check()
    })
  }

  private takeResponse(): RawResponse | undefined {
    const end = this.received.indexOf("\r\n\r\n")
    if (end < 0) return undefined
    const [statusLine = "", ...lines] = this.received.subarray(0, end).toString("latin1").split("\r\n")
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(":")
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const length = Number(headers["content-length"] ?? "0")
    if (this.received.byteLength < end + 4 + length) return undefined
    const body = this.received.subarray(end + 4, end + 4 + length).toString("utf8")
    this.received = this.received.subarray(end + 4 + length)
    return { status: Number(statusLine.split(" ")[1]), headers, body }
  }

  destroy() {
    this.socket.destroy()
  }
}

const connect = (base: string) =>
  Effect.acquireRelease(
    Effect.async<RawClient>((resume) => {
      const url = new URL(base)
      const socket = net.connect({ host: url.hostname, port: Number(url.port) })
      const client = new RawClient(socket)
      socket.once("connect", () => resume(Effect.succeed(client)))
    }),
    (client) => Effect.sync(() => client.destroy())
  )

const write = (client: RawClient, data: string | Uint8Array) => Effect.promise(() => client.write(data))
const nextResponse = (client: RawClient) => Effect.promise(() => client.nextResponse())
/** The time the server closed the connection; fails the test if it stays open past `within`. */
const closedWithin = (client: RawClient, within: Duration.DurationInput) =>
  Effect.promise(() => client.closed).pipe(
    Effect.timeoutFail({
      duration: within,
      onTimeout: () => new Error(`the server kept the connection open for ${Duration.format(within)}`)
    }),
    Effect.orDie
  )

const preamble = (name: string) =>
  `--b\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: text/plain\r\n\r\n`
const epilogue = "\r\n--b--\r\n"

/** Request headers of an upload whose body has `length` bytes. */
const uploadHead = (length: number) =>
  `POST /files HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n` +
  `Content-Length: ${length}\r\n\r\n`

const healthz = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"

describe("the configured server", () => {
  it("has no whole-request cap, and the timeouts and cap it was given", () => {
    const server = Server.makeNodeServer({ headersTimeout: "1 second", idleTimeout: "2 seconds", maxConnections: 7 })
    expect(server.requestTimeout).toBe(0)
    expect(server.headersTimeout).toBe(1000)
    expect(server.timeout).toBe(2000)
    expect(server.maxConnections).toBe(7)
  })

  it.effect("reads its limits from the environment, with the documented defaults", () =>
    Effect.gen(function*() {
      const read = (env: Record<string, string>) =>
        Effect.either(Effect.withConfigProvider(Settings.limits, ConfigProvider.fromMap(new Map(Object.entries(env)))))
      const defaults = yield* read({})
      expect(Either.map(defaults, (limits) => ({
        ...limits,
        headersTimeout: Duration.toSeconds(limits.headersTimeout),
        idleTimeout: Duration.toSeconds(limits.idleTimeout)
      }))).toEqual(
        Either.right({ headersTimeout: 30, idleTimeout: 60, maxConnections: 1024, maxConcurrentUploads: 64 })
      )
      for (const variable of ["HTTP_HEADERS_TIMEOUT_SECONDS", "HTTP_IDLE_TIMEOUT_SECONDS"]) {
        const refused = yield* read({ [variable]: "0" })
        expect(Either.isLeft(refused) && String(refused.left)).toContain(variable)
      }
      for (const variable of ["MAX_CONNECTIONS", "MAX_CONCURRENT_UPLOADS"]) {
        for (const value of ["0", "2.5", "many"]) {
          const refused = yield* read({ [variable]: value })
          expect(Either.isLeft(refused) && String(refused.left)).toContain(variable)
        }
      }
    }))
})

layer(
  serverWith({ headersTimeout: "1 second", idleTimeout: "1 second", maxConnections: 100, maxConcurrentUploads: 64 }),
  { excludeTestServices: true, timeout: 60_000 }
)("timeouts (headers 1 s, idle 1 s)", (it) => {
  it.scoped("an upload that keeps sending for 6 s, far past both timeouts, is stored: 201", () =>
    Effect.gen(function*() {
      const base = yield* TestServer.baseUrl
      const content = textOfSize(20 * 1024)
      const client = yield* connect(base)
      const body = Buffer.concat([Buffer.from(preamble("slow.txt")), content, Buffer.from(epilogue)])
      const started = performance.now()
      yield* write(client, uploadHead(body.byteLength))
      // A chunk every 300 ms: 20 chunks, 6 s in all (each gap well within the idle timeout).
      const chunk = Math.ceil(body.byteLength / 20)
      for (let offset = 0; offset < body.byteLength; offset += chunk) {
        yield* write(client, body.subarray(offset, offset + chunk))
        if (offset + chunk < body.byteLength) yield* Effect.sleep("300 millis")
      }
      const response = yield* nextResponse(client)
      const elapsed = performance.now() - started
      expect(elapsed).toBeGreaterThan(5_000)
      expect(response?.status).toBe(201)
      expect(JSON.parse(response?.body ?? "{}")).toMatchObject({ name: "slow.txt", size: content.byteLength })
    }))

  it.scoped("a client that stops sending mid-body is dropped at the idle timeout; nothing is left", () =>
    Effect.gen(function*() {
      const base = yield* TestServer.baseUrl
      const plan = yield* FaultInjection.FaultPlan
      yield* plan.clear
      const before = yield* snapshot
      const client = yield* connect(base)
      const head = preamble("stalled.txt")
      // Announces a 3-part file, sends two parts' worth, then goes silent.
      yield* write(client, uploadHead(head.length + 3 * PART + epilogue.length))
      yield* write(client, head)
      yield* write(client, textOfSize(2 * PART + 100))
      const silentFrom = performance.now()
      yield* plan.reached("store.uploadPart")
      const closedAt = yield* closedWithin(client, "5 seconds")
      // The request's fiber is interrupted; compensation ends by dropping the intent.
      yield* plan.reached("repo.remove")
      const silence = closedAt - silentFrom
      expect(silence).toBeGreaterThan(900)
      expect(silence).toBeLessThan(3_000)
      expect(client.text).toBe("")
      expect(yield* plan.calls).toEqual(expect.arrayContaining(["repo.insertPending", "store.abortMultipart"]))
      expect(expectSettled(yield* snapshot)).toEqual({ intents: [], strayObjects: [] })
      expect(yield* snapshot).toEqual(before)
      expect(yield* plan.openUploads).toEqual([])
    }))

  it.scoped("a client that sends its headers too slowly is dropped at the headers timeout with 408", () =>
    Effect.gen(function*() {
      const base = yield* TestServer.baseUrl
      const client = yield* connect(base)
      const connectedAt = performance.now()
      yield* write(client, "POST /files HTTP/1.1\r\nHost: localhost\r\n")
      // A header line every 200 ms: never idle, never done; for at most 5 s.
      yield* Effect.promise(async () => {
        for (let i = 0; !client.isClosed && performance.now() - connectedAt < 5_000; i++) {
          await client.write(`X-Slow-${i}: still coming\r\n`)
          await new Promise((resolve) => setTimeout(resolve, 200))
        }
      })
      expect(client.isClosed, "the server kept the connection open through 5 s of slow headers").toBe(true)
      const elapsed = (client.closedAt ?? Infinity) - connectedAt
      expect(elapsed).toBeGreaterThan(900)
      expect(elapsed).toBeLessThan(2_500)
      expect(client.text).toMatch(/^HTTP\/1\.1 408 /)
    }))
})

layer(
  serverWith({ headersTimeout: "10 seconds", idleTimeout: "10 seconds", maxConnections: 100, maxConcurrentUploads: 2 }),
  { excludeTestServices: true, timeout: 60_000 }
)("MAX_CONCURRENT_UPLOADS = 2", (it) => {
  it.scoped("a third upload is refused at once with 503 ServerBusy and Retry-After, its body unread; the two finish", () =>
    Effect.gen(function*() {
      const base = yield* TestServer.baseUrl
      const plan = yield* FaultInjection.FaultPlan
      const content = textOfSize(2048)
      const holding = [] as Array<RawClient>
      for (const name of ["first.txt", "second.txt"]) {
        yield* plan.clear
        const client = yield* connect(base)
        yield* write(client, uploadHead(preamble(name).length + content.byteLength + epilogue.length))
        yield* write(client, preamble(name))
        yield* write(client, content.subarray(0, 700))
        // In the workflow, so holding its permit.
        yield* plan.reached("repo.insertPending")
        holding.push(client)
      }

      yield* plan.clear
      const refused = yield* connect(base)
      const size = 64 * 1024 * 1024
      yield* write(
        refused,
        "POST /files HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n" +
          "Transfer-Encoding: chunked\r\n\r\n"
      )
      // Streams a 64 MiB body until the answer comes (or the connection is cut).
      const chunk = Buffer.concat([Buffer.from(`10000\r\n`), Buffer.alloc(64 * 1024, 0x61), Buffer.from("\r\n")])
      const sending = Effect.promise(async () => {
        await refused.write(`${preamble("third.txt").length.toString(16)}\r\n${preamble("third.txt")}\r\n`)
        for (let sent = 0; sent < size && !refused.isClosed && refused.text.length === 0; sent += 64 * 1024) {
          await refused.write(chunk)
        }
      })
      const [response] = yield* Effect.all([nextResponse(refused), sending], { concurrency: 2 })
      expect(response?.status).toBe(503)
      expect(JSON.parse(response?.body ?? "{}")).toMatchObject({ error: "ServerBusy" })
      expect(response?.headers["retry-after"]).toBe("1")
      expect(response?.headers["connection"]).toBe("close")
      yield* closedWithin(refused, "5 seconds")
      expect(refused.sent).toBeLessThan(size)
      // It never reached the workflow.
      expect(yield* plan.calls).toEqual([])

      // The two in flight were not disturbed, and finish.
      for (const client of holding) {
        yield* write(client, Buffer.concat([content.subarray(700), Buffer.from(epilogue)]))
        expect((yield* nextResponse(client))?.status).toBe(201)
      }
      // Their permits are back.
      expect((yield* upload(base, "after.txt", "text/plain", content)).status).toBe(201)
      expect(expectSettled(yield* snapshot)).toEqual({ intents: [], strayObjects: [] })
      expect((yield* snapshot).files).toHaveLength(3)
    }))

  it.effect("a permit comes back when an upload fails too", () =>
    Effect.gen(function*() {
      const base = yield* TestServer.baseUrl
      for (let i = 0; i < 3; i++) {
        expect((yield* upload(base, "bad.exe", "text/plain", textOfSize(600))).status).toBe(422)
      }
      expect((yield* upload(base, "good.txt", "text/plain", textOfSize(600))).status).toBe(201)
    }))
})

layer(
  serverWith({ headersTimeout: "10 seconds", idleTimeout: "10 seconds", maxConnections: 3, maxConcurrentUploads: 64 }),
  { excludeTestServices: true, timeout: 60_000 }
)("MAX_CONNECTIONS = 3", (it) => {
  it.scoped("a fourth connection is closed by the server; the three stay usable", () =>
    Effect.gen(function*() {
      const base = yield* TestServer.baseUrl
      const open = [] as Array<RawClient>
      for (let i = 0; i < 3; i++) {
        const client = yield* connect(base)
        yield* write(client, healthz)
        expect((yield* nextResponse(client))?.status).toBe(200)
        open.push(client)
      }
      const extra = yield* connect(base)
      yield* write(extra, healthz)
      yield* closedWithin(extra, "5 seconds")
      expect(extra.text).toBe("")
      // Keep-alive: each of the three answers again on its own connection.
      for (const client of open) {
        yield* write(client, healthz)
        expect((yield* nextResponse(client))?.status).toBe(200)
        expect(client.isClosed).toBe(false)
      }
    }))
})
