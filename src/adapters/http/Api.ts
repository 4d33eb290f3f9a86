import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, Multipart, OpenApi } from "@effect/platform"
import { Option, ParseResult, Schema } from "effect"
import { decodeCursor, encodeCursor, type FileCursor } from "../../domain/FileCursor.js"
import { FileId } from "../../domain/FileRecord.js"
import { IdempotencyKey } from "../../domain/IdempotencyKey.js"
import { Authentication } from "./Authentication.js"
import { errorsOn } from "./ErrorTable.js"

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
  nextCursor: Schema.NullOr(Schema.String).annotations({
    description: "Pass as ?cursor= for the next page; null at the end"
  })
}) {}

export const DEFAULT_PAGE_SIZE = 20
export const MAX_PAGE_SIZE = 100

/**
 * The input schemas' `message` is the reason a client is told when its input does
 * not decode (see DecodeFailures.ts): a malformed id names no file, and a bad query
 * parameter is an InvalidQuery naming it.
 */
const FileIdParam = FileId.annotations({ description: "The file's id, a UUID" })

const PageSize = Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, MAX_PAGE_SIZE)).annotations({
  message: () => `must be an integer from 1 to ${MAX_PAGE_SIZE}`,
  jsonSchema: { type: "integer", minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE },
  description: `Files per page, 1 to ${MAX_PAGE_SIZE}`
})

const Cursor = Schema.transformOrFail(
  Schema.String,
  Schema.declare((u): u is FileCursor => typeof u === "object" && u !== null && "createdAt" in u && "id" in u),
  {
    strict: true,
    decode: (text, _, ast) =>
      Option.match(decodeCursor(text), {
        onNone: () => ParseResult.fail(new ParseResult.Type(ast, text)),
        onSome: ParseResult.succeed
      }),
    encode: (cursor) => ParseResult.succeed(encodeCursor(cursor))
  }
).annotations({
  message: () => "is not a cursor this API returned",
  jsonSchema: { type: "string" },
  description: "The `nextCursor` of the previous page"
})

const FileIdPath = Schema.Struct({ id: FileIdParam })

const LinkLifetime = Schema.Int.pipe(Schema.between(1, 7 * 24 * 3600)).annotations({
  message: () => ({ message: "must be a whole number of seconds from 1 to 604800 (7 days)", override: true }),
  description: "Seconds, 1 to 604800 (7 days)"
})

export class Link extends Schema.Class<Link>("Link")({
  url: Schema.String.annotations({ description: "/files/{id}/content?expires=…&signature=…" }),
  expiresAt: Schema.DateTimeUtc
}) {}

export class FilesApi extends HttpApiGroup.make("files")
  .add(
    HttpApiEndpoint.post("upload", "/files")
      // Declared for the OpenAPI document; the handler parses the body itself (MultipartForm.ts).
      .setPayload(HttpApiSchema.MultipartStream(Schema.Struct({ file: Multipart.SingleFileSchema })))
      .setHeaders(Schema.Struct({ "idempotency-key": Schema.optional(IdempotencyKey) }))
      .addSuccess(FileView, { status: 201 })
      .addError(errorsOn("upload"))
      .annotate(
        OpenApi.Description,
        "Upload one file as multipart/form-data, in a part named `file`. With an `Idempotency-Key`, a retry of the " +
          "same bytes under the same name returns the file the first attempt made (201, `Idempotent-Replayed: true`)."
      )
  )
  .add(
    HttpApiEndpoint.get("list", "/files")
      .setUrlParams(Schema.Struct({
        limit: Schema.optionalWith(PageSize, { default: () => DEFAULT_PAGE_SIZE }),
        cursor: Schema.optional(Cursor)
      }))
      .addSuccess(FilePage)
      .addError(errorsOn("list"))
      .annotate(OpenApi.Description, "Files, newest first, a page at a time.")
  )
  .add(
    HttpApiEndpoint.get("get", "/files/:id")
      .setPath(FileIdPath)
      .addSuccess(FileView)
      .addError(errorsOn("get"))
  )
  .add(
    HttpApiEndpoint.get("content", "/files/:id/content")
      .setPath(FileIdPath)
      .addSuccess(HttpApiSchema.withEncoding(Schema.Uint8ArrayFromSelf, {
        kind: "Uint8Array",
        contentType: "application/octet-stream"
      }))
      .addError(errorsOn("content"))
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
      .addError(errorsOn("delete"))
  )
  .add(
    HttpApiEndpoint.post("link", "/files/:id/links")
      .setPath(FileIdPath)
      .setPayload(Schema.Struct({ expiresInSeconds: Schema.optionalWith(LinkLifetime, { default: () => 3600 }) }))
      .addSuccess(Link, { status: 201 })
      .addError(errorsOn("link"))
      .annotate(
        OpenApi.Description,
        "A link to the file's content that works without a token until it expires (1 s to 7 days; 1 h by default)."
      )
  )
  .middleware(Authentication)
{}

