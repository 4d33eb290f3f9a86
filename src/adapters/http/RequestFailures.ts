import {
  HttpApiBuilder,
  HttpApiError,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse,
  Multipart
} from "@effect/platform"
import { Cause, Effect, Option } from "effect"
import { FileNotFound } from "../../domain/StorageErrors.js"
import { TandemApi } from "./Api.js"
import { errorTable, type PublicError, statusOf } from "./ErrorTable.js"
import { InvalidBody, InvalidHeader, InvalidQuery, ServerBusy } from "./RequestErrors.js"
import * as RequestLog from "./RequestLog.js"

/**
 * The error's tag, its plain fields and its message, flat, so a log line stays one
 * line; the cause chain goes to the entry's cause.
 */
const details = (error: unknown): Record<string, string | number | boolean> => {
  if (typeof error !== "object" || error === null) return { error: String(error) }
  const fields: Record<string, string | number | boolean> = {}
  for (const [key, value] of Object.entries(error)) {
    if (key === "_tag") fields.error = String(value)
    else if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") fields[key] = value
    else if (Array.isArray(value)) fields[key] = value.join(",")
    else if (key === "original" && Cause.isCause(value)) fields.original = String(Cause.squash(value))
  }
  if (error instanceof Error) fields.detail = error.message
  return fields
}

/**
 * A failed request's error goes on its one log line (RequestLog): its tag and fields,
 * at the level its status calls for there. A 5xx that is a real failure (not
 * ServerBusy, a 503 by design) is also logged as an error with its cause, for the
 * stack and the chain; so is a defect. An interruption (the client went away) is not
 * a failure.
 */
const logFailure = (request: HttpServerRequest.HttpServerRequest, cause: Cause.Cause<unknown>) => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) {
    return Cause.isInterruptedOnly(cause)
      ? Effect.void
      : Effect.logError("request died", cause).pipe(Effect.annotateLogs({ method: request.method, url: request.url }))
  }
  // An unknown route is the platform's 404, not a server error.
  const status = statusOf(failure.value) ?? (failure.value instanceof HttpServerError.RouteNotFound ? 404 : 500)
  const error = details(failure.value)
  const noted = RequestLog.note({ error })
  if (status < 500 || failure.value instanceof ServerBusy) return noted
  return Effect.zipRight(
    noted,
    Effect.logError("request failed", cause).pipe(
      Effect.annotateLogs({ method: request.method, url: request.url, status, ...error })
    )
  )
}

/** `/files/<id>/…`: the id as the client sent it. */
const idInPath = (request: HttpServerRequest.HttpServerRequest): string => {
  const segment = new URL(request.url, "http://tandem").pathname.split("/")[2] ?? ""
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

/**
 * Input that does not decode, told in the API's own terms: a malformed id names no
 * file (404, as an unknown one), and a query parameter that does not decode is an
 * InvalidQuery naming it, for the reason its schema gives (Api.ts).
 */
const fromDecodeFailure = (
  error: HttpApiError.HttpApiDecodeError,
  request: HttpServerRequest.HttpServerRequest
): PublicError => {
  const issue = error.issues[0]
  const parameter = String(issue?.path[0] ?? "")
  const reason = issue?.message ?? "is not valid"
  return parameter === "id"
    ? new FileNotFound({ id: idInPath(request) })
    : parameter === "idempotency-key"
    ? new InvalidHeader({ header: "Idempotency-Key", reason })
    : parameter === "limit" || parameter === "cursor"
    ? new InvalidQuery({ parameter, reason })
    : new InvalidBody({ field: parameter, reason })
}

/**
 * A body that cannot be read as its Content-Type says (JSON that does not parse, a
 * form that is not multipart): the platform dies with it while decoding a payload,
 * which would answer 500 (a MultipartError) or an empty 400 logged as a defect.
 */
const isUnreadableBody = (defect: unknown): boolean =>
  (defect instanceof HttpServerError.RequestError && defect.reason === "Decode") ||
  defect instanceof Multipart.MultipartError

const respond = (error: PublicError) =>
  HttpServerResponse.unsafeJson({ error: error._tag, message: error.message }, {
    status: errorTable[error._tag].status
  })

/** The API-wide handling of failed requests: decode failures translated, every failure logged once. */
export const layer = HttpApiBuilder.middleware(
  TandemApi,
  (app) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      app.pipe(
        Effect.catchIf(
          (error: unknown): error is HttpApiError.HttpApiDecodeError =>
            error instanceof HttpApiError.HttpApiDecodeError,
          (error) => {
            const translated = fromDecodeFailure(error, request)
            return Effect.as(logFailure(request, Cause.fail(translated)), respond(translated))
          }
        ),
        Effect.catchSomeDefect((defect) => {
          if (!isUnreadableBody(defect)) return Option.none()
          const translated = new InvalidBody({ field: "", reason: "cannot be read as its Content-Type says" })
          return Option.some(Effect.as(logFailure(request, Cause.fail(translated)), respond(translated)))
        }),
        Effect.tapErrorCause((cause) => logFailure(request, cause))
      ))
)
