import { HttpApiBuilder, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option } from "effect"
import { ResumableUploads, type UploadStatus } from "../../app/ResumableUploads.js"
import type { FileId, Owner } from "../../domain/FileRecord.js"
import type { ContentReader } from "../../ports/ContentReader.js"
import { ofBytes } from "../../ports/ContentReader.js"
import { TandemApi } from "./Api.js"
import { CurrentOwner } from "./Authentication.js"
import { readerOf } from "./BodyReader.js"
import { UploadLimits } from "./FilesHandlers.js"
import { BodyIncomplete, InvalidHeader, NotOffsetOctetStream, ServerBusy } from "./RequestErrors.js"
import { withResponseHeaders } from "./ResponseHeaders.js"
import * as Tus from "./TusHeaders.js"

/** Where a finished upload's file is, and where an upload is. */
const fileLocation = (id: FileId) => `/files/${id}`
const uploadLocation = (id: FileId) => `/uploads/${id}`

/** Upload-Offset and, while the upload lives, Upload-Expires; the file's Location once it is one. */
const statusHeaders = (status: UploadStatus): Record<string, string> => ({
  "upload-offset": String(status.offset),
  ...Option.match(status.expiresAt, {
    onNone: () => ({}),
    onSome: (at) => ({ "upload-expires": Tus.httpDate(at) })
  }),
  ...Option.match(status.file, {
    onNone: () => ({}),
    onSome: (file) => ({ location: fileLocation(file.id) })
  })
})

const isOffsetOctetStream = (contentType: string | undefined) =>
  (contentType ?? "").split(";")[0]?.trim().toLowerCase() === Tus.OFFSET_OCTET_STREAM

/** Every /uploads response says which tus it speaks, errors too. */
const tusResponse = withResponseHeaders({ "tus-resumable": Tus.TUS_VERSION })

/** OPTIONS /uploads: what this server speaks (tus discovery). */
export const TusDiscoveryHandlers = HttpApiBuilder.group(
  TandemApi,
  "tusDiscovery",
  (handlers) =>
    Effect.gen(function*() {
      const uploads = yield* ResumableUploads
      const maxSize = String(uploads.maxBytes)
      return handlers.handle("discoverUploads", () =>
        Effect.succeed(HttpServerResponse.empty({
          status: 204,
          headers: {
            "tus-resumable": Tus.TUS_VERSION,
            "tus-version": Tus.TUS_VERSION,
            "tus-extension": Tus.TUS_EXTENSIONS,
            "tus-max-size": maxSize,
            "tus-checksum-algorithm": Tus.TUS_CHECKSUM_ALGORITHMS
          }
        })))
    })
)

/**
 * POST, HEAD, PATCH and DELETE /uploads (tus 1.0 with creation,
 * creation-with-upload, termination, expiration and checksum). The owner is the
 * caller, as for files. PATCHes (and POSTs with bytes) take a permit of their own,
 * as many as MAX_CONCURRENT_UPLOADS: each holds a part buffer while it runs.
 */
