/**
 * Whole HTTP/1.1 requests as a hostile client writes them, byte for byte, for the
 * fuzz in test/e2e/HostileInput.test.ts. A request is a plain model (method,
 * target, headers, body, framing, delivery) that fast-check generates and shrinks,
 * rendered to bytes only when it is sent, so a counterexample reads as what was
 * sent. Targets and headers may name the seed files the test uploads first:
 * `{id:K}` is the K-th seed file's id, `{etag:K}` its quoted sha256; a DELETE
 * names `{victim:K}`, another set of seed files, so that the files the others read
 * stay there; `{cursor}` is a real `nextCursor` of the listing, `{link}` a real signed
 * link (`/files/{id}/content?expires=…&signature=…`) to the first seed file.
 *
 * tus requests (`/uploads`) name the seed uploads the test keeps alive: `{upload:K}`
 * is the K-th one's id, `{offset:K}` its offset as last seen, `{length:K}` its
 * Upload-Length; `{gone:K}` is an upload that is no more (finished, terminated or
 * expired); a `Fill` body is the bytes from that offset to the end (give or take),
 * and `{sha1}`, `{sha256}` in a header the base64 digest of the body as sent.
 */
import { Encoding, FastCheck as fc } from "effect"
import { createHash } from "node:crypto"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import { invalidName, invalidUtf8OfLength, utf8Between, utf8OfLength, validName } from "./Arbitraries.js"

/** How many seed files a target may name (`{id:0}` … `{id:SEED_FILES-1}`), and as many victims. */
export const SEED_FILES = 6

/**
 * The seed uploads (`{upload:0}` … `{upload:SEED_UPLOADS-1}`): each of this
 * Upload-Length, created with this many bytes already sent (ASCII text), and made
 * again so whenever one is gone: at its start, one byte in, partway, one byte short
 * of its end.
 */
export const seedUploadShapes: ReadonlyArray<{ readonly length: number; readonly offset: number }> = [
  { length: 512, offset: 0 },
  { length: 600, offset: 1 },
  { length: 1000, offset: 300 },
  { length: 2048, offset: 1024 },
  { length: 700, offset: 699 },
  { length: 1500, offset: 0 },
  { length: 2048, offset: 2047 },
  { length: 900, offset: 512 }
]
export const SEED_UPLOADS = seedUploadShapes.length

const policy = UploadPolicy.default

/** `prefix` then a long run of one string, kept short in a counterexample. */
export interface Repeated {
  readonly prefix: string
  readonly repeat: string
  readonly times: number
}

export type Text = string | Repeated

export interface Part {
  /** Header lines, without their CRLF. */
  readonly headers: ReadonlyArray<Text>
  readonly content: Uint8Array | Repeated
}

/** A multipart body, built the way the generator says, broken where it says. */
export interface Form {
  /** The boundary the body is written with (the header may say another). */
  readonly boundary: string
  readonly preamble: Text
  readonly parts: ReadonlyArray<Part>
  /** How the body ends: the closing delimiter, none, one without its CRLF, one with a stray boundary. */
  readonly closing: "close" | "none" | "close-no-crlf" | "other-boundary"
  readonly epilogue: string
  /** Cut the whole body to this many permille of its length. */
  readonly truncate: number | null
}

/**
 * The rest of seed upload `upload`, as the test last saw it: `remaining + delta`
 * bytes (at least none). `text`: valid UTF-8, whole characters; `split`: "é"s cut
 * anywhere, so the last may be half a character; `invalid`: text with a 0xff at
 * `at` permille.
 */
export interface Fill {
  readonly upload: number
  readonly delta: number
  readonly content: "text" | "split" | "invalid"
  readonly at: number
}

export type Body =
  | { readonly _tag: "Empty" }
  | { readonly _tag: "Bytes"; readonly bytes: Uint8Array | Repeated }
  | { readonly _tag: "Form"; readonly form: Form }
  | { readonly _tag: "Fill"; readonly fill: Fill }

/**
 * How the body is framed. `Length`: a correct Content-Length; `None`: neither
 * header (a body then reads as a second, pipelined request); `Chunked`: correct
 * chunked coding in pieces of `sizes`; `Hostile`: the header lines given, where
 * `{len}`, `{len+N}` and `{len-N}` stand for the body's length, and the body coded
 * as `coding` says.
 */
export type Framing =
  | { readonly _tag: "Length" }
  | { readonly _tag: "None" }
  | { readonly _tag: "Chunked"; readonly sizes: ReadonlyArray<number> }
  | {
    readonly _tag: "Hostile"
    readonly lines: ReadonlyArray<string>
    readonly coding: "raw" | "chunked" | "chunked-no-last" | "chunked-bad-size" | "chunked-lying" | "chunked-ext"
  }

/**
 * How the bytes are written. `Whole`: at once. `Pieces`: cut at the given permille
 * points with a pause between. `Stall`: the first `at` permille, then nothing for
 * `waitMs`, then the client destroys the socket. `StallUntilDropped`: the first `at`
 * permille, then wait for the server to answer or drop the connection.
 */
export type Delivery =
  | { readonly _tag: "Whole" }
  | { readonly _tag: "Pieces"; readonly cuts: ReadonlyArray<number>; readonly pauseMs: number }
  | { readonly _tag: "Stall"; readonly at: number; readonly waitMs: number }
  | { readonly _tag: "StallUntilDropped"; readonly at: number }

export interface HostileRequest {
  readonly method: string
  readonly target: Text
  readonly version: string
  /** Header lines beside the framing ones, in order, without their CRLF. */
  readonly headers: ReadonlyArray<Text>
  readonly body: Body
  readonly framing: Framing
  readonly delivery: Delivery
  /** Bytes written right after the request, on the same connection: more requests, or garbage. */
  readonly pipelined?: string
}

// ---------------------------------------------------------------- rendering

const encoder = new TextEncoder()

export const textOf = (text: Text): string =>
  typeof text === "string" ? text : text.prefix + text.repeat.repeat(text.times)

const bytesOf = (content: Uint8Array | Repeated): Uint8Array =>
  content instanceof Uint8Array ? content : encoder.encode(textOf(content))

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0))
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.byteLength
  }
  return out
}

const formBytes = (form: Form): Uint8Array => {
  const chunks: Array<Uint8Array> = [encoder.encode(textOf(form.preamble))]
  for (const part of form.parts) {
    chunks.push(encoder.encode(`--${form.boundary}\r\n${part.headers.map(textOf).join("\r\n")}\r\n\r\n`))
    chunks.push(bytesOf(part.content))
    chunks.push(encoder.encode("\r\n"))
  }
  switch (form.closing) {
    case "close":
      chunks.push(encoder.encode(`--${form.boundary}--\r\n`))
      break
    case "close-no-crlf":
      chunks.push(encoder.encode(`--${form.boundary}--`))
      break
    case "other-boundary":
      chunks.push(encoder.encode(`--${form.boundary}x--\r\n`))
      break
    case "none":
      break
  }
  chunks.push(encoder.encode(form.epilogue))
  const whole = concat(chunks)
  return form.truncate === null ? whole : whole.subarray(0, Math.floor(whole.byteLength * form.truncate / 1000))
}

/** `size` bytes of text: ASCII (valid wherever it is cut) when `whole`, else "é"s (half of one at an odd end). */
const fillText = (size: number, whole: boolean): Uint8Array => {
  const pattern = encoder.encode(whole ? "tus fill " : "é")
  const out = new Uint8Array(size)
  for (let at = 0; at < size; at++) out[at] = pattern[at % pattern.byteLength] ?? 0x20
  return out
}

const fillBytes = (fill: Fill, seeds: Seeds): Uint8Array => {
  const upload = seeds.uploads[fill.upload % Math.max(1, seeds.uploads.length)]
  const size = Math.max(0, (upload === undefined ? 0 : upload.length - upload.offset) + fill.delta)
  const bytes = fillText(size, fill.content !== "split")
  if (fill.content === "invalid" && size > 0) bytes[Math.min(size - 1, Math.floor(size * fill.at / 1000))] = 0xff
  return bytes
}

export const bodyBytes = (body: Body, seeds: Seeds): Uint8Array => {
  switch (body._tag) {
    case "Empty":
      return new Uint8Array(0)
    case "Bytes":
      return bytesOf(body.bytes)
    case "Form":
      return formBytes(body.form)
    case "Fill":
      return fillBytes(body.fill, seeds)
  }
}

const chunked = (body: Uint8Array, sizes: ReadonlyArray<number>, last: boolean, extension = ""): Uint8Array => {
  const chunks: Array<Uint8Array> = []
  let offset = 0
  let i = 0
  while (offset < body.byteLength) {
    const size = Math.max(1, sizes.length === 0 ? body.byteLength : (sizes[i++ % sizes.length] ?? 1))
    const piece = body.subarray(offset, offset + size)
    chunks.push(encoder.encode(`${piece.byteLength.toString(16)}${extension}\r\n`), piece, encoder.encode("\r\n"))
    offset += piece.byteLength
  }
  if (last) chunks.push(encoder.encode(`0${extension}\r\n\r\n`))
  return concat(chunks)
}

