import { HttpApiBuilder, HttpApp, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Context, Effect, Option, Stream } from "effect"
import { FileService } from "../../app/FileService.js"
import { encodeCursor } from "../../domain/FileCursor.js"
import type { FileRecord } from "../../domain/FileRecord.js"
import { FilePage, FileView, TandemApi } from "./Api.js"
import * as MultipartForm from "./MultipartForm.js"
import { parseRange } from "./RangeHeader.js"
import { BodyTooLarge, MissingFilePart, NotMultipart, RangeNotSatisfiable, ServerBusy } from "./RequestErrors.js"

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

/** How many uploads the handlers take at once. */
export class UploadLimits extends Context.Tag("tandem/UploadLimits")<UploadLimits, {
  /** Uploads in flight; one more is refused at once with 503 ServerBusy (MAX_CONCURRENT_UPLOADS). */
  readonly maxConcurrentUploads: number
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
const withResponseHeaders = (headers: Record<string, string>) =>
  HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeaders(response, headers)))

export const FilesHandlers = HttpApiBuilder.group(TandemApi, "files", (handlers) =>
  Effect.gen(function*() {
    const files = yield* FileService
    const limits = yield* UploadLimits
    const maxBytes = files.policy.maxBytes
    // Each upload holds a part buffer and a store connection while it runs: their
    // number, and so memory, is bounded by refusing uploads past it, never queueing them.
    const uploads = yield* Effect.makeSemaphore(limits.maxConcurrentUploads)

    /**
     * Reads the form as it arrives: fields are skipped; the first file part must
     * be named `file`, and its bytes stream into the upload, which the form ends
     * only once it holds no other file.
     */
    const uploadSingleFile = (request: HttpServerRequest.HttpServerRequest) =>
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
        return yield* files.upload(
          { name: file.value.filename.value, contentType: file.value.contentType },
          file.value.content
        )
      }))

    return handlers
      .handle("upload", ({ request }) =>
        Effect.gen(function*() {
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
          const uploaded = yield* uploads.withPermitsIfAvailable(1)(uploadSingleFile(request))
          if (Option.isNone(uploaded)) {
            yield* withResponseHeaders({ connection: "close", "retry-after": String(RETRY_AFTER_SECONDS) })
            return yield* new ServerBusy({
              maxConcurrentUploads: limits.maxConcurrentUploads,
              retryAfterSeconds: RETRY_AFTER_SECONDS
            })
          }
          const record = uploaded.value
          return yield* HttpServerResponse.schemaJson(FileView)(toView(record), {
            status: 201,
            headers: { location: `/files/${record.id}` }
          }).pipe(Effect.orDie)
        }))
      .handle("list", ({ urlParams }) =>
        Effect.map(files.list({ limit: urlParams.limit, after: Option.fromNullable(urlParams.cursor) }), (page) =>
          new FilePage({
            items: page.items.map(toView),
            nextCursor: Option.getOrNull(Option.map(page.nextCursor, encodeCursor))
          })))
      .handle("get", ({ path }) =>
        Effect.map(files.get(path.id), toView))
      .handle("content", ({ path, request }) =>
        Effect.gen(function*() {
          const record = yield* files.get(path.id)
          const etag = etagOf(record)
          const headers = {
            etag,
            "cache-control": "private, no-cache",
            "x-content-type-options": "nosniff"
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
              return HttpServerResponse.stream(cutOnFailure(request, yield* files.content(record, asked.range)), {
                status: 206,
                contentType: servedContentType(record),
                contentLength: end - start + 1,
                headers: { ...served, "content-range": `bytes ${start}-${end}/${record.size}` }
              })
            }
            case "Whole":
              return HttpServerResponse.stream(cutOnFailure(request, yield* files.content(record)), {
                status: 200,
                contentType: servedContentType(record),
                contentLength: record.size,
                headers: served
              })
          }
        }))
      .handle("delete", ({ path }) =>
        files.remove(path.id))
  }))
