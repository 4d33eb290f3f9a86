import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, Multipart, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import {
  BadRequest,
  InternalError,
  NotFound,
  PayloadTooLarge,
  RangeNotSatisfiable,
  ServiceUnavailable,
  Unprocessable,
  UnsupportedMediaType
} from "./ApiErrors.js"

/** A file as clients see it; the object key stays internal. */
export class FileView extends Schema.Class<FileView>("FileView")({
  id: Schema.UUID,
  name: Schema.String,
  size: Schema.NonNegativeInt,
  contentType: Schema.String,
  sha256: Schema.String.annotations({ description: "Lowercase hex SHA-256 of the bytes" }),
  createdAt: Schema.DateTimeUtc
}) {}

export class FilePage extends Schema.Class<FilePage>("FilePage")({
  items: Schema.Array(FileView),
  nextCursor: Schema.NullOr(Schema.String).annotations({ description: "Pass as ?cursor= for the next page; null at the end" })
}) {}

const FileIdPath = Schema.Struct({ id: Schema.String })

export class FilesApi extends HttpApiGroup.make("files")
  .add(
    HttpApiEndpoint.post("upload", "/files")
      // Declared for the OpenAPI document; the handler parses the body itself (MultipartForm.ts).
      .setPayload(HttpApiSchema.MultipartStream(Schema.Struct({ file: Multipart.SingleFileSchema })))
      .addSuccess(FileView, { status: 201 })
      .addError(BadRequest)
      .addError(PayloadTooLarge)
      .addError(UnsupportedMediaType)
      .addError(Unprocessable)
      .addError(ServiceUnavailable)
      .annotate(OpenApi.Description, "Upload one file as multipart/form-data, in a part named `file`.")
  )
  .add(
    HttpApiEndpoint.get("list", "/files")
      .setUrlParams(Schema.Struct({
        limit: Schema.optional(Schema.String).annotations({ description: "1 to 100, default 20" }),
        cursor: Schema.optional(Schema.String)
      }))
      .addSuccess(FilePage)
      .addError(BadRequest)
      .addError(ServiceUnavailable)
      .annotate(OpenApi.Description, "Files, newest first, a page at a time.")
  )
  .add(
    HttpApiEndpoint.get("get", "/files/:id")
      .setPath(FileIdPath)
      .addSuccess(FileView)
      .addError(NotFound)
      .addError(ServiceUnavailable)
  )
  .add(
    HttpApiEndpoint.get("content", "/files/:id/content")
      .setPath(FileIdPath)
      .addSuccess(HttpApiSchema.withEncoding(Schema.Uint8ArrayFromSelf, {
        kind: "Uint8Array",
        contentType: "application/octet-stream"
      }))
      .addError(NotFound)
      .addError(InternalError)
      .addError(ServiceUnavailable)
      .addError(RangeNotSatisfiable)
      .annotate(
        OpenApi.Description,
        "The file's exact bytes, with its content type, length and ETag (its SHA-256); a single `Range: bytes=` " +
          "range gives 206 with those bytes, `If-None-Match` with the ETag gives 304."
      )
  )
  .add(
    HttpApiEndpoint.del("delete", "/files/:id")
      .setPath(FileIdPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFound)
      .addError(ServiceUnavailable)
  )
{}

export class HealthApi extends HttpApiGroup.make("health")
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Description, "The process is up.")
  )
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ready") }))
      .addError(ServiceUnavailable)
      .annotate(OpenApi.Description, "The database and the object store are reachable.")
  )
{}

export class TandemApi extends HttpApi.make("tandem")
  .add(FilesApi)
  .add(HealthApi)
  .annotate(OpenApi.Title, "tandem")
  .annotate(OpenApi.Description, "File uploads that land in object storage and PostgreSQL together, or not at all.")
{}