export const UploadsHandlers = HttpApiBuilder.group(TandemApi, "uploads", (handlers) =>
  Effect.gen(function*() {
    const uploads = yield* ResumableUploads
    const limits = yield* UploadLimits
    const writers = yield* Effect.makeSemaphore(limits.maxConcurrentUploads)

    /** The request's body, if it brings one: tus bytes, never anything else. */
    const bodyOf = (request: HttpServerRequest.HttpServerRequest, required: boolean) => {
      const contentType = request.headers["content-type"]
      const length = request.headers["content-length"]
      const hasBody = length !== undefined ? length !== "0" : request.headers["transfer-encoding"] !== undefined
      if (!isOffsetOctetStream(contentType)) {
        return required || hasBody
          ? Effect.fail(new NotOffsetOctetStream({ contentType: contentType ?? "" }))
          : Effect.succeed(Option.none<ContentReader<BodyIncomplete>>())
      }
      if (!hasBody) return Effect.succeed(Option.some<ContentReader<BodyIncomplete>>(ofBytes(new Uint8Array(0))))
      return Effect.map(readerOf(request.stream, () => new BodyIncomplete()), Option.some)
    }

    /** Bytes are written under a permit, refused (503 ServerBusy) past MAX_CONCURRENT_UPLOADS. */
    const underPermit = <A, E, R>(self: Effect.Effect<A, E, R>) =>
      writers.withPermitsIfAvailable(1)(self).pipe(
        Effect.flatMap(Option.match({
          onNone: () =>
            Effect.zipRight(
              withResponseHeaders({ connection: "close", "retry-after": "1" }),
              Effect.fail(new ServerBusy({ maxConcurrentUploads: limits.maxConcurrentUploads, retryAfterSeconds: 1 }))
            ),
          onSome: Effect.succeed
        }))
      )

    const append = (
      owner: Owner,
      id: FileId,
      offset: number,
      request: HttpServerRequest.HttpServerRequest,
      body: ContentReader<BodyIncomplete>
    ) =>
      Effect.flatMap(
        Tus.parseChecksum(request.headers["upload-checksum"]),
        (checksum) => underPermit(uploads.append(owner, id, offset, body, checksum))
      )

    return handlers
      .handle("createUpload", ({ request }) =>
        Effect.scoped(Effect.gen(function*() {
          yield* tusResponse
          yield* Tus.requireVersion(request.headers)
          const owner = yield* CurrentOwner
          if (request.headers["upload-defer-length"] !== undefined) {
            return yield* Effect.fail(
              new InvalidHeader({ header: "upload-defer-length", reason: "is not supported: send Upload-Length" })
            )
          }
          const length = yield* Tus.integerHeader(request.headers, "upload-length")
          const metadata = yield* Tus.parseMetadata(request.headers["upload-metadata"])
          const body = yield* bodyOf(request, false)
          const created = yield* uploads.create(
            owner,
            { name: metadata.get("filename") ?? "", contentType: metadata.get("filetype") ?? "" },
            length
          )
          // Errors of the creation's bytes name the upload too: the client resumes it from HEAD.
          yield* withResponseHeaders({ location: uploadLocation(created.id) })
          // creation-with-upload: the body is the first PATCH.
          const status = Option.isSome(body)
            ? yield* append(owner, created.id, 0, request, body.value)
            : created
          return HttpServerResponse.empty({
            status: 201,
            headers: { location: uploadLocation(created.id), ...statusHeaders(status) }
          })
        })))
      .handle("uploadStatus", ({ path, request }) =>
        Effect.gen(function*() {
          yield* Effect.zipRight(tusResponse, withResponseHeaders({ "cache-control": "no-store" }))
          yield* Tus.requireVersion(request.headers)
          const status = yield* uploads.status(yield* CurrentOwner, path.id)
          return HttpServerResponse.empty({
            status: 200,
            headers: { ...statusHeaders(status), "upload-length": String(status.length), "cache-control": "no-store" }
          })
        }))
      .handle("appendUpload", ({ path, request }) =>
        Effect.scoped(Effect.gen(function*() {
          yield* tusResponse
          yield* Tus.requireVersion(request.headers)
          const owner = yield* CurrentOwner
          const offset = yield* Tus.integerHeader(request.headers, "upload-offset")
          const body = yield* bodyOf(request, true)
          if (Option.isNone(body)) return yield* new NotOffsetOctetStream({ contentType: "" })
          const status = yield* append(owner, path.id, offset, request, body.value)
          return HttpServerResponse.empty({ status: 204, headers: statusHeaders(status) })
        })))
      .handle("terminateUpload", ({ path, request }) =>
        Effect.gen(function*() {
          yield* tusResponse
          yield* Tus.requireVersion(request.headers)
          yield* uploads.terminate(yield* CurrentOwner, path.id)
          return HttpServerResponse.empty({ status: 204 })
        }))
  }))
