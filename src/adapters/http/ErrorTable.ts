import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** The routes of the API, by endpoint name; `authentication` is the files routes' security middleware. */
export type Route =
  | "upload"
  | "list"
  | "get"
  | "content"
  | "delete"
  | "link"
  | "readyz"
  | "authentication"
  | "createUpload"
  | "uploadStatus"
  | "appendUpload"
  | "terminateUpload"

const filesRoutes = ["upload", "list", "get", "content", "delete", "link"] as const satisfies ReadonlyArray<Route>
/** The tus routes (/uploads). */
const tusRoutes = ["createUpload", "uploadStatus", "appendUpload", "terminateUpload"] as const satisfies ReadonlyArray<
  Route
>
/** The tus routes that take bytes: POST (creation-with-upload) and PATCH. */
const tusWrites = ["createUpload", "appendUpload"] as const satisfies ReadonlyArray<Route>

/**
 * Every error a client can be answered with, by tag: its HTTP status, what the
 * status means, and the routes it can come from. The only place a tag meets a
 * status. The errors themselves stay free of HTTP (src/domain, RequestErrors.ts);
 * the API declares each route's errors from here (`errorsOn`), so /openapi.json
 * lists them and handlers fail with the errors as they are. Adding an error: its
 * class, and a row here.
 */
export const errorTable = {
  NotMultipart: { status: 400, routes: ["upload"] },
  MissingFilePart: { status: 400, routes: ["upload"] },
  TooManyFiles: { status: 400, routes: ["upload"] },
  MalformedMultipart: { status: 400, routes: ["upload"] },
  InvalidQuery: { status: 400, routes: ["list"] },
  InvalidHeader: { status: 400, routes: ["upload", ...tusWrites] },
  InvalidBody: { status: 400, routes: ["link"] },
  Unauthorized: { status: 401, routes: ["authentication"] },
  ForbiddenOrigin: { status: 403, routes: ["authentication"] },
  LinkExpired: { status: 403, routes: ["authentication"] },
  BadSignature: { status: 403, routes: ["authentication"] },
  FileNotFound: { status: 404, routes: ["get", "content", "delete", "link", "authentication", ...tusRoutes] },
  IdempotencyKeyInFlight: { status: 409, routes: ["upload"] },
  UploadNotFound: { status: 404, routes: tusRoutes },
  OffsetMismatch: { status: 409, routes: tusWrites },
  UploadBusy: { status: 409, routes: [...tusWrites, "terminateUpload"] },
  TusVersionUnsupported: { status: 412, routes: tusRoutes },
  ChecksumMismatch: { status: 460, routes: tusWrites },
  BodyIncomplete: { status: 400, routes: tusWrites },
  NotOffsetOctetStream: { status: 415, routes: tusWrites },
  FileTooLarge: { status: 413, routes: ["upload", ...tusWrites] },
  QuotaExceeded: { status: 413, routes: ["upload", ...tusWrites] },
  BodyTooLarge: { status: 413, routes: ["upload"] },
  ContentTypeNotAllowed: { status: 415, routes: ["upload", "createUpload"] },
  RangeNotSatisfiable: { status: 416, routes: ["content"] },
  MisdirectedRequest: { status: 421, routes: ["authentication"] },
  FileTooSmall: { status: 422, routes: ["upload", ...tusWrites] },
  ExtensionNotAllowed: { status: 422, routes: ["upload", "createUpload"] },
  NotUtf8: { status: 422, routes: ["upload", ...tusWrites] },
  InvalidFileName: { status: 422, routes: ["upload", "createUpload"] },
  IdempotencyKeyReused: { status: 422, routes: ["upload"] },
  ObjectMissing: { status: 500, routes: ["content"] },
  ObjectCorrupt: { status: 500, routes: ["content"] },
  ObjectStoreUnavailable: { status: 503, routes: ["upload", "content", "delete", ...tusWrites, "terminateUpload"] },
  RateLimited: { status: 429, routes: ["upload"] },
  DatabaseUnavailable: { status: 503, routes: [...filesRoutes, "authentication", ...tusRoutes] },
  CommitOutcomeUnknown: { status: 503, routes: ["upload", ...tusWrites] },
  CleanupFailed: { status: 503, routes: ["upload"] },
  UploadExpired: { status: 503, routes: ["upload", ...tusWrites] },
  ServerBusy: { status: 503, routes: ["upload", ...tusWrites] },
  NotReady: { status: 503, routes: ["readyz"] }
} as const satisfies Record<string, { readonly status: number; readonly routes: ReadonlyArray<Route> }>

