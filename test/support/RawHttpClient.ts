/**
 * One HTTP/1.1 exchange over a raw TCP socket, for the hostile-input fuzz: the
 * client writes exactly the bytes it is given, as the delivery says (at once, in
 * pieces with pauses, or stalling), reads whatever comes back, and reports how the
 * exchange ended. Every exchange ends within a bound: an answer, a closed socket,
 * a client that gave up on purpose, or (a failure) a server that neither answered
 * nor closed by the deadline.
 */
import { Effect } from "effect"
import * as net from "node:net"
import type { Delivery } from "./HostileRequests.js"

export interface RawResponse {
  readonly status: number
  /** Lowercase names; the last of a repeated header wins. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: Buffer
}

/**
 * `answered`: a final response came; `closed`: the server closed the socket
 * without one; `destroyed`: the client gave up (a stall) before one came; `hang`:
 * neither an answer nor a close by the deadline.
 */
export type Ending = "answered" | "closed" | "destroyed" | "hang"

export interface Outcome {
  /** Every whole response, interim (1xx) ones included, in order. */
  readonly responses: ReadonlyArray<RawResponse>
  readonly ending: Ending
  readonly elapsedMs: number
}

const CRLF = Buffer.from("\r\n")
const HEADERS_END = Buffer.from("\r\n\r\n")

/** A chunked body starting at `from`: its bytes and where the response ends, or undefined if incomplete. */
const dechunk = (data: Buffer, from: number): { readonly body: Buffer; readonly next: number } | undefined => {
  const pieces: Array<Buffer> = []
  let at = from
  for (;;) {
    const lineEnd = data.indexOf(CRLF, at)
    if (lineEnd < 0) return undefined
    const size = Number.parseInt(data.subarray(at, lineEnd).toString("latin1").split(";")[0] ?? "", 16)
    if (Number.isNaN(size)) return undefined
    if (size === 0) {
      const trailersEnd = data.indexOf(CRLF, lineEnd + 2) === lineEnd + 2
        ? lineEnd + 4
        : data.indexOf(HEADERS_END, lineEnd) + 4
      return trailersEnd < 4 ? undefined : { body: Buffer.concat(pieces), next: trailersEnd }
    }
    if (data.byteLength < lineEnd + 2 + size + 2) return undefined
    pieces.push(data.subarray(lineEnd + 2, lineEnd + 2 + size))
    at = lineEnd + 2 + size + 2
  }
}

/**
 * The whole responses in `data`. A response to HEAD (the first final one, when
 * `firstIsHead`), a 1xx, 204 or 304 has no body; one with neither a length nor
 * chunked coding ends when the connection does.
 */
export const parseResponses = (data: Buffer, firstIsHead: boolean, closed: boolean): Array<RawResponse> => {
  const out: Array<RawResponse> = []
  let offset = 0
  let finals = 0
  while (offset < data.byteLength) {
    const end = data.indexOf(HEADERS_END, offset)
    if (end < 0) break
    const [statusLine = "", ...lines] = data.subarray(offset, end).toString("latin1").split("\r\n")
    const match = /^HTTP\/\d\.\d (\d{3})/.exec(statusLine)
    if (match === null) break
    const status = Number(match[1])
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(":")
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const start = end + 4
    const noBody = status < 200 || status === 204 || status === 304 || (finals === 0 && firstIsHead)
    let body: Buffer
    if (noBody) {
      body = Buffer.alloc(0)
      offset = start
    } else if ((headers["transfer-encoding"] ?? "").toLowerCase().includes("chunked")) {
      const decoded = dechunk(data, start)
      if (decoded === undefined) break
      body = decoded.body
      offset = decoded.next
    } else if (headers["content-length"] !== undefined) {
      const length = Number(headers["content-length"])
      if (data.byteLength < start + length) break
      body = data.subarray(start, start + length)
      offset = start + length
    } else {
      if (!closed) break
      body = data.subarray(start)
      offset = data.byteLength
    }
    out.push({ status, headers, body })
    if (status >= 200) finals++
  }
  return out
}

export interface ExchangeOptions {
  readonly port: number
  readonly bytes: Uint8Array
  readonly delivery: Delivery
  /** The request is a HEAD: its response has no body. */
  readonly head: boolean
  /** After the last byte is written (or the stall begins, when waiting for the server): answer or close by then. */
  readonly deadlineMs: number
  /** After a whole answer, how long the connection must stay quiet (no pipelined answer) before the client closes it. */
  readonly lingerMs: number
}

/** Offsets (in bytes) where the delivery cuts the request. */
const cutsOf = (delivery: Delivery, length: number): ReadonlyArray<number> => {
  const at = (permille: number) => Math.floor(length * permille / 1000)
  switch (delivery._tag) {
    case "Whole":
      return [length]
    case "Pieces":
      return [...delivery.cuts.map(at), length]
    case "Stall":
    case "StallUntilDropped":
      return [at(delivery.at)]
  }
}

/** Sends one request as its delivery says and reports how the exchange ended. */
export const exchange = (options: ExchangeOptions): Effect.Effect<Outcome> =>
  Effect.async<Outcome>((resume) => {
    const started = performance.now()
    const socket = net.connect({ host: "127.0.0.1", port: options.port })
    const timers = new Set<NodeJS.Timeout>()
    let received = Buffer.alloc(0)
    let closed = false
    let done = false
    let linger: NodeJS.Timeout | undefined = undefined
    let allWritten = false

    const later = (ms: number, run: () => void) => {
      const timer = setTimeout(() => {
        timers.delete(timer)
        run()
      }, ms)
      timers.add(timer)
    }
    const answered = () => parseResponses(received, options.head, closed).some((response) => response.status >= 200)
    const finish = (ending: Ending) => {
      if (done) return
      done = true
      for (const timer of timers) clearTimeout(timer)
      socket.destroy()
      const responses = parseResponses(received, options.head, closed)
      const final = responses.some((response) => response.status >= 200)
      resume(Effect.succeed({
        responses,
        ending: final && ending !== "hang" ? "answered" : ending,
        elapsedMs: performance.now() - started
      }))
    }
    // Once answered, wait until the connection stays quiet for lingerMs: answers to pipelined requests may follow.
    const lingerIfAnswered = () => {
      if (!allWritten || !answered()) return
      if (linger !== undefined) {
        clearTimeout(linger)
        timers.delete(linger)
      }
      linger = setTimeout(() => finish("answered"), options.lingerMs)
      timers.add(linger)
    }

    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      lingerIfAnswered()
    })
    // The server may cut the connection while the client still writes; the close follows.
    socket.on("error", () => undefined)
    socket.on("close", () => {
      closed = true
      finish("closed")
    })

    const cuts = cutsOf(options.delivery, options.bytes.byteLength)
    const writeFrom = (index: number, offset: number) => {
      if (done) return
      const cut = cuts[index]
      if (cut === undefined) return
      if (cut > offset) socket.write(options.bytes.subarray(offset, cut))
      const next = Math.max(offset, cut)
      if (index + 1 < cuts.length) {
        const pause = options.delivery._tag === "Pieces" ? options.delivery.pauseMs : 0
        return later(pause, () => writeFrom(index + 1, next))
      }
      switch (options.delivery._tag) {
        case "Stall":
          return later(options.delivery.waitMs, () => finish("destroyed"))
        case "StallUntilDropped":
        case "Whole":
        case "Pieces":
          allWritten = true
          lingerIfAnswered()
          return later(options.deadlineMs, () => finish("hang"))
      }
    }
    socket.once("connect", () => writeFrom(0, 0))

    return Effect.sync(() => {
      done = true
      for (const timer of timers) clearTimeout(timer)
      socket.destroy()
    })
  })
