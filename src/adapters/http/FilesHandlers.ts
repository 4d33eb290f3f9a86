import { HttpApiBuilder, HttpApp, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Option } from "effect"
import { decodeCursor, encodeCursor } from "../../domain/FileCursor.js"
import type { FileRecord } from "../../domain/FileRecord.js"
import { FileTooLarge } from "../../domain/UploadErrors.js"
import { FileService } from "../../app/FileService.js"
import { FilePage, FileView, TandemApi } from "./Api.js"
import { toApiError } from "./ErrorMapping.js"
import { parseRange } from "./RangeHeader.js"
import * as MultipartForm from "./MultipartForm.js"
import { InvalidQuery, isRequestError, MissingFilePart, NotMultipart, TooManyFiles } from "./RequestErrors.js"

/** Room for boundaries and part headers around the file in a multipart body. */
const MULTIPART_OVERHEAD_BYTES = 16 * 1024
const MAX_FORM_PARTS = 16
const MAX_FIELD_BYTES = 64 * 1024
const DEFAULT_PAGE_SIZE = 20
const MAX_PAGE_SIZE = 100

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

const parseLimit = (raw: string | undefined) => {
  if (raw === undefined) return Effect.succeed(DEFAULT_PAGE_SIZE)
  const limit = /^\d{1,4}$/.test(raw) ? Number(raw) : Number.NaN
  return limit >= 1 && limit <= MAX_PAGE_SIZE
    ? Effect.succeed(limit)
    : Effect.fail(new InvalidQuery({ parameter: "limit", reason: `must be an integer from 1 to ${MAX_PAGE_SIZE}` }))
}

const parseCursor = (raw: string | undefined) =>
  raw === undefined
    ? Effect.succeed(Option.none())
    : Option.match(decodeCursor(raw), {
      onNone: () => Effect.fail(new InvalidQuery({ parameter: "cursor", reason: "is not a cursor this API returned" })),
      onSome: (cursor) => Effect.succeed(Option.some(cursor))
    })

const logRequestError = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.tapError(self, (error) =>
    isRequestError(error)
      ? Effect.logWarning("request refused").pipe(Effect.annotateLogs({ error: error._tag, message: error.message }))
      : Effect.void)

export const FilesHandlers = HttpApiBuilder.group(TandemApi, "files", (handlers) =>
  Effect.gen(function*() {
    const files = yield* FileService
    const maxBytes = files.policy.maxBytes

    /**
     * Reads the form as it arrives: fields are skipped; the first file part must
     * be named `file`, and its bytes stream into the upload; after its last byte
     * (before the file is committed) the rest of the form must hold no other file.
     */
    const uploadSingleFile = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.scoped(Effect.gen(function*() {
        const form = yield* MultipartForm.open(NodeHttpServerRequest.toIncomingMessage(request), {
          maxParts: MAX_FORM_PARTS,
          maxFieldBytes: MAX_FIELD_BYTES,
          maxFileBytes: maxBytes + 1
        })
        const file = yield* form.firstFile
        if (Option.isNone(file)) return yield* new MissingFilePart({})
        if (file.value.field !== "file") return yield* new MissingFilePart({ found: file.value.field })
        const noOtherFile = Effect.flatMap(form.anotherFile, (another) => another ? new TooManyFiles() : Effect.void)
        return yield* files.upload(
          { name: file.value.filename, contentType: file.value.contentType },
          file.value.content,
          noOtherFile
        )
      }))

    return handlers
      .handle("upload", ({ request }) =>
        Effect.gen(function*() {
          const contentType = request.headers["content-type"] ?? ""
          if (!/^multipart\/form-data\s*;/i.test(contentType)) return yield* new NotMultipart({ contentType })
          // Refuse an announced oversize body before reading any of it, and close the
          // connection: otherwise the server would read the whole body to keep it alive.
          const length = Number(request.headers["content-length"])
          if (length > maxBytes + MULTIPART_OVERHEAD_BYTES) {
            yield* HttpApp.appendPreResponseHandler((_, response) =>
              Effect.succeed(HttpServerResponse.setHeader(response, "connection", "close"))
            )
            return yield* new FileTooLarge({ maxBytes })
          }
          const record = yield* uploadSingleFile(request)
          return yield* HttpServerResponse.schemaJson(FileView)(toView(record), {
            status: 201,
            headers: { location: `/files/${record.id}` }
          }).pipe(Effect.orDie)
        }).pipe(logRequestError, Effect.mapError(toApiError)))
      .handle("list", ({ urlParams }) =>
        Effect.gen(function*() {
          const limit = yield* parseLimit(urlParams.limit)
          const after = yield* parseCursor(urlParams.cursor)
          const page = yield* files.list({ limit, after })
          return new FilePage({
            items: page.items.map(toView),
            nextCursor: Option.getOrNull(Option.map(page.nextCursor, encodeCursor))
          })
        }).pipe(logRequestError, Effect.mapError(toApiError)))
      .handle("get", ({ path }) => files.get(path.id).pipe(Effect.map(toView), Effect.mapError(toApiError)))
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
              return HttpServerResponse.unsafeJson({
                error: "RangeNotSatisfiable",
                message: `The file has ${record.size} bytes; the range asked for lies outside it.`
              }, { status: 416, headers: { ...served, "content-range": `bytes */${record.size}` } })
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
        }).pipe(Effect.mapError(toApiError)))
      .handle("delete", ({ path }) => files.remove(path.id).pipe(Effect.mapError(toApiError)))
  }))