const withLength = (line: string, length: number): string =>
  line.replace(/\{len([+-]\d+)?\}/g, (_, delta: string | undefined) => String(length + Number(delta ?? 0)))

/** The framing's header lines and the body as it goes on the wire. */
const framed = (framing: Framing, body: Uint8Array): { lines: ReadonlyArray<string>; wire: Uint8Array } => {
  switch (framing._tag) {
    case "Length":
      return { lines: [`Content-Length: ${body.byteLength}`], wire: body }
    case "None":
      return { lines: [], wire: body }
    case "Chunked":
      return { lines: ["Transfer-Encoding: chunked"], wire: chunked(body, framing.sizes, true) }
    case "Hostile": {
      const lines = framing.lines.map((line) => withLength(line, body.byteLength))
      switch (framing.coding) {
        case "raw":
          return { lines, wire: body }
        case "chunked":
          return { lines, wire: chunked(body, [], true) }
        case "chunked-no-last":
          return { lines, wire: chunked(body, [97], false) }
        case "chunked-ext":
          return { lines, wire: chunked(body, [64], true, ";name=\"x\";y") }
        case "chunked-bad-size":
          return { lines, wire: concat([encoder.encode("zz\r\n"), body, encoder.encode("\r\n0\r\n\r\n")]) }
        case "chunked-lying":
          // A chunk that announces more than it holds: the rest reads as chunk data.
          return { lines, wire: concat([encoder.encode(`${(body.byteLength + 10).toString(16)}\r\n`), body]) }
      }
    }
  }
}

/** A seed upload as the test last saw it. */
export interface SeedUpload {
  readonly id: string
  readonly offset: number
  readonly length: number
}

/**
 * What the placeholders stand for: `{id:K}`, `{etag:K}`, `{victim:K}`, `{cursor}`,
 * `{link}`; `{upload:K}`, `{offset:K}`, `{length:K}`, `{gone:K}`.
 */
export interface Seeds {
  readonly ids: ReadonlyArray<string>
  readonly etags: ReadonlyArray<string>
  readonly victims: ReadonlyArray<string>
  readonly cursor: string
  readonly link: string
  /** Live resumable uploads, as last seen (the test refreshes the ones a request names before it is sent). */
  readonly uploads: ReadonlyArray<SeedUpload>
  /** Uploads that were seed uploads and are no more: finished, terminated, expired. */
  readonly gone: ReadonlyArray<string>
}

/** An id no upload has, for `{gone:K}` before any seed upload is gone. */
const NO_UPLOAD = "00000000-0000-4000-8000-000000000000"

const PLACEHOLDER = /\{(?:(id|etag|victim|upload|offset|length|gone):(\d+)|cursor|link)\}/g

const resolve = (text: string, seeds: Seeds): string =>
  text.replace(PLACEHOLDER, (whole, kind: string | undefined, k: string | undefined) => {
    if (kind === undefined) return whole === "{link}" ? seeds.link : seeds.cursor
    const at = <A>(list: ReadonlyArray<A>) => list[Number(k) % Math.max(1, list.length)]
    switch (kind) {
      case "upload":
        return at(seeds.uploads)?.id ?? NO_UPLOAD
      case "offset":
        return String(at(seeds.uploads)?.offset ?? 0)
      case "length":
        return String(at(seeds.uploads)?.length ?? 0)
      case "gone":
        return at(seeds.gone) ?? NO_UPLOAD
      default:
        return at(kind === "id" ? seeds.ids : kind === "etag" ? seeds.etags : seeds.victims) ?? whole
    }
  })

/** `{sha1}` and `{sha256}`: the body's digest, base64, as Upload-Checksum wants it. */
const withDigests = (line: string, body: Uint8Array): string =>
  line.replace(
    /\{(sha1|sha256)\}/g,
    (_, algorithm: string) => createHash(algorithm).update(body).digest("base64")
  )

/** The seed uploads a request names (`{upload:K}`, `{offset:K}`, `{length:K}`, a Fill body): the test refreshes them first. */
export const uploadsNamed = (request: HostileRequest): ReadonlyArray<number> => {
  const named = new Set<number>()
  const texts = [textOf(request.target), ...request.headers.map(textOf), request.pipelined ?? ""]
  for (const text of texts) {
    for (const match of text.matchAll(/\{(?:upload|offset|length):(\d+)\}/g)) named.add(Number(match[1]) % SEED_UPLOADS)
  }
  if (request.body._tag === "Fill") named.add(request.body.fill.upload % SEED_UPLOADS)
  return [...named]
}

/** The request's bytes, as they go on the wire. */
export const render = (request: HostileRequest, seeds: Seeds): Uint8Array => {
  const body = bodyBytes(request.body, seeds)
  const { lines, wire } = framed(request.framing, body)
  const head = [
    `${request.method} ${resolve(textOf(request.target), seeds)} ${request.version}`,
    ...request.headers.map((header) => withDigests(resolve(textOf(header), seeds), body)),
    ...lines
  ].join("\r\n")
  // Header text goes out as UTF-8, as browsers send file names.
  return concat([
    encoder.encode(`${head}\r\n\r\n`),
    wire,
    encoder.encode(request.pipelined === undefined ? "" : resolve(request.pipelined, seeds))
  ])
}

// ---------------------------------------------------------------- generators

const weighted = <A>(...entries: ReadonlyArray<readonly [number, fc.Arbitrary<A>]>): fc.Arbitrary<A> =>
  fc.oneof(...entries.map(([weight, arbitrary]) => ({ weight, arbitrary })))

const repeated = (repeat: string, min: number, max: number, prefix = ""): fc.Arbitrary<Repeated> =>
  fc.integer({ min, max }).map((times) => ({ prefix, repeat, times }))

/** Any code point but lone surrogates, controls included. */
const anyText = (maxLength: number) => fc.string({ unit: "binary", maxLength })

const percentEncoded = (text: string): string => {
  try {
    return encodeURIComponent(text)
  } catch {
    return text
  }
}