const tusNote = "tus 1.0.0 (https://tus.io/protocols/resumable-upload): send `Tus-Resumable: 1.0.0`. "

/** tus discovery: what the server speaks, asked without a token (browsers send it as a CORS preflight too). */
export class TusDiscoveryApi extends HttpApiGroup.make("tusDiscovery")
  .add(
    HttpApiEndpoint.options("discoverUploads", "/uploads")
      .addSuccess(HttpApiSchema.NoContent)
      .annotate(
        OpenApi.Description,
        "Tus-Version, Tus-Extension (creation, creation-with-upload, termination, expiration, checksum), Tus-Max-Size " +
          "and Tus-Checksum-Algorithm (sha1, sha256)."
      )
  )
{}

/**
 * Resumable uploads (tus 1.0). The handlers read tus's headers and the PATCH body
 * themselves (UploadsHandlers.ts) and answer with tus's headers; errors are the
 * API's own JSON errors.
 */
export class UploadsApi extends HttpApiGroup.make("uploads")
  .add(
    HttpApiEndpoint.post("createUpload", "/uploads")
      .addSuccess(HttpApiSchema.Created)
      .addError(errorsOn("createUpload"))
      .annotate(
        OpenApi.Description,
        tusNote + "Creates an upload of `Upload-Length` bytes; `Upload-Metadata` names it (`filename`, `filetype`, " +
          "base64). Validated as `POST /files` is, before any byte. 201 with `Location: /uploads/{id}`; a body " +
          "(`application/offset+octet-stream`) is its first bytes."
      )
  )
  .add(
    HttpApiEndpoint.head("uploadStatus", "/uploads/:id")
      .setPath(FileIdPath)
      .addSuccess(HttpApiSchema.Empty(200))
      .addError(errorsOn("uploadStatus"))
      .annotate(
        OpenApi.Description,
        tusNote + "`Upload-Offset`, `Upload-Length` and `Upload-Expires`; a finished upload reports its whole length."
      )
  )
  .add(
    HttpApiEndpoint.patch("appendUpload", "/uploads/:id")
      .setPath(FileIdPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(errorsOn("appendUpload"))
      .annotate(
        OpenApi.Description,
        tusNote + "Appends the body (`application/offset+octet-stream`) at `Upload-Offset`; with `Upload-Checksum` " +
          "(sha1 or sha256) its bytes are kept only if they match (460 otherwise). 204 with the new `Upload-Offset`; " +
          "the last one also with `Location: /files/{id}`, the file it made."
      )
  )
  .add(
    HttpApiEndpoint.del("terminateUpload", "/uploads/:id")
      .setPath(FileIdPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(errorsOn("terminateUpload"))
      .annotate(OpenApi.Description, tusNote + "Terminates the upload: everything it stored goes.")
  )
  .middleware(Authentication)
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
      .addError(errorsOn("readyz"))
      .annotate(OpenApi.Description, "The database and the object store are reachable.")
  )
{}

/** What an upload must be, and how to authenticate: what a client (the upload page) checks before sending. */
export class PolicyView extends Schema.Class<PolicyView>("Policy")({
  minBytes: Schema.NonNegativeInt.annotations({ description: "Smallest file accepted, in bytes (inclusive)" }),
  maxBytes: Schema.NonNegativeInt.annotations({ description: "Largest file accepted, in bytes (inclusive)" }),
  contentTypes: Schema.Array(Schema.String).annotations({
    description: "Media types accepted, lowercase `type/subtype` or `type/*`"
  }),
  extensions: Schema.Array(Schema.String).annotations({
    description: "File name extensions accepted, lowercase, no dot"
  }),
  authentication: Schema.Literal("bearer", "none").annotations({
    description: "`bearer`: the files routes need `Authorization: Bearer <JWT>`; `none`: a loopback server, no token"
  }),
  resumableAbove: Schema.NonNegativeInt.annotations({
    description: "S3_PART_SIZE, in bytes: the upload page sends files larger than this resumably, with tus at " +
      "/uploads, in PATCHes of this size (each one whole part of the object); smaller ones with POST /files"
  })
}) {}

export class PolicyApi extends HttpApiGroup.make("policy")
  .add(
    HttpApiEndpoint.get("policy", "/policy")
      .addSuccess(PolicyView)
      .annotate(
        OpenApi.Description,
        "The upload policy (sizes, content types, extensions; content must be UTF-8 text), whether a token is " +
          "needed, and the size above which the upload page uploads resumably (tus, /uploads). Public: it tells " +
          "nothing about any file."
      )
  )
{}

export class TandemApi extends HttpApi.make("tandem")
  .add(FilesApi)
  .add(UploadsApi)
  .add(TusDiscoveryApi)
  .add(HealthApi)
  .add(PolicyApi)
  .annotate(OpenApi.Title, "tandem")
  .annotate(OpenApi.Description, "File uploads that land in object storage and PostgreSQL together, or not at all.")
{}
