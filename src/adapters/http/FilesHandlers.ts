import { HttpApiBuilder, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Context, DateTime, Effect, Metric, Option, Stream } from "effect"
import { FileService } from "../../app/FileService.js"
import * as Metrics from "../../app/Metrics.js"
import { encodeCursor } from "../../domain/FileCursor.js"
import type { FileRecord, Owner } from "../../domain/FileRecord.js"
import type { IdempotencyKey } from "../../domain/IdempotencyKey.js"
import { FilePage, FileView, Link, TandemApi } from "./Api.js"
import { CurrentOwner } from "./Authentication.js"
import { LinkSigner } from "./LinkSigner.js"
import * as MultipartForm from "./MultipartForm.js"
import * as OwnerRateLimits from "./OwnerRateLimits.js"
import { parseRange } from "./RangeHeader.js"
import { BodyTooLarge, MissingFilePart, NotMultipart, RangeNotSatisfiable, ServerBusy } from "./RequestErrors.js"
import { withResponseHeaders } from "./ResponseHeaders.js"

/**
 * The most a form may hold beside its file's content: the framing, part headers
 * and fields together (a text field of tens of KiB is fine). Counted apart from the
 * file, whose own bound is the policy's maximum.
 */
const MAX_BYTES_BESIDE_FILE = 64 * 1024
const MAX_FORM_PARTS = 16

/**
 * What a refused upload is told to wait (Retry-After): a permit frees whenever any
 * upload in flight ends, and a refusal costs the server only the request's headers.
 */
const RETRY_AFTER_SECONDS = 1

/** How many uploads the handlers take at once, in all and per owner. */
export class UploadLimits extends Context.Tag("http/UploadLimits")<UploadLimits, {
  /** Uploads in flight; one more is refused at once with 503 ServerBusy (MAX_CONCURRENT_UPLOADS). */
  readonly maxConcurrentUploads: number
  /** Each owner's rate (429 RateLimited past it). */
  readonly perOwner: OwnerRateLimits.OwnerRateLimitSettings
}>() {}

/** A record is valid by construction, so its view is not validated again (`true`); it is encoded on the way out. */
const toView = (record: FileRecord) =>
  new FileView({
    id: record.id,
    name: record.name,
    size: record.size,
    contentType: record.contentType,
    sha256: record.sha256,
    createdAt: record.createdAt
  }, true)

const etagOf = (record: FileRecord) => `"${record.sha256}"`