export const method: fc.Arbitrary<string> = weighted(
  [16, fc.constant("GET")],
  [4, fc.constant("HEAD")],
  [3, fc.constant("DELETE")],
  [6, fc.constantFrom("POST", "PUT", "OPTIONS", "PATCH")],
  [2, fc.constantFrom("get", "Post", "TRACE", "PROPFIND", "MKCOL", "QUERY", "PURGE", "SEARCH", "CONNECT")],
  [1, fc.constantFrom("BREW", "G ET", "GET\t", "", "ÉT", "POST/files", "\u0000GET", "GETGETGETGETGETGETGETGET")],
  [1, fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ-_!~.0"), minLength: 1, maxLength: 12 })]
)

/** A path segment that is not an id: percent signs, dots, Unicode, controls, very long. */
export const garbageSegment: fc.Arbitrary<Text> = weighted<Text>(
  [
    6,
    fc.constantFrom(
      "%",
      "%%",
      "%zz",
      "%0",
      "%00",
      "%2e%2e",
      "..",
      ".",
      "%2F..%2F",
      "%ff%fe",
      "%c0%af",
      "%ed%a0%80",
      "é",
      "e\u0301",
      "\u202etxt.exe",
      "🙂",
      "a%20b",
      ";x=1",
      "'%20OR%201=1--",
      "__proto__",
      "constructor",
      "~",
      "*",
      ":id",
      "%3Fq",
      "",
      "\\..\\",
      "content",
      "null"
    )
  ],
  [2, anyText(24)],
  [2, anyText(24).map(percentEncoded)],
  [1, repeated("a", 256, 20_000)],
  [1, repeated("%41", 100, 2_000)]
)

const idSegment = (seed: fc.Arbitrary<string>): fc.Arbitrary<Text> =>
  weighted<Text>(
    [5, seed],
    [2, fc.uuid()],
    [1, fc.uuid().map((id) => id.toUpperCase())],
    [1, fc.uuid().map((id) => `${id}%00`)],
    [3, garbageSegment]
  )

const limitValue = weighted(
  [3, fc.constantFrom("1", "2", "20", "100")],
  [
    2,
    fc.constantFrom(
      "0",
      "101",
      "-1",
      "1.5",
      "1e2",
      "abc",
      "",
      "%00",
      "+5",
      " 5",
      "0x10",
      "99999999999999999999",
      "NaN",
      "Infinity",
      "1,2",
      "%E2%80%AE"
    )
  ],
  [1, fc.integer().map(String)]
)

/** Cursors: garbage, and well-formed ones that name impossible positions (times past any calendar). */
const cursorValue = weighted(
  [
    2,
    fc.constantFrom("", "bm90LWEtY3Vyc29y", "%", "null", "W10", "e30", "WzEsMl0", "=", "a".repeat(201), "%2B%2F")
  ],
  [3, fc.constantFrom("{cursor}", "{cursor}x", "{cursor}=", "{cursor}%00", "x{cursor}", "{cursor},{cursor}")],
  [
    3,
    fc.tuple(
      fc.oneof(
        fc.constantFrom(
          0,
          -1,
          1.5,
          8.64e15,
          8.64e15 + 1,
          253_402_300_799_999,
          253_402_300_800_000,
          Number.MAX_SAFE_INTEGER,
          1e21,
          -8.64e15
        ),
        fc.nat()
      ),
      fc.oneof(fc.uuid(), fc.constantFrom("x", "", "%", "00000000-0000-0000-0000-000000000000"))
    ).map(([millis, id]) => Encoding.encodeBase64Url(JSON.stringify([millis, id])))
  ],
  [1, anyText(16).map((text) => Encoding.encodeBase64Url(text))],
  [1, anyText(16).map(percentEncoded)]
)

const query: fc.Arbitrary<string> = weighted(
  [4, fc.constant("")],
  [
    3,
    fc.record({
      limit: fc.option(limitValue, { nil: undefined }),
      cursor: fc.option(cursorValue, { nil: undefined }),
      extra: fc.option(fc.constantFrom("limit=1", "limit=2&limit=3", "cursor=&cursor=x", "&&", "a=%", "=", "x"), {
        nil: undefined
      })
    }).map(({ cursor, extra, limit }) =>
      `?${
        [limit === undefined ? "" : `limit=${limit}`, cursor === undefined ? "" : `cursor=${cursor}`, extra ?? ""]
          .filter((p) => p !== "").join("&")
      }`
    )
  ],
  [1, fc.constantFrom("?", "??", "?%", "?limit", "?limit=1#frag", "#x")],
  // A signed link's parameters, forged.
  [
    1,
    fc.constantFrom(
      "?expires=1&signature=x",
      "?expires=99999999999999999999&signature=",
      "?signature=%00",
      "?expires=-1&signature=aa",
      "?expires=1e400&signature=aa",
      "?expires=&signature=&expires=1",
      `?expires=4102444800&signature=${"A".repeat(43)}`
    )
  ]
)

const seedId = fc.nat(SEED_FILES - 1).map((k) => `{id:${k}}`)
/** The seed file's signed link, as given, and tampered with. */
const signedLink = fc.constantFrom("{link}", "{link}x", "{link}&expires=1", "{link}&signature=x")
const victimId = fc.nat(SEED_FILES - 1).map((k) => `{victim:${k}}`)

/** Paths: the API's, and garbage; `seed` is how a path names a file that exists. */
const pathNaming = (seed: fc.Arbitrary<string>): fc.Arbitrary<Text> =>
  weighted<Text>(
    [
      4,
      fc.constantFrom(
        "/files",
        "/files/",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/docs/",
        "/",
        "*",
        "//files",
        "/FILES",
        "/files/../healthz",
        "/files/./",
        "/files//content",
        "http://127.0.0.1/files",
        "http://[::1/files",
        "healthz",
        "/healthz/",
        "/docs/swagger-ui.css",
        "/openapi.json/../files",
        "/uploads",
        "/uploads/"
      )
    ],
    [4, idSegment(seed).map((id) => `/files/${textOf(id)}`)],
    [1, idSegment(seed).map((id) => `/files/${textOf(id)}/links`)],
    [6, idSegment(seed).map((id) => `/files/${textOf(id)}/content`)],
    [1, fc.tuple(idSegment(seed), garbageSegment).map(([id, g]) => `/files/${textOf(id)}/${textOf(g)}`)],
    [1, fc.array(garbageSegment, { minLength: 1, maxLength: 4 }).map((s) => `/${s.map(textOf).join("/")}`)]
  )

/** A request target; a DELETE names victims, so that the seed files the others read stay there. */
const targetFor = (method: string): fc.Arbitrary<Text> =>
  fc.tuple(pathNaming(method === "DELETE" ? victimId : seedId), query).map(([p, q]) =>
    typeof p === "string" ? `${p}${q}` : q === "" ? p : `${textOf(p)}${q}`
  )

const rangeValue = weighted(
  [
    3,
    fc.constantFrom(
      "bytes=0-0",
      "bytes=-1",
      "bytes=5-",
      "bytes=0-99999999999999999999",
      "bytes=99999-",
      "bytes=1-0",
      "bytes=-0",
      "bytes=0-1,2-3",
      "bytes=",
      "bytes=--",
      "items=0-1",
      "bytes=00000000000000000000000001-2",
      "bytes=-99999999999999999999999",
      "bytes=9007199254740993-",
      "bytes = 0-1",
      "BYTES=0-1",
      "bytes=0-1\u0000"
    )
  ],
  [2, fc.tuple(fc.nat(3000), fc.nat(3000)).map(([a, b]) => `bytes=${a}-${b}`)],
  [1, anyText(20)]
)

const ifNoneMatchValue = weighted(
  [2, fc.nat(SEED_FILES - 1).map((k) => `{etag:${k}}`)],
  [1, fc.nat(SEED_FILES - 1).map((k) => `W/{etag:${k}}, "x"`)],
  [2, fc.constantFrom("*", "\"", ",,,,", "W/", "\"\"", "W/\"x\", *", "null")],
  [1, anyText(30)]
)

/** Header lines other than the framing ones: mostly well-formed (so the request reaches the API), some not. */
const extraHeader: fc.Arbitrary<Text> = weighted<Text>(
  [6, rangeValue.map((v) => `Range: ${v}`)],
  [6, ifNoneMatchValue.map((v) => `If-None-Match: ${v}`)],
  [1, repeated("\"x\",", 100, 5000, "If-None-Match: ")],
  [1, fc.constantFrom("Expect: 100-continue", "Expect: garbage", "Upgrade: websocket", "Connection: upgrade")],
  [1, fc.constantFrom("Connection: keep-alive", "Connection: close, close", "Keep-Alive: timeout=0")],
  [1, fc.constantFrom("Host: 127.0.0.1", "Host:", "Host: a b", "Host: [::1", "Host: evil.example", "Host: localhost")],
  [
    1,
    fc.constantFrom(
      "Origin: http://evil.example",
      "Origin: null",
      "Origin: http://127.0.0.1",
      "Authorization: Bearer x",
      "Authorization: Bearer ",
      "Authorization: Basic Zm9vOmJhcg==",
      "Authorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."
    )
  ],
  [1, repeated("x", 1000, 20_000, "X-Huge: ")],
  [1, repeated("\r\nX-Dup: 1", 1, 200, "X-Dup: 0")],
  [
    1,
    fc.constantFrom("Bad Name: x", "X-Null: a\u0000b", ": empty", "X-Obs: \u00ff\u00fe", "X-Fold: a\r\n b", "NoColon")
  ],
  [1, fc.tuple(fc.string({ maxLength: 10 }), anyText(30)).map(([name, value]) => `X-${name}: ${value}`)]
)

/** Host, mostly, and a Connection: close that most clients send here (so the server says when it is done). */
const baseHeaders = fc.record({
  host: fc.oneof({ weight: 24, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  close: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) })
}).map(({ close, host }) => [...(host ? ["Host: 127.0.0.1"] : []), ...(close ? ["Connection: close"] : [])])

// ---------------------------------------------------------------- multipart

const boundaryChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=? "

const boundary: fc.Arbitrary<string> = weighted(
  [12, fc.constantFrom("tandem-boundary", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "x", "-----------------------abc")],
  [3, fc.string({ unit: fc.constantFrom(...boundaryChars.slice(0, 62), "-", "_"), minLength: 1, maxLength: 70 })],
  [1, fc.string({ unit: fc.constantFrom(...boundaryChars), minLength: 1, maxLength: 70 })],
  [1, fc.integer({ min: 69, max: 300 }).map((n) => "b".repeat(n))],
  [1, fc.constantFrom("a b", "q\"x", "é", "b;c", "--", " ")]
)

/** The request's Content-Type for a form written with `b`: right, quoted, odd, missing, contradictory. */
const formContentType = (b: string): fc.Arbitrary<ReadonlyArray<string>> =>
  weighted<ReadonlyArray<string>>(
    [24, fc.constant([`Content-Type: multipart/form-data; boundary=${b}`])],
    [
      3,
      fc.constantFrom(
        [`Content-Type: multipart/form-data; boundary="${b}"`],
        [`Content-Type: Multipart/Form-Data;boundary=${b}; charset=utf-8`],
        [`Content-Type: multipart/form-data ; boundary=${b}`],
        [`Content-Type: multipart/form-data;;boundary=${b}`],
        [`Content-Type: multipart/form-data; boundary=${b}; boundary=other`],
        [`Content-Type: multipart/form-data; boundary=other; boundary=${b}`],
        [`Content-Type: multipart/form-data; BOUNDARY=${b}`]
      )
    ],
    [
      3,
      fc.constantFrom(
        ["Content-Type: multipart/form-data; boundary="],
        ["Content-Type: multipart/form-data; boundary=\"\""],
        ["Content-Type: multipart/form-data"],
        ["Content-Type: multipart/form-data;"],
        [`Content-Type: multipart/mixed; boundary=${b}`],
        [`Content-Type: multipart/form-data; boundary=${b}x`],
        ["Content-Type: text/plain"],
        ["Content-Type: application/x-www-form-urlencoded"],
        [],
        [`Content-Type: multipart/form-data; boundary=${b}`, "Content-Type: text/plain"],
        [`Content-Type: multipart/form-data; boundary=${b}`, `Content-Type: multipart/form-data; boundary=${b}`],
        [`Content-Type: multipart/form-data; boundary="${b}`],
        [`Content-Type: multipart/form-data; boundary=${"z".repeat(71)}`],
        [`Content-Type: multipart/form-data; boundary=${b}\u0000`]
      )
    ]
  )