export type ErrorTag = keyof typeof errorTable

/** What the API says for each status it answers errors with (OpenAPI's response descriptions). */
const statusDescriptions: Record<number, string> = {
  400: "The request is malformed.",
  401: "No valid bearer token.",
  403: "Not allowed: a link expired or badly signed, or a request from another origin.",
  404: "No such file, or no such live resumable upload.",
  409: "A conflict: an upload with this Idempotency-Key is still under way, or a resumable upload is at another " +
    "offset or being written by another request; retry once it has finished (a resumable one from HEAD's offset).",
  412: "The request's Tus-Resumable version is not served (tus 1.0.0 is).",
  413: "The file, or the whole body, is larger than the maximum.",
  415: "The file's declared content type is not allowed, or a PATCH's body is not application/offset+octet-stream.",
  416: "The Range asked for lies outside the file.",
  421: "The Host is not this server's (a loopback name).",
  429: "Too many uploads for now; retry after Retry-After seconds.",
  422: "The file breaks the upload policy, or its Idempotency-Key was used for another file.",
  460: "The PATCH's bytes do not match its Upload-Checksum; none were kept (tus checksum extension).",
  500: "The stores disagree; the reconciler will repair it.",
  503: "Object storage or the database failed, or the server is at its upload limit; retry later."
}

/** An error as a client sees it: its tag and message, nothing of its internals. */
export interface PublicError<Tag extends ErrorTag = ErrorTag> {
  readonly _tag: Tag
  readonly message: string
}

/** The tags an error of `route` can have. */
export type TagsOn<R extends Route> = {
  [T in ErrorTag]: R extends (typeof errorTable)[T]["routes"][number] ? T : never
}[ErrorTag]

const isTagged = (tag: string) => (u: unknown): u is PublicError =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === tag && "message" in u &&
  typeof u.message === "string"

/**
 * The response for one tag: `{"error": "<Tag>", "message": "…"}` with the table's
 * status. Any value with that tag and a message encodes to it (the errors
 * themselves); decoding (a client's side) gives back the tag and the message.
 */
const responseFor = <Tag extends ErrorTag>(
  tag: Tag
): Schema.Schema<PublicError<Tag>, { readonly error: Tag; readonly message: string }> => {
  const { status } = errorTable[tag]
  return Schema.transform(
    Schema.Struct({ error: Schema.Literal(tag), message: Schema.String }),
    Schema.declare((u): u is PublicError<Tag> => isTagged(tag)(u), { identifier: tag }),
    {
      strict: true,
      decode: ({ error, message }): PublicError<Tag> => ({ _tag: error, message }),
      encode: (e) => ({ error: e._tag, message: e.message })
    }
  ).annotations(HttpApiSchema.annotations({ status, description: statusDescriptions[status] ?? "" }))
}

const tags = Object.keys(errorTable) as ReadonlyArray<ErrorTag>

/** The errors of one route, for `HttpApiEndpoint.addError`. */
export const errorsOn = <R extends Route>(route: R): Schema.Schema<PublicError<TagsOn<R>>, unknown> => {
  const members = tags.filter((tag) => (errorTable[tag].routes as ReadonlyArray<Route>).includes(route)).map(
    responseFor
  )
  // The members are exactly the tags TagsOn<R> names; TypeScript cannot follow the filter.
  return Schema.Union(...members) as unknown as Schema.Schema<PublicError<TagsOn<R>>, unknown>
}

/** The status a failure is answered with, if it is one of the table's errors. */
export const statusOf = (error: unknown): number | undefined => {
  if (typeof error !== "object" || error === null || !("_tag" in error) || typeof error._tag !== "string") {
    return undefined
  }
  return Object.hasOwn(errorTable, error._tag) ? errorTable[error._tag as ErrorTag].status : undefined
}
