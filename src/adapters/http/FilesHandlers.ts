import { HttpApiBuilder, HttpApp, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Option } from "effect"
import { FileService } from "../../app/FileService.js"
import { encodeCursor } from "../../domain/FileCursor.js"
import type { FileRecord } from "../../domain/FileRecord.js"
import { FilePage, FileView, TandemApi } from "./Api.js"
import * as MultipartForm from "./MultipartForm.js"
import { parseRange } from "./RangeHeader.js"
import { BodyTooLarge, MissingFilePart, NotMultipart, RangeNotSatisfiable } from "./RequestErrors.js"

/**
 * The most a form may hold beside its file's content: the framing, part headers
 * and fields together (a text field of tens of KiB is fine). Counted apart from the
 * file, whose own bound is the policy's maximum.
 */
const MAX_BYTES_BESIDE_FILE = 64 * 1024
const MAX_FORM_PARTS = 16

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

/** Sets headers on the response the request ends with, whether it succeeds or fails. */
const withResponseHeaders = (headers: Record<string, string>) =>
  HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeaders(response, headers)))

export const FilesHandlers = HttpApiBuilder.group(TandemApi, "files", (handlers) =>
  Effect.gen(function*() {
    const files = yield* FileService
    const maxBytes = files.policy.maxBytes

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
          const record = yield* uploadSingleFile(request)
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
          const asked = parseRange(request.headers["range"], record.size)
          switch (asked._tag) {
            case "Unsatisfiable":
              yield* withResponseHeaders({ ...served, "content-range": `bytes */${record.size}` })
              return yield* new RangeNotSatisfiable({ size: record.size })
            case "Part": {
              const { end, start } = asked.range
              return HttpServerResponse.stream(yield* files.content(record, asked.range), {
                status: 206,
                contentType: servedContentType(record),
                contentLength: end - start + 1,
                headers: { ...served, "content-range": `bytes ${start}-${end}/${record.size}` }
              })
            }
            case "Whole":
              return HttpServerResponse.stream(yield* files.content(record), {
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