/** File names: valid and invalid under the policy, and the classics of hostile names. */
export const fileName: fc.Arbitrary<string> = weighted(
  [10, validName(policy).map((n) => n.name)],
  [2, invalidName(policy)],
  [
    4,
    fc.constantFrom(
      "notes.txt",
      "a\u0000.txt",
      "a\r\nContent-Type: image/png\r\n.txt",
      "a\r\n.txt",
      "../../etc/passwd.txt",
      "..\\..\\boot.ini.txt",
      "x\u202egpj.txt",
      "evil\u202etxt.exe",
      "e\u0301te\u0301.txt",
      "\u00e9t\u00e9.txt",
      `${"ä".repeat(148)}.txt`,
      `${"🙂".repeat(74)}.txt`,
      `${"x".repeat(251)}.txt`,
      `${"x".repeat(252)}.txt`,
      ".txt",
      "..",
      ".",
      "",
      " .txt",
      "a.TXT",
      "a.txt.",
      "a.txt ",
      "CON.txt",
      "a\"b.txt",
      "a\\\"b.txt",
      "%00.txt",
      "a%2F..%2Fb.txt",
      "\u2028.txt",
      "\ufeffbom.txt",
      "\u0085.txt",
      "a\u200db.txt",
      "\u00ff\u00fe.txt",
      "a;b=c.txt",
      "日本語.txt"
    )
  ],
  [1, anyText(40).map((s) => `${s}.txt`)]
)

/** How the file part's Content-Disposition names the file. */
const disposition = (field: string, name: string): fc.Arbitrary<Text> =>
  weighted<Text>(
    [20, fc.constant(`Content-Disposition: form-data; name="${field}"; filename="${name}"`)],
    [
      3,
      fc.constantFrom(
        `Content-Disposition: form-data; name="${field}"; filename*=UTF-8''${percentEncoded(name)}`,
        `Content-Disposition: form-data; name="${field}"; filename="fallback.txt"; filename*=UTF-8''${
          percentEncoded(name)
        }`,
        `Content-Disposition: form-data; name=${field}; filename=${name}`,
        `Content-Disposition: form-data; name="${field}"; filename="${name.replace(/["\\]/g, "\\$&")}"`,
        `content-disposition: FORM-DATA; NAME="${field}"; FILENAME="${name}"`,
        `Content-Disposition: form-data; name="${field}"; filename*=ISO-8859-1''${percentEncoded(name)}`,
        `Content-Disposition: form-data; name="${field}"; filename*=UTF-8''%ff%fe%c0%af.txt`
      )
    ],
    [
      2,
      fc.constantFrom(
        `Content-Disposition: form-data; name="${field}"`,
        `Content-Disposition: form-data; name="${field}"; filename=""`,
        `Content-Disposition: form-data; name="${field}"; filename="${name}"; filename="other.txt"`,
        `Content-Disposition: attachment; name="${field}"; filename="${name}"`,
        `Content-Disposition: form-data; filename="${name}"`,
        `Content-Disposition: form-data; name="${field}"; filename="${name}`,
        `Content-Disposition: form-data; name="${field}"; filename="${name}"; ${"x=y; ".repeat(50)}`
      )
    ]
  )

const partContentType: fc.Arbitrary<ReadonlyArray<string>> = weighted<ReadonlyArray<string>>(
  [16, fc.constant(["Content-Type: text/plain"])],
  [3, fc.constantFrom([], ["Content-Type: text/plain; charset=utf-8"], ["Content-Type: TEXT/PLAIN"])],
  [
    2,
    fc.constantFrom(
      ["Content-Type: image/png"],
      ["Content-Type: text/plain/x"],
      ["Content-Type: text /plain"],
      ["Content-Type: "],
      ["Content-Type: text/plain", "Content-Type: image/png"],
      ["Content-Type: text/plain\u0000"],
      ["Content-Type: text/*"],
      ["Content-Type: application/octet-stream"]
    )
  ],
  [1, anyText(20).map((t) => [`Content-Type: ${t}`])]
)

const partExtraHeaders: fc.Arbitrary<ReadonlyArray<string>> = weighted<ReadonlyArray<string>>(
  [16, fc.constant([])],
  [
    1,
    fc.constantFrom(
      ["Content-Transfer-Encoding: base64"],
      ["X-Part: 1", "X-Part: 2"],
      ["Bad header line"],
      [`X-Long: ${"y".repeat(9000)}`]
    )
  ]
)

/** The file's bytes: valid text, too small, too large, not UTF-8, random, or a field-sized run. */
const fileContent: fc.Arbitrary<Uint8Array | Repeated> = weighted<Uint8Array | Repeated>(
  [14, utf8Between(policy.minBytes, policy.maxBytes)],
  [2, fc.integer({ min: 1, max: policy.maxBytes }).chain((n) => invalidUtf8OfLength(n))],
  [1, fc.integer({ min: 0, max: policy.minBytes - 1 }).chain(utf8OfLength)],
  [1, fc.integer({ min: policy.maxBytes + 1, max: policy.maxBytes + 300 }).chain(utf8OfLength)],
  [1, fc.uint8Array({ maxLength: 3000 })],
  [1, repeated("t", 2_049, 80_000)]
)

const filePart: fc.Arbitrary<Part> = fc.record({
  field: weighted([20, fc.constant("file")], [1, fc.constantFrom("File", "file ", "files", "", "fi\"le", "upload")]),
  name: fileName,
  contentType: partContentType,
  extra: partExtraHeaders,
  content: fileContent
}).chain(({ content, contentType, extra, field, name }) =>
  disposition(field, name).map((line): Part => ({ headers: [line, ...contentType, ...extra], content }))
)

const fieldPart: fc.Arbitrary<Part> = fc.record({
  name: fc.constantFrom("note", "file", "", "x\"y"),
  value: weighted<Uint8Array | Repeated>(
    [4, fc.string({ maxLength: 40 }).map((s) => encoder.encode(s))],
    [1, repeated("n", 1024, 80_000)],
    [1, fc.uint8Array({ maxLength: 200 })]
  )
}).map(({ name, value }) => ({ headers: [`Content-Disposition: form-data; name="${name}"`], content: value }))

/** Parts that are neither: no disposition, garbage headers. */
const oddPart: fc.Arbitrary<Part> = fc.constantFrom<Part>(
  { headers: ["Content-Type: text/plain"], content: encoder.encode("no disposition") },
  { headers: ["garbage"], content: encoder.encode("x") },
  { headers: [""], content: new Uint8Array(0) },
  { headers: ["Content-Disposition: form-data; name=\"a\"; filename=\"b.txt\""], content: encoder.encode("second") }
)

const otherPart: fc.Arbitrary<Part> = weighted([4, fieldPart], [2, filePart], [1, oddPart])

const form: fc.Arbitrary<Form> = fc.record({
  boundary,
  preamble: weighted<Text>([16, fc.constant("")], [1, fc.constantFrom("preamble\r\n", "\r\n", "--\r\n")], [
    1,
    repeated("p", 100, 70_000)
  ]),
  before: weighted([12, fc.constant<ReadonlyArray<Part>>([])], [2, fc.array(otherPart, { maxLength: 3 })], [
    1,
    fc.nat({ max: 20 }).map((n) =>
      Array.from(
        { length: n },
        (): Part => ({ headers: ["Content-Disposition: form-data; name=\"f\""], content: new Uint8Array(0) })
      )
    )
  ]),
  file: weighted([24, filePart.map((part) => [part])], [1, fc.constant<ReadonlyArray<Part>>([])]),
  after: weighted([12, fc.constant<ReadonlyArray<Part>>([])], [2, fc.array(otherPart, { maxLength: 3 })]),
  closing: weighted<Form["closing"]>([24, fc.constant("close")], [
    1,
    fc.constantFrom("none", "close-no-crlf", "other-boundary")
  ]),
  epilogue: weighted([16, fc.constant("")], [1, fc.constantFrom("epilogue", "\r\n--x--\r\n")]),
  truncate: weighted<number | null>([20, fc.constant(null)], [1, fc.integer({ min: 0, max: 999 })])
}).map(({ after, before, boundary, closing, epilogue, file, preamble, truncate }) => ({
  boundary,
  preamble,
  parts: [...before, ...file, ...after],
  closing,
  epilogue,
  truncate
}))

// ---------------------------------------------------------------- framing and delivery

