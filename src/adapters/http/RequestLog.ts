import { HttpApp, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Context, Effect, Exit, FiberRef, LogLevel } from "effect"
import { randomUUID } from "node:crypto"

/** What a request's one log line says beyond its method and status; filled in as the request learns it. */
export interface RequestFacts {
  owner?: string
  fileId?: string
  /** The tag of the error the request failed with, and its fields, flat (RequestFailures). */
  error?: Readonly<Record<string, string | number | boolean>>
}

const currentFacts = FiberRef.unsafeMake<RequestFacts | undefined>(undefined)

/** Adds to the current request's log line (a no-op outside a request). */
export const note = (facts: RequestFacts): Effect.Effect<void> =>
  Effect.map(FiberRef.get(currentFacts), (current) => {
    if (current !== undefined) Object.assign(current, facts)
  })

export const REQUEST_ID_HEADER = "x-request-id"

/** A client's X-Request-Id is kept if it is short and plain; otherwise one is made up. */
const acceptable = /^[\w.:@/+=-]{1,128}$/

const requestIdOf = (request: HttpServerRequest.HttpServerRequest): string => {
  const sent = request.headers[REQUEST_ID_HEADER]
  return sent !== undefined && acceptable.test(sent) ? sent : randomUUID()
}

/**
 * The route a path matched, with the file id as `{id}` (`/files/{id}/content`), and
 * the id itself: a log line names the route, so lines of one route group together.
 */
const routeOf = (url: string): { readonly route: string; readonly fileId: string | undefined } => {
  const path = new URL(url, "http://tandem").pathname
  const segments = path.split("/")
  if (segments[1] !== "files" || segments[2] === undefined || segments[2] === "") {
    return { route: path, fileId: undefined }
  }
  return { route: ["", "files", "{id}", ...segments.slice(3)].join("/"), fileId: segments[2] }
}

/** A created file's id, from the Location header of a 201 (`/files/<id>`). */
const createdId = (response: HttpServerResponse.HttpServerResponse): string | undefined =>
  response.status === 201 ? /^\/files\/([^/?#]+)$/.exec(response.headers["location"] ?? "")?.[1] : undefined

/**
 * A refusal is a warning (a flood of them is worth seeing), a 404 and every success
 * info, a 5xx an error; but not ServerBusy (a 503 by design), nor a 503 with no error
 * behind it: the platform's answer to a request a shutdown interrupted.
 */
const levelOf = (status: number, error: RequestFacts["error"]): LogLevel.LogLevel =>
  status >= 500 && error !== undefined && error.error !== "ServerBusy"
    ? LogLevel.Error
    : status >= 500 && error === undefined && status !== 503
    ? LogLevel.Error
    : status >= 400 && status !== 404
    ? LogLevel.Warning
    : LogLevel.Info

/**
 * Every request gets an id (X-Request-Id, accepted or made up, and returned), which
 * every log line written while serving it carries, and is logged once at its end:
 * method, route, status, duration, owner, file id, the error's tag and fields if it
 * failed, and the id. The line's level follows the status (`levelOf`); a line below
 * the minimum level is not even built.
 */
export const middleware = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
    const requestId = requestIdOf(request)
    const facts: RequestFacts = {}
    const started = performance.now()
    const minimum = fiber.getFiberRef(FiberRef.currentMinimumLogLevel)
    const line = (status: number) => {
      const level = levelOf(status, facts.error)
      if (LogLevel.lessThan(level, minimum)) return Effect.void
      const { fileId, route } = routeOf(request.url)
      const file = facts.fileId ?? fileId
      return Effect.logWithLevel(level, "request").pipe(
        Effect.annotateLogs({
          method: request.method,
          route,
          status,
          durationMs: Math.round((performance.now() - started) * 10) / 10,
          ...(facts.owner === undefined ? {} : { owner: facts.owner }),
          ...(file === undefined ? {} : { fileId: file }),
          ...facts.error,
          requestId
        })
      )
    }
    return HttpApp.appendPreResponseHandler((_request, response) => {
      const created = createdId(response)
      if (created !== undefined) facts.fileId = created
      return Effect.succeed(HttpServerResponse.setHeader(response, REQUEST_ID_HEADER, requestId))
    }).pipe(
      Effect.zipRight(app),
      Effect.locally(currentFacts, facts),
      Effect.annotateLogs("requestId", requestId),
      Effect.onExit((exit) =>
        Exit.isSuccess(exit)
          ? line(exit.value.status)
          : Cause.isInterruptedOnly(exit.cause)
          // The client went away (or a shutdown interrupted it): 499, as nginx logs it.
          ? line(499)
          : Effect.flatMap(HttpServerError.causeResponse(exit.cause), ([response]) => line(response.status))
      )
    )
  })
