import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Effect, FiberRef, Option, Ref, Schedule, type Scope, Stream } from "effect"

/**
 * Upload progress: the bytes of a request body as they are handed to the socket.
 * A request made in a fiber where `currentUploadProgress` is set has its multipart
 * body (FormData) sent as a counted stream instead, the same bytes; elsewhere the
 * client is left as it is.
 */
export const currentUploadProgress = FiberRef.unsafeMake<Option.Option<(bytes: number) => Effect.Effect<void>>>(
  Option.none()
)

/** For `TandemClientOptions.transformClient`. */
export const countUploadBytes = (client: HttpClient.HttpClient): HttpClient.HttpClient =>
  HttpClient.mapRequestEffect(client, (request) =>
    Effect.map(FiberRef.get(currentUploadProgress), (progress) => {
      if (Option.isNone(progress) || request.body._tag !== "FormData") return request
      // What every HTTP client does with a FormData: encode it as a Response would.
      const encoded = new Response(request.body.formData)
      const body = encoded.body
      const contentType = encoded.headers.get("content-type")
      if (body === null || contentType === null) return request
      const onBytes = progress.value
      const counted = Stream.fromReadableStream(() => body, (cause) => cause).pipe(
        Stream.tap((chunk) => onBytes(chunk.byteLength))
      )
      return HttpClientRequest.bodyStream(request, counted, { contentType })
    }))

const MiB = 1024 * 1024

const mebibytes = (bytes: number) => (bytes / MiB).toFixed(1)

const render = (sent: number, total: number, done: number, files: number) => {
  const fraction = total === 0 ? 1 : Math.min(1, sent / total)
  const width = 30
  const filled = Math.round(fraction * width)
  return `\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
    `${mebibytes(Math.min(sent, total))}/${mebibytes(total)} MiB, ${done}/${files} file(s) `
}

/** What a progress bar is told. */
export interface Progress {
  /** Counts request body bytes of `effect`'s uploads. */
  readonly track: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** One more file done (stored or refused). */
  readonly fileDone: Effect.Effect<void>
}

const silent: Progress = { track: (effect) => effect, fileDone: Effect.void }

/**
 * A one-line text bar on stderr for uploads of `total` bytes in `files` files,
 * redrawn five times a second, when stderr is a terminal and the uploads are
 * large (1 MiB or more together); otherwise nothing. Cleared when the scope closes.
 */
export const bar = (total: number, files: number): Effect.Effect<Progress, never, Scope.Scope> =>
  Effect.gen(function*() {
    if (process.stderr.isTTY !== true || total < MiB) return silent
    const sent = yield* Ref.make(0)
    const done = yield* Ref.make(0)
    const draw = Effect.flatMap(
      Effect.all([Ref.get(sent), Ref.get(done)]),
      ([sent, done]) => Effect.sync(() => process.stderr.write(render(sent, total, done, files)))
    )
    yield* Effect.repeat(draw, Schedule.spaced("200 millis")).pipe(Effect.forkScoped)
    yield* Effect.addFinalizer(() => Effect.zipRight(draw, Effect.sync(() => process.stderr.write("\n"))))
    const onBytes = (bytes: number) => Ref.update(sent, (n) => n + bytes)
    return {
      track: (effect) => Effect.locally(effect, currentUploadProgress, Option.some(onBytes)),
      fileDone: Ref.update(done, (n) => n + 1)
    }
  })