const hostileFraming: fc.Arbitrary<Framing> = weighted<Framing>(
  [
    3,
    fc.constantFrom<Framing>(
      { _tag: "Hostile", lines: ["Content-Length: {len}", "Transfer-Encoding: chunked"], coding: "chunked" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: chunked", "Content-Length: {len}"], coding: "raw" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], coding: "chunked" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: chunked, chunked"], coding: "chunked" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: gzip, chunked"], coding: "chunked" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: chunked, identity"], coding: "chunked" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: identity"], coding: "raw" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: xchunked"], coding: "chunked" },
      { _tag: "Hostile", lines: ["Transfer-Encoding:  Chunked "], coding: "chunked" },
      { _tag: "Hostile", lines: ["Content-Length: {len}", "Content-Length: {len}"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: {len}", "Content-Length: {len+1}"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: {len}, {len}"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: -{len}"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: -1"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: abc"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: 1e3"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: 0x10"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: +{len}"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: "], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: 99999999999999999999"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: 67585"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: 67584"], coding: "raw" },
      { _tag: "Hostile", lines: ["Content-Length: 0"], coding: "raw" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: chunked"], coding: "chunked-bad-size" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: chunked"], coding: "chunked-ext" },
      { _tag: "Hostile", lines: ["Transfer-Encoding: chunked"], coding: "raw" }
    )
  ],
  // Too short: the rest of the body reads as a second, pipelined request.
  [
    2,
    fc.integer({ min: 1, max: 2000 }).map((n): Framing => ({
      _tag: "Hostile",
      lines: [`Content-Length: {len-${n}}`],
      coding: "raw"
    }))
  ],
  // Too long, or a chunked body that never ends: the server waits for bytes that never come.
  [
    1,
    fc.oneof(
      fc.integer({ min: 1, max: 5000 }).map((n): Framing => ({
        _tag: "Hostile",
        lines: [`Content-Length: {len+${n}}`],
        coding: "raw"
      })),
      fc.constant<Framing>({ _tag: "Hostile", lines: ["Transfer-Encoding: chunked"], coding: "chunked-no-last" }),
      fc.constant<Framing>({ _tag: "Hostile", lines: ["Transfer-Encoding: chunked"], coding: "chunked-lying" })
    )
  ]
)

const framing: fc.Arbitrary<Framing> = weighted<Framing>(
  [20, fc.constant({ _tag: "Length" })],
  [
    4,
    fc.array(fc.integer({ min: 1, max: 1500 }), { minLength: 1, maxLength: 4 }).map((sizes) => ({
      _tag: "Chunked",
      sizes
    }))
  ],
  [1, fc.constant({ _tag: "None" })],
  [4, hostileFraming]
)

export const delivery: fc.Arbitrary<Delivery> = weighted<Delivery>(
  [40, fc.constant({ _tag: "Whole" })],
  [
    12,
    fc.record({
      cuts: fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 1, maxLength: 8 }),
      pauseMs: fc.integer({ min: 0, max: 25 })
    }).map(({ cuts, pauseMs }): Delivery => ({ _tag: "Pieces", cuts: [...cuts].sort((a, b) => a - b), pauseMs }))
  ],
  [
    6,
    fc.record({ at: fc.integer({ min: 0, max: 999 }), waitMs: fc.integer({ min: 10, max: 250 }) }).map((
      { at, waitMs }
    ): Delivery => ({ _tag: "Stall", at, waitMs }))
  ],
  [1, fc.integer({ min: 0, max: 999 }).map((at): Delivery => ({ _tag: "StallUntilDropped", at }))]
)