/** RFC 9110 weak comparison: `*`, or any listed tag equal to ours with or without `W/`. */
const matchesIfNoneMatch = (header: string | undefined, etag: string): boolean =>
  header !== undefined &&
  header.split(",").some((candidate) => {
    const tag = candidate.trim().replace(/^W\//, "")
    return tag === "*" || tag === etag
  })

/** `attachment` with an ASCII fallback name and the exact name in RFC 5987 form. */
const contentDisposition = (name: string): string => {
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/g, "_")
  // RFC 5987's attr-char has no ' ( ) *, which encodeURIComponent leaves alone.
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`
}

/** Text is validated UTF-8, so say so; other types are served as recorded. */
const servedContentType = (record: FileRecord): string =>
  record.contentType.startsWith("text/") ? `${record.contentType}; charset=utf-8` : record.contentType

/**
 * A body that fails once its headers are out (a store that fails midway, bytes that
 * are not the file's) cuts the connection: the client sees a body shorter than its
 * Content-Length at once, never a clean end, nor a wait for bytes that will not come.
 */
const cutOnFailure = <E>(request: HttpServerRequest.HttpServerRequest, body: Stream.Stream<Uint8Array, E>) =>
  Stream.tapErrorCause(body, () => Effect.sync(() => NodeHttpServerRequest.toServerResponse(request).destroy()))

/** Sets headers on the response the request ends with, whether it succeeds or fails. */

export const FilesHandlers = HttpApiBuilder.group(TandemApi, "files", (handlers) =>
  Effect.gen(function*() {
    const files = yield* FileService
    const limits = yield* UploadLimits
    const maxBytes = files.policy.maxBytes
    // Each upload holds a part buffer and a store connection while it runs: their
    // number, and so memory, is bounded by refusing uploads past it, never queueing them.
    const uploads = yield* Effect.makeSemaphore(limits.maxConcurrentUploads)
    const owners = OwnerRateLimits.make(limits.perOwner)
    const links = yield* LinkSigner

    /**
     * Reads the form as it arrives: fields are skipped; the first file part must
     * be named `file`, and its bytes stream into the upload, which the form ends
     * only once it holds no other file.
     */
    const uploadSingleFile = (
      owner: Owner,
      request: HttpServerRequest.HttpServerRequest,
      key: Option.Option<IdempotencyKey>
    ) =>
      Effect.scoped(Effect.gen(function*() {
        const form = yield* MultipartForm.open(NodeHttpServerRequest.toIncomingMessage(request), {
          maxParts: MAX_FORM_PARTS,
          maxFieldBytes: MAX_BYTES_BESIDE_FILE,
          maxBytesBesideFile: MAX_BYTES_BESIDE_FILE,
          maxFileBytes: maxBytes + 1
        })
        const file = yield* form.firstFile
        if (Option.isNone(file)) return yield* new MissingFilePart({})
        if (file.value.field !== "file") return yield* new MissingFilePart({ found: file.value.field })
        // A file input with no file chosen: a part that names no file (and, from browsers, has no bytes).
        if (Option.isNone(file.value.filename)) return yield* new MissingFilePart({})
        return yield* files.uploadOnce(
          owner,
          { name: file.value.filename.value, contentType: file.value.contentType },
          file.value.content,
          key
        )
      }))

    return handlers
      .handle("upload", ({ headers, request }) =>
        Effect.gen(function*() {
          const owner = yield* CurrentOwner
          const contentType = request.headers["content-type"] ?? ""
          if (!/^multipart\/form-data\s*;/i.test(contentType)) return yield* new NotMultipart({ contentType })
          // Refuse an announced body larger than any acceptable form before reading any of
          // it, and close the connection: otherwise the server would read the whole body
          // to keep it alive.
          const length = Number(request.headers["content-length"])
          if (length > maxBytes + MAX_BYTES_BESIDE_FILE) {
            yield* withResponseHeaders({ connection: "close" })
            return yield* new BodyTooLarge({
              length,
              maxFileBytes: maxBytes,
              maxBytesBesideFile: MAX_BYTES_BESIDE_FILE
            })
          }
          // Past the cap: refused at once, before any of the body is read, and the
          // connection closed so the body is not read to keep it alive either.
          const uploaded = yield* uploads.withPermitsIfAvailable(1)(
            owners.limit(owner, uploadSingleFile(owner, request, Option.fromNullable(headers["idempotency-key"]))).pipe(
              Metrics.countInFlight,
              Effect.tapErrorTag(
                "RateLimited",
                (limited) =>
                  withResponseHeaders({ connection: "close", "retry-after": String(limited.retryAfterSeconds) })
              )
            )
          )
          if (Option.isNone(uploaded)) {
            yield* withResponseHeaders({ connection: "close", "retry-after": String(RETRY_AFTER_SECONDS) })
            return yield* new ServerBusy({
              maxConcurrentUploads: limits.maxConcurrentUploads,
              retryAfterSeconds: RETRY_AFTER_SECONDS
            })
          }
          const { record, replayed } = uploaded.value
          return yield* HttpServerResponse.schemaJson(FileView)(toView(record), {
            status: 201,
            headers: { location: `/files/${record.id}`, ...(replayed ? { "idempotent-replayed": "true" } : {}) }
          }).pipe(Effect.orDie)
        }).pipe(
          Metrics.measureUpload((response) =>
            response.headers["idempotent-replayed"] === "true" ? "replayed" : "stored"
          )
        ))
      .handle("list", ({ urlParams }) =>
        Effect.map(
          Effect.flatMap(
            CurrentOwner,
            (owner) => files.list(owner, { limit: urlParams.limit, after: Option.fromNullable(urlParams.cursor) })
          ),
          (page) =>
            new FilePage({
              items: page.items.map(toView),
              nextCursor: Option.getOrNull(Option.map(page.nextCursor, encodeCursor))
            })
        ))
      .handle(
        "get",
        ({ path }) => Effect.map(Effect.flatMap(CurrentOwner, (owner) => files.get(owner, path.id)), toView)
      )
      .handle("content", ({ path, request }) =>
        Effect.gen(function*() {
          const record = yield* files.get(yield* CurrentOwner, path.id)
          const etag = etagOf(record)
          // Whatever a file holds, a browser neither runs it nor shows it in another site's page.
          const headers = {
            etag,
            "cache-control": "private, no-cache",
            "x-content-type-options": "nosniff",
            "content-security-policy": "sandbox; default-src 'none'",
            "cross-origin-resource-policy": "same-origin"
          }
          if (matchesIfNoneMatch(request.headers["if-none-match"], etag)) {
            return HttpServerResponse.empty({ status: 304, headers })
          }
          const served = {
            ...headers,
            "accept-ranges": "bytes",
            "content-disposition": contentDisposition(record.name)
          }
          // HEAD (routed here by the router): the headers alone, without opening the object.
          if (request.method === "HEAD") {
            return HttpServerResponse.empty({
              status: 200,
              headers: { ...served, "content-type": servedContentType(record), "content-length": String(record.size) }
            })
          }
          const asked = parseRange(request.headers["range"], record.size)
          switch (asked._tag) {
            case "Unsatisfiable":
              yield* withResponseHeaders({ ...served, "content-range": `bytes */${record.size}` })
              return yield* new RangeNotSatisfiable({ size: record.size })
            case "Part": {
              const { end, start } = asked.range
              yield* Metric.increment(Metrics.downloads)
              return HttpServerResponse.stream(cutOnFailure(request, yield* files.content(record, asked.range)), {
                status: 206,
                contentType: servedContentType(record),
                contentLength: end - start + 1,
                headers: { ...served, "content-range": `bytes ${start}-${end}/${record.size}` }
              })
            }
            case "Whole":
              yield* Metric.increment(Metrics.downloads)
              return HttpServerResponse.stream(cutOnFailure(request, yield* files.content(record)), {
                status: 200,
                contentType: servedContentType(record),
                contentLength: record.size,
                headers: served
              })
          }
        }))
      .handle("delete", ({ path }) => Effect.flatMap(CurrentOwner, (owner) => files.remove(owner, path.id)))
      .handle("link", ({ path, payload }) =>
        Effect.gen(function*() {
          const record = yield* files.get(yield* CurrentOwner, path.id)
          const expiresAt = DateTime.add(yield* DateTime.now, { seconds: payload.expiresInSeconds })
          return new Link({ url: links.sign(record, expiresAt), expiresAt })
        }))
  }))