const version: fc.Arbitrary<string> = weighted(
  [30, fc.constant("HTTP/1.1")],
  [2, fc.constant("HTTP/1.0")],
  [1, fc.constantFrom("HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "http/1.1", "HTTP/1.1 x", "", "HTTP/11")]
)

const headerList = fc.tuple(
  baseHeaders,
  weighted([2, fc.constant<ReadonlyArray<Text>>([])], [3, fc.array(extraHeader, { minLength: 1, maxLength: 3 })])
).map(([base, extra]) => [...base, ...extra])

/**
 * Idempotency-Key values: a few shared by many uploads of a run (replays, other
 * bytes under a used key, keys in flight), and malformed ones.
 */
const idempotencyKey = weighted(
  [3, fc.constantFrom("k-1", "k-2", "k-3", "3f2504e0-4f89-41d3-9a0c-0305e82c3301")],
  [1, fc.constantFrom("", " ", "é", "a b", "k\u0000", "x".repeat(256), "x".repeat(255))],
  [1, anyText(20)]
)

/** An upload's headers: mostly just Host and Connection; sometimes an Idempotency-Key. */
const uploadHeaderList = fc.tuple(
  baseHeaders,
  weighted([6, fc.constant<ReadonlyArray<Text>>([])], [1, fc.array(extraHeader, { minLength: 1, maxLength: 2 })]),
  weighted([5, fc.constant<ReadonlyArray<Text>>([])], [1, idempotencyKey.map((key) => [`Idempotency-Key: ${key}`])])
).map(([base, extra, key]) => [...base, ...extra, ...key])

/** An upload: POST /files with a form, its Content-Type and framing of any kind. */
const uploadRequest: fc.Arbitrary<HostileRequest> = form.chain((f) =>
  fc.record({
    method: weighted([24, fc.constant("POST")], [1, fc.constantFrom("PUT", "PATCH", "post", "GET")]),
    target: weighted<Text>([24, fc.constant("/files")], [1, fc.constantFrom("/files/", "/files?limit=1", "//files")]),
    version: weighted([12, fc.constant("HTTP/1.1")], [1, version]),
    contentType: formContentType(f.boundary),
    headers: uploadHeaderList,
    framing,
    delivery
  }).map(({ contentType, headers, ...rest }): HostileRequest => ({
    ...rest,
    headers: [...headers, ...contentType],
    body: { _tag: "Form", form: f }
  }))
)

/** Requests a client may pipeline behind the first, on the same connection. */
const followUp = fc.constantFrom(
  "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "GET /files?limit=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
  "GET /files/{id:0}/content HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=1-2\r\n\r\n",
  "POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n" +
    "Content-Length: 9\r\n\r\n--b--\r\n\r\n",
  "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nabc"
)

/**
 * Any method on any path, mostly without a body, sometimes with one framed any way;
 * sometimes followed by more requests on the same connection (bytes after the body).
 */
const otherRequest: fc.Arbitrary<HostileRequest> = method.chain((m) =>
  fc.record({
    method: fc.constant(m),
    target: targetFor(m),
    version,
    headers: headerList,
    body: weighted<Body>(
      [6, fc.constant({ _tag: "Empty" })],
      [1, fc.uint8Array({ maxLength: 3000 }).map((bytes): Body => ({ _tag: "Bytes", bytes }))],
      [1, form.map((f): Body => ({ _tag: "Form", form: f }))]
    ),
    framing,
    delivery,
    pipelined: weighted<string | null>([6, fc.constant(null)], [1, followUp])
  }).map(({ pipelined, ...request }): HostileRequest => (pipelined === null ? request : { ...request, pipelined }))
)

/** Bytes that are barely HTTP: a request line of garbage, or none at all. */
const garbageRequest: fc.Arbitrary<HostileRequest> = fc.record({
  method: fc.constantFrom("", "\r\n", "GET", "\u0016\u0003\u0001", "PRI", "*"),
  target: weighted<Text>([3, anyText(30)], [
    1,
    fc.constantFrom("* HTTP/2.0\r\n\r\nSM", "/ HTTP/1.1\r\nHost: x\r\n\r\nGET")
  ]),
  version: fc.constantFrom("", "HTTP/1.1", "\u0000"),
  headers: fc.array(anyText(40), { maxLength: 3 }),
  body: fc.uint8Array({ maxLength: 200 }).map((bytes): Body => ({ _tag: "Bytes", bytes })),
  framing: fc.constant<Framing>({ _tag: "None" }),
  delivery
})

/** A download of a seed file, whole or by range, conditional or not. */
const downloadRequest: fc.Arbitrary<HostileRequest> = fc.record({
  method: weighted([6, fc.constant("GET")], [2, fc.constant("HEAD")]),
  target: weighted<Text>([4, seedId.map((id): Text => `/files/${id}/content`)], [1, signedLink]),
  version: weighted([12, fc.constant("HTTP/1.1")], [1, version]),
  headers: fc.tuple(
    baseHeaders,
    fc.option(rangeValue, { nil: undefined }),
    fc.option(ifNoneMatchValue, { nil: undefined })
  ).map(([base, range, ifNoneMatch]): ReadonlyArray<Text> => [
    ...base,
    ...(range === undefined ? [] : [`Range: ${range}`]),
    ...(ifNoneMatch === undefined ? [] : [`If-None-Match: ${ifNoneMatch}`])
  ]),
  body: fc.constant<Body>({ _tag: "Empty" }),
  framing: weighted<Framing>([6, fc.constant({ _tag: "None" })], [1, framing]),
  delivery
})

/** POST /files/{id}/links: a signed link asked for with JSON of any kind. */
const linkRequest: fc.Arbitrary<HostileRequest> = fc.record({
  method: weighted([8, fc.constant("POST")], [1, fc.constantFrom("GET", "PUT")]),
  target: weighted<Text>([6, seedId], [1, victimId], [2, garbageSegment]).map((id): Text =>
    `/files/${textOf(id)}/links`
  ),
  version: fc.constant("HTTP/1.1"),
  headers: fc.tuple(
    baseHeaders,
    fc.constantFrom<ReadonlyArray<string>>(
      ["Content-Type: application/json"],
      ["Content-Type: application/json; charset=utf-8"],
      [],
      ["Content-Type: text/plain"],
      ["Content-Type: application/x-www-form-urlencoded"],
      ["Content-Type: multipart/form-data; boundary=x"]
    )
  ).map(([base, type]): ReadonlyArray<Text> => [...base, ...type]),
  body: weighted<string>(
    [
      4,
      fc.constantFrom(
        "{}",
        "{\"expiresInSeconds\":60}",
        "{\"expiresInSeconds\":1}",
        "{\"expiresInSeconds\":604800}",
        "{\"expiresInSeconds\":604801}",
        "{\"expiresInSeconds\":0}",
        "{\"expiresInSeconds\":-1}",
        "{\"expiresInSeconds\":1.5}",
        "{\"expiresInSeconds\":1e308}",
        "{\"expiresInSeconds\":\"60\"}",
        "{\"expiresInSeconds\":null}",
        "{\"expiresInSeconds\":60,\"x\":1}",
        "{\"__proto__\":{\"expiresInSeconds\":1}}",
        "[]",
        "null",
        "",
        "{",
        "expiresInSeconds=60"
      )
    ],
    [1, fc.json()],
    [1, anyText(40)]
  ).map((json): Body => ({ _tag: "Bytes", bytes: encoder.encode(json) })),
  framing: weighted<Framing>([8, fc.constant({ _tag: "Length" })], [1, framing]),
  delivery
})

// ---------------------------------------------------------------- tus

const base64 = (bytes: Uint8Array | ReadonlyArray<number> | string): string =>
  typeof bytes === "string" ? Buffer.from(bytes, "utf8").toString("base64") : Buffer.from(bytes).toString("base64")

const bytesBody = (bytes: Uint8Array | Repeated): Body => ({ _tag: "Bytes", bytes })

/** Tus-Resumable: 1.0.0 mostly; missing, another version, repeated, mangled. */
const tusResumable: fc.Arbitrary<ReadonlyArray<string>> = weighted<ReadonlyArray<string>>(
  [24, fc.constant(["Tus-Resumable: 1.0.0"])],
  [
    3,
    fc.constantFrom<ReadonlyArray<string>>(
      [],
      ["Tus-Resumable: 1.0"],
      ["Tus-Resumable: 0.2.2"],
      ["Tus-Resumable: 2.0.0"],
      ["Tus-Resumable: "],
      ["Tus-Resumable: 1.0.0 "],
      ["Tus-Resumable: 1.0.0, 1.0.0"],
      ["Tus-Resumable: 1.0.0", "Tus-Resumable: 1.0.0"],
      ["Tus-Resumable: 1.0.0", "Tus-Resumable: 0.2.2"],
      ["tus-resumable: 1.0.0"],
      ["Tus-Resumable:1.0.0"],
      ["Tus-Resumable: \uff11.0.0"],
      ["Tus-Resumable: 1.0.0\u0000"],
      ["Tus-Version: 1.0.0"]
    )
  ],
  [1, anyText(12).map((value) => [`Tus-Resumable: ${value}`])]
)

/** A `filetype`: allowed, refused, odd. */
const fileType: fc.Arbitrary<string> = weighted(
  [12, fc.constant("text/plain")],
  [
    3,
    fc.constantFrom(
      "text/plain; charset=utf-8",
      "TEXT/PLAIN",
      "image/png",
      "",
      "text/*",
      "text/plain/x",
      "application/offset+octet-stream",
      "text/plain\u0000",
      "text/plain, image/png",
      "text/plain\r\nX-Injected: 1"
    )
  ],
  [1, anyText(20)]
)

const NOTES = base64("notes.txt")
const PLAIN = base64("text/plain")

/** Upload-Metadata: right; keys missing, repeated or odd; values not base64, not UTF-8, huge; header repeated. */
const metadataLines: fc.Arbitrary<ReadonlyArray<Text>> = weighted<ReadonlyArray<Text>>(
  [
    14,
    fc.tuple(fileName, fileType).map((
      [name, type]
    ) => [`Upload-Metadata: filename ${base64(name)},filetype ${base64(type)}`])
  ],
  [
    2,
    fc.tuple(
      fileName,
      fileType,
      fc.constantFrom("", ",relativePath bnVsbA==", ",is_confidential", ",__proto__ e30=", ",name YS50eHQ=", ",")
    ).map(([name, type, extra]) => [`Upload-Metadata: filetype ${base64(type)}, filename ${base64(name)}${extra}`])
  ],
  [
    6,
    fc.constantFrom<ReadonlyArray<Text>>(
      [],
      ["Upload-Metadata: "],
      ["Upload-Metadata: ,"],
      [`Upload-Metadata: filename ${NOTES}`],
      [`Upload-Metadata: filetype ${PLAIN}`],
      ["Upload-Metadata: filename,filetype"],
      [`Upload-Metadata: filename ,filetype ${PLAIN}`],
      [`Upload-Metadata: filename !!!!,filetype ${PLAIN}`],
      [`Upload-Metadata: filename YS50eHQ,filetype ${PLAIN}`],
      [`Upload-Metadata: filename YS50eHQ===,filetype ${PLAIN}`],
      [`Upload-Metadata: filename ====,filetype ${PLAIN}`],
      [`Upload-Metadata: filename 8J-ZgiBzbWlsZS50eHQ=,filetype ${PLAIN}`],
      [`Upload-Metadata: filename 8J+ZgiBzbWlsZS50eHQ=,filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${NOTES},filename ${base64("other.txt")},filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${NOTES},filetype ${PLAIN},filetype ${base64("image/png")}`],
      [`Upload-Metadata: filename ${base64([0xff, 0xfe, 0x2e, 0x74, 0x78, 0x74])},filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${base64([0x61, 0xc0, 0xaf, 0x2e, 0x74, 0x78, 0x74])},filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${base64([0xed, 0xa0, 0x80, 0x2e, 0x74, 0x78, 0x74])},filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${base64([0x61, 0x2e, 0x74, 0x78, 0x74, 0xe2, 0x82])},filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${NOTES},filetype ${base64([0x74, 0x65, 0x78, 0x74, 0x2f, 0xff])}`],
      [`Upload-Metadata: filename ${NOTES} x,filetype ${PLAIN}`],
      [`Upload-Metadata: filename  ${NOTES},filetype ${PLAIN}`],
      [`Upload-Metadata: filename\t${NOTES},filetype ${PLAIN}`],
      [`Upload-Metadata: ,filename ${NOTES},filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${NOTES},,filetype ${PLAIN}`],
      [`Upload-Metadata: FILENAME ${NOTES},FILETYPE ${PLAIN}`],
      [`Upload-Metadata: filename=${NOTES},filetype=${PLAIN}`],
      [`Upload-Metadata: filename ${NOTES};filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${base64("a\u0000.txt")},filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${base64("")},filetype ${PLAIN}`],
      // Repeated, the header is one value joined with ", ": these two make one valid whole.
      [`Upload-Metadata: filename ${NOTES}`, `Upload-Metadata: filetype ${PLAIN}`],
      [`Upload-Metadata: filename ${NOTES},filetype ${PLAIN}`, `Upload-Metadata: filename ${NOTES},filetype ${PLAIN}`]
    )
  ],
  // Huge: a name of thousands of characters, a key repeated thousands of times, thousands of keys.
  [1, repeated("QUFB", 100, 30_000, `Upload-Metadata: filetype ${PLAIN},filename `).map((line) => [line])],
  [1, repeated(",x YQ==", 1, 3_000, `Upload-Metadata: filename ${NOTES},filetype ${PLAIN}`).map((line) => [line])],
  [
    1,
    fc.integer({ min: 1, max: 2_000 }).map((n) => [
      `Upload-Metadata: filename ${NOTES},filetype ${PLAIN},${
        Array.from({ length: n }, (_, i) => `k${i} YQ==`).join(",")
      }`
    ])
  ],
  [1, repeated(" ", 100, 10_000, `Upload-Metadata: filename ${NOTES},filetype ${PLAIN}`).map((line) => [line])],
  [
    1,
    fc.array(fc.tuple(fc.string({ maxLength: 8 }), anyText(20)), { maxLength: 4 }).map((pairs) => [
      `Upload-Metadata: ${pairs.map(([key, value]) => `${key} ${base64(value)}`).join(",")}`
    ])
  ],
  [1, anyText(60).map((value) => [`Upload-Metadata: ${value}`])]
)

/** The length a creation declares: within the policy mostly, at and past its edges, past any integer. */
const declaredLength: fc.Arbitrary<number> = weighted(
  [10, fc.integer({ min: policy.minBytes, max: policy.maxBytes })],
  [
    2,
    fc.constantFrom(
      0,
      1,
      policy.minBytes - 1,
      policy.minBytes,
      policy.maxBytes,
      policy.maxBytes + 1,
      5 * 1024 ** 3,
      Number.MAX_SAFE_INTEGER,
      2 ** 53
    )
  ],
  [1, fc.integer({ min: 0, max: 10 * policy.maxBytes })]
)

/** Upload-Length for `n`: as is mostly; signed, padded, fractional, repeated, missing, deferred. */
const uploadLengthLines = (n: number): fc.Arbitrary<ReadonlyArray<Text>> =>
  weighted<ReadonlyArray<Text>>(
    [14, fc.constant([`Upload-Length: ${n}`])],
    [
      4,
      fc.constantFrom(
        "-1",
        `-${n}`,
        `+${n}`,
        ` ${n} `,
        `0${n}`,
        `${n}.0`,
        `${n}, ${n}`,
        `${n}e0`,
        "1e3",
        "0x200",
        "",
        "abc",
        "NaN",
        "Infinity",
        "99999999999999999999",
        "9007199254740993",
        "\uff16\uff10\uff10",
        `${n}\u0000`
      ).map((value) => [`Upload-Length: ${value}`])
    ],
    [
      2,
      fc.constantFrom<ReadonlyArray<Text>>(
        [],
        [`Upload-Length: ${n}`, `Upload-Length: ${n}`],
        [`Upload-Length: ${n}`, `Upload-Length: ${n + 1}`],
        [`Upload-Length: ${n}`, "Upload-Defer-Length: 1"],
        ["Upload-Defer-Length: 1"],
        [`Upload-Length: ${n}`, "Upload-Defer-Length: "],
        [`upload-length: ${n}`]
      )
    ],
    [1, fc.integer().map((value) => [`Upload-Length: ${value}`])],
    [1, anyText(20).map((value) => [`Upload-Length: ${value}`])]
  )

/** The Content-Type of tus bytes: right mostly; cased, with parameters, another type, repeated, missing. */
const offsetStreamType: fc.Arbitrary<ReadonlyArray<string>> = weighted<ReadonlyArray<string>>(
  [16, fc.constant(["Content-Type: application/offset+octet-stream"])],
  [
    4,
    fc.constantFrom<ReadonlyArray<string>>(
      [],
      ["Content-Type: Application/Offset+Octet-Stream"],
      ["Content-Type: application/offset+octet-stream; charset=utf-8"],
      ["Content-Type: application/offset+octet-stream;"],
      ["Content-Type: application/offset+octet-stream ; x=\"y"],
      ["Content-Type: application/octet-stream"],
      ["Content-Type: text/plain"],
      ["Content-Type: "],
      ["Content-Type: application/offset+octet-stream, text/plain"],
      ["Content-Type: application/offset+octet-stream", "Content-Type: text/plain"],
      ["Content-Type: multipart/form-data; boundary=x"],
      ["Content-Type: application/json"],
      ["Content-Type: application/offset octet-stream"],
      ["Content-Type: ;application/offset+octet-stream"],
      ["Content-Type: application/offset+octet-stream\u0000"]
    )
  ],
  [1, anyText(30).map((value) => [`Content-Type: ${value}`])]
)

const ZEROS_20 = base64(new Uint8Array(20))
const ZEROS_32 = base64(new Uint8Array(32))

/** Upload-Checksum: none mostly; the body's true digest; a wrong one; another algorithm; mangled. */
const checksumLines: fc.Arbitrary<ReadonlyArray<Text>> = weighted<ReadonlyArray<Text>>(
  [12, fc.constant([])],
  [4, fc.constantFrom(["Upload-Checksum: sha1 {sha1}"], ["Upload-Checksum: sha256 {sha256}"])],
  [
    3,
    fc.constantFrom<ReadonlyArray<Text>>(
      [`Upload-Checksum: sha1 ${ZEROS_20}`],
      [`Upload-Checksum: sha256 ${ZEROS_32}`],
      ["Upload-Checksum: sha1 {sha256}"],
      ["Upload-Checksum: sha256 {sha1}"],
      ["Upload-Checksum: md5 1B2M2Y8AsgTpgAmY7PhCfg=="],
      ["Upload-Checksum: crc32 AAAAAA=="],
      ["Upload-Checksum: SHA256 {sha256}"],
      ["Upload-Checksum: sha256"],
      ["Upload-Checksum: sha256 "],
      ["Upload-Checksum: "],
      ["Upload-Checksum: sha256  {sha256}"],
      ["Upload-Checksum: sha256 {sha256} x"],
      ["Upload-Checksum: sha256,{sha256}"],
      ["Upload-Checksum: sha256 !!!!"],
      ["Upload-Checksum: sha256 {sha256}="],
      ["Upload-Checksum: sha256 ===="],
      ["Upload-Checksum: sha256 AAAA"],
      ["Upload-Checksum: sha256 {sha256}", "Upload-Checksum: sha1 {sha1}"],
      ["Upload-Checksum: sha256 {sha256}", "Upload-Checksum: sha256 {sha256}"]
    )
  ],
  [1, repeated("A", 100, 20_000, "Upload-Checksum: sha256 ").map((line) => [line])],
  [1, anyText(40).map((value) => [`Upload-Checksum: ${value}`])]
)

/** Headers a tus client does not send, or sends wrong. */
const tusExtraHeaders: fc.Arbitrary<ReadonlyArray<Text>> = weighted<ReadonlyArray<Text>>(
  [12, fc.constant([])],
  [2, fc.array(extraHeader, { minLength: 1, maxLength: 2 })],
  [
    1,
    fc.constantFrom<ReadonlyArray<Text>>(
      ["Upload-Concat: partial"],
      ["Upload-Concat: final;/uploads/{upload:0} /uploads/{upload:1}"],
      ["X-HTTP-Method-Override: DELETE"],
      ["X-HTTP-Method-Override: PATCH"],
      ["Upload-Expires: Wed, 25 Jun 2014 16:00:00 GMT"],
      ["Upload-Offset: 0"],
      ["Idempotency-Key: k-1"],
      ["Expect: 100-continue"],
      ["Origin: http://evil.example", "Access-Control-Request-Method: PATCH"]
    )
  ]
)

/** The framing of a body: any for bytes; for none, mostly no header or `Content-Length: 0`. */
const framingOf = (body: Body): fc.Arbitrary<Framing> =>
  body._tag === "Empty"
    ? weighted<Framing>([4, fc.constant({ _tag: "None" })], [2, fc.constant({ _tag: "Length" })], [1, framing])
    : framing

/** Requests a tus client may pipeline behind the first. */
const tusFollowUp = fc.constantFrom(
  "OPTIONS /uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
  "PATCH /uploads/{upload:0} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n" +
    "Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset:0}\r\nContent-Length: 3\r\n\r\nabc",
  "DELETE /uploads/{gone:0} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n",
  "POST /uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 600\r\n" +
    `Upload-Metadata: filename ${NOTES},filetype ${PLAIN}\r\nConnection: close\r\n\r\n`
)

/** Where a tus request about seed upload `k` goes: mostly there; another upload, a file, garbage. */
const uploadTarget = (k: number): fc.Arbitrary<Text> =>
  weighted<Text>(
    [16, fc.constant(`/uploads/{upload:${k}}`)],
    [
      3,
      fc.constantFrom(
        `/uploads/{gone:${k}}`,
        `/uploads/{id:${k % SEED_FILES}}`,
        `/uploads/{victim:${k % SEED_FILES}}`,
        `/uploads/{upload:${(k + 1) % SEED_UPLOADS}}`
      )
    ],
    [
      1,
      fc.constantFrom(
        `/uploads/{upload:${k}}/`,
        `/uploads/{upload:${k}}?x=1`,
        `/uploads/{upload:${k}}#x`,
        `//uploads/{upload:${k}}`,
        `/UPLOADS/{upload:${k}}`,
        `/uploads/{upload:${k}}%00`,
        `/uploads/{upload:${k}}/content`,
        `/uploads/../uploads/{upload:${k}}`,
        `/uploads/%7Bupload%3A${k}%7D`,
        // Not `/files/{upload:K}`: a DELETE there could remove a file a finished upload was acknowledged as.
        `/files/{upload:${k}}/content`,
        "/uploads",
        "/uploads/",
        `http://127.0.0.1/uploads/{upload:${k}}`
      )
    ],
    [2, weighted<Text>([1, fc.uuid()], [2, garbageSegment]).map((segment) => `/uploads/${textOf(segment)}`)]
  )

/** A seed upload: which one. */
const seedUpload = fc.nat(SEED_UPLOADS - 1)

/** The rest of seed upload `k`, give or take: mostly exactly it, valid text; shorter, longer, split, not UTF-8. */
const fillBody = (k: number): fc.Arbitrary<Body> =>
  fc.record({
    delta: weighted(
      [10, fc.constant(0)],
      [4, fc.integer({ min: -2_048, max: -1 })],
      [2, fc.integer({ min: 1, max: 300 })],
      [1, fc.integer({ min: 2_049, max: 70_000 })]
    ),
    content: weighted<Fill["content"]>([10, fc.constant("text")], [2, fc.constant("split")], [
      2,
      fc.constant("invalid")
    ]),
    at: fc.integer({ min: 0, max: 999 })
  }).map(({ at, content, delta }): Body => ({ _tag: "Fill", fill: { upload: k, delta, content, at } }))

/** A PATCH's body: the rest of the upload mostly; nothing, text of any size, bytes that are not UTF-8, a huge run. */
const patchBody = (k: number): fc.Arbitrary<Body> =>
  weighted<Body>(
    [10, fillBody(k)],
    [1, fc.constant<Body>({ _tag: "Empty" })],
    [2, fc.integer({ min: 0, max: policy.maxBytes + 100 }).chain(utf8OfLength).map(bytesBody)],
    [1, fc.integer({ min: 1, max: policy.maxBytes }).chain((n) => invalidUtf8OfLength(n)).map(bytesBody)],
    [1, fc.uint8Array({ maxLength: 3000 }).map(bytesBody)],
    [1, repeated("t", 2_049, 80_000).map(bytesBody)]
  )

/** Upload-Offset for seed upload `k`: its offset as last seen mostly; another, signed, padded, repeated, missing. */
const offsetLines = (k: number): fc.Arbitrary<ReadonlyArray<Text>> =>
  weighted<ReadonlyArray<Text>>(
    [18, fc.constant([`Upload-Offset: {offset:${k}}`])],
    [
      4,
      fc.constantFrom<ReadonlyArray<Text>>(
        [],
        ["Upload-Offset: 0"],
        [`Upload-Offset: {length:${k}}`],
        [`Upload-Offset: {offset:${k}}1`],
        [`Upload-Offset: -{offset:${k}}`],
        [`Upload-Offset: +{offset:${k}}`],
        [`Upload-Offset: 0{offset:${k}}`],
        [`Upload-Offset: {offset:${k}}.0`],
        [`Upload-Offset:  {offset:${k}} `],
        [`Upload-Offset: {offset:${k}}, {offset:${k}}`],
        [`Upload-Offset: {offset:${k}}`, `Upload-Offset: {offset:${k}}`],
        [`Upload-Offset: {offset:${k}}`, "Upload-Offset: 0"],
        [`Upload-Offset: {offset:${k}}\u0000`],
        ["Upload-Offset: -1"],
        ["Upload-Offset: "],
        ["Upload-Offset: abc"],
        ["Upload-Offset: 1e3"],
        ["Upload-Offset: 0x10"],
        ["Upload-Offset: 99999999999999999999"],
        ["Upload-Offset: 9007199254740993"],
        ["Upload-Offset: 9007199254740991"],
        ["Upload-Offset: \uff10"]
      )
    ],
    [1, fc.integer().map((n) => [`Upload-Offset: ${n}`])],
    [1, anyText(16).map((value) => [`Upload-Offset: ${value}`])]
  )

const tusVersion = weighted([12, fc.constant("HTTP/1.1")], [1, version])

const pipelinedTus = weighted<string | null>([8, fc.constant(null)], [1, tusFollowUp])

const withPipelined = (
  { pipelined, ...request }: Omit<HostileRequest, "pipelined"> & { readonly pipelined: string | null }
): HostileRequest => pipelined === null ? request : { ...request, pipelined }

/** A creation's bytes: none mostly; all `n`, fewer, more, not UTF-8, random, a huge run. */
const creationBody = (n: number): fc.Arbitrary<Body> => {
  const size = Math.max(0, Math.min(n, 4_000))
  return weighted<Body>(
    [8, fc.constant<Body>({ _tag: "Empty" })],
    [4, utf8OfLength(size).map(bytesBody)],
    [2, fc.integer({ min: 0, max: size }).chain(utf8OfLength).map(bytesBody)],
    [1, fc.integer({ min: size + 1, max: size + 300 }).chain(utf8OfLength).map(bytesBody)],
    [1, invalidUtf8OfLength(Math.max(4, size)).map(bytesBody)],
    [1, fc.uint8Array({ maxLength: 3000 }).map(bytesBody)],
    [1, repeated("t", 2_049, 80_000).map(bytesBody)]
  )
}

/**
 * POST /uploads (tus creation): Upload-Length, Upload-Metadata and Tus-Resumable
 * of every kind, sometimes with bytes (creation-with-upload) of any size or
 * content, framed and delivered any way.
 */
const tusCreation: fc.Arbitrary<HostileRequest> = declaredLength.chain((n) =>
  creationBody(n).chain((body) =>
    fc.record({
      method: weighted([20, fc.constant("POST")], [1, fc.constantFrom("post", "PUT")]),
      target: weighted<Text>([20, fc.constant("/uploads")], [
        1,
        fc.constantFrom("/uploads/", "/uploads?x=1", "//uploads", "/Uploads", "/uploads/{upload:0}", "/files")
      ]),
      version: tusVersion,
      headers: fc.tuple(
        baseHeaders,
        tusResumable,
        uploadLengthLines(n),
        metadataLines,
        body._tag === "Empty"
          ? weighted([8, fc.constant<ReadonlyArray<string>>([])], [1, offsetStreamType])
          : offsetStreamType,
        checksumLines,
        tusExtraHeaders
      ).map((lines): ReadonlyArray<Text> => lines.flat()),
      body: fc.constant(body),
      framing: framingOf(body),
      delivery,
      pipelined: pipelinedTus
    }).map(withPipelined)
  )
)

/** PATCH /uploads/{id}: a seed upload mostly, at its offset mostly, with bytes of every kind. */
const tusPatch: fc.Arbitrary<HostileRequest> = seedUpload.chain((k) =>
  patchBody(k).chain((body) =>
    fc.record({
      method: weighted([20, fc.constant("PATCH")], [1, fc.constantFrom("patch", "PUT", "POST")]),
      target: uploadTarget(k),
      version: tusVersion,
      headers: fc.tuple(baseHeaders, tusResumable, offsetLines(k), offsetStreamType, checksumLines, tusExtraHeaders)
        .map((lines): ReadonlyArray<Text> => lines.flat()),
      body: fc.constant(body),
      framing: framingOf(body),
      delivery,
      pipelined: pipelinedTus
    }).map(withPipelined)
  )
)

/** HEAD and DELETE /uploads/{id} (status, termination): seed uploads, gone ones, garbage. */
const tusStatusOrTermination: fc.Arbitrary<HostileRequest> = seedUpload.chain((k) =>
  fc.record({
    method: weighted([3, fc.constant("HEAD")], [2, fc.constant("DELETE")], [
      1,
      fc.constantFrom("head", "delete", "GET")
    ]),
    target: uploadTarget(k),
    version: tusVersion,
    headers: fc.tuple(baseHeaders, tusResumable, tusExtraHeaders).map((lines): ReadonlyArray<Text> => lines.flat()),
    body: weighted<Body>(
      [8, fc.constant({ _tag: "Empty" })],
      [1, fc.uint8Array({ maxLength: 300 }).map(bytesBody)],
      [1, fillBody(k)]
    ),
    delivery,
    pipelined: pipelinedTus
  }).chain(({ body, ...rest }) => framingOf(body).map((framing) => withPipelined({ ...rest, body, framing })))
)

/** OPTIONS (tus discovery, CORS preflights), and other methods, on tus paths. */
const tusOther: fc.Arbitrary<HostileRequest> = seedUpload.chain((k) =>
  fc.record({
    method: weighted(
      [4, fc.constant("OPTIONS")],
      [1, fc.constantFrom("GET", "PUT", "POST", "TRACE", "options", "CONNECT", "PROPFIND")]
    ),
    target: weighted<Text>(
      [4, fc.constantFrom("/uploads", "/uploads/", "*", "/uploads?x=1")],
      [2, uploadTarget(k)]
    ),
    version: tusVersion,
    headers: fc.tuple(
      baseHeaders,
      weighted([2, fc.constant<ReadonlyArray<string>>([])], [1, tusResumable]),
      weighted<ReadonlyArray<string>>(
        [3, fc.constant([])],
        [
          1,
          fc.constantFrom(
            ["Origin: http://evil.example", "Access-Control-Request-Method: PATCH"],
            ["Origin: null", "Access-Control-Request-Method: DELETE", "Access-Control-Request-Headers: upload-offset"],
            ["Access-Control-Request-Method: \u0000"],
            [`Access-Control-Request-Headers: ${"tus-resumable, ".repeat(500)}`]
          )
        ]
      ),
      tusExtraHeaders
    ).map((lines): ReadonlyArray<Text> => lines.flat()),
    body: weighted<Body>(
      [8, fc.constant({ _tag: "Empty" })],
      [1, fc.uint8Array({ maxLength: 3000 }).map(bytesBody)],
      [1, fillBody(k)]
    ),
    delivery,
    pipelined: pipelinedTus
  }).chain(({ body, ...rest }) => framingOf(body).map((framing) => withPipelined({ ...rest, body, framing })))
)

/** A tus request (`/uploads`): creations and PATCHes mostly. */
export const tusRequest: fc.Arbitrary<HostileRequest> = weighted(
  [6, tusCreation],
  [7, tusPatch],
  [3, tusStatusOrTermination],
  [2, tusOther]
)

/** One hostile request: about one in six speaks tus. */
export const hostileRequest: fc.Arbitrary<HostileRequest> = weighted(
  [9, uploadRequest],
  [8, otherRequest],
  [3, downloadRequest],
  [1, linkRequest],
  [1, garbageRequest],
  [5, tusRequest]
)
