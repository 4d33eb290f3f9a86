import {
  type HttpApi,
  HttpApiClient,
  type HttpApiEndpoint,
  type HttpApiGroup,
  HttpClient,
  HttpClientError,
  HttpClientRequest,
  type HttpClientResponse
} from "@effect/platform"
import {
  Chunk,
  Config,
  type ConfigError,
  Context,
  Effect,
  Layer,
  Option,
  type ParseResult,
  type Redacted,
  Schema,
  Stream
} from "effect"
import type { Simplify } from "effect/Types"
import { type FilePage, TandemApi } from "../adapters/http/Api.js"
import { errorsOn, errorTable, type ErrorTag, type TagsOn } from "../adapters/http/ErrorTable.js"
import { decodeCursor, type FileCursor } from "../domain/FileCursor.js"
import type { FileId } from "../domain/FileRecord.js"

/**
 * A typed client of tandem's HTTP API, derived from its HttpApi definition
 * (src/adapters/http/Api.ts) with HttpApiClient: every endpoint, its inputs, its
 * success and the errors its route declares, as the server itself sees them.
 */

/** Where the server is and who the caller is. */
export interface TandemClientOptions {
  /** The server's URL, e.g. `http://127.0.0.1:3000` (a path prefix is kept: `https://host/tandem`). */
  readonly baseUrl: string | URL
  /** The bearer token (a JWT whose `sub` is the caller); none for a server with `AUTH_MODE=none`. */
  readonly token?: Redacted.Redacted | string | undefined
  /** Applied last to the HttpClient every request goes through (retries, tracing, progress, ...). */
  readonly transformClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
}

/**
 * An error a route answers with: `{ _tag, message }`, decoded from `{"error": "<Tag>",
 * "message": "…"}`; a union of one member per tag, so `Effect.catchTag` narrows it.
 */
export type TandemError<Tag extends ErrorTag = ErrorTag> = Tag extends ErrorTag
  ? { readonly _tag: Tag; readonly message: string }
  : never

/** The API's errors one member per tag; the client's own (HttpClientError, ParseError, ...) as they are. */
type Distributed<E> = E extends { readonly _tag: infer Tag extends ErrorTag; readonly message: string }
  ? TandemError<Tag>
  : E

/** Any of the API's errors, by tag (its HTTP status is `errorTable[_tag].status`). */
export const isTandemError = (u: unknown): u is TandemError =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" &&
  Object.hasOwn(errorTable, u._tag) && "message" in u && typeof u.message === "string"

/** The HTTP status the server answers an error with. */
export const statusOf = (error: TandemError): number => errorTable[error._tag].status

/** The errors a download (`GET /files/{id}/content`) can fail with. */
export type ContentError = TandemError<TagsOn<"content"> | TagsOn<"authentication">>

const ContentErrors = Schema.Union(errorsOn("content"), errorsOn("authentication"))

/** The bytes of a file, as they stream from the server. */
export interface Download {
  /** `Content-Length`. */
  readonly size: Option.Option<number>
  readonly contentType: Option.Option<string>
  /** The lowercase hex SHA-256 the server announces (its `ETag`). */
  readonly sha256: Option.Option<string>
  readonly stream: Stream.Stream<Uint8Array, HttpClientError.ResponseError>
}

/** A cursor as the API hands it out (`nextCursor`), for `files.list`'s `cursor`; none if it is not one. */
export const parseCursor = (text: string): Option.Option<FileCursor> => decodeCursor(text)

/** A multipart form with one file part named `file`: the payload `files.upload` takes. */
export const uploadForm = (file: Blob, name: string): FormData => {
  const form = new FormData()
  form.append("file", file, name)
  return form
}

const header = (response: HttpClientResponse.HttpClientResponse, name: string) =>
  Option.fromNullable(response.headers[name])

type ApiGroups = typeof TandemApi extends HttpApi.HttpApi<infer _Id, infer Groups, infer _E, infer _R> ? Groups : never
type ApiError = typeof TandemApi extends HttpApi.HttpApi<infer _Id, infer _Groups, infer E, infer _R> ? E : never

/** One endpoint's method, as `HttpApiClient.Client.Method`, its errors `Distributed`. */
type Method<Endpoint, GroupError> = [Endpoint] extends [
  HttpApiEndpoint.HttpApiEndpoint<
    infer _Name,
    infer _Method,
    infer Path,
    infer UrlParams,
    infer Payload,
    infer Headers,
    infer Success,
    infer Error,
    infer _R,
    infer _RE
  >
] ? <WithResponse extends boolean = false>(
    request: Simplify<HttpApiEndpoint.HttpApiEndpoint.ClientRequest<Path, UrlParams, Payload, Headers, WithResponse>>
  ) => Effect.Effect<
    WithResponse extends true ? [Success, HttpClientResponse.HttpClientResponse] : Success,
    Distributed<Error | GroupError | ApiError> | HttpClientError.HttpClientError | ParseResult.ParseError
  >
  : never

/**
 * The typed endpoints, as HttpApiClient derives them from the API
 * (`files.{upload,list,get,content,delete,link}`, `health.{healthz,readyz}`).
 */
export type TandemApiClient = {
  readonly [Group in ApiGroups as HttpApiGroup.HttpApiGroup.Name<Group>]: Group extends
    HttpApiGroup.HttpApiGroup<infer _Name, infer Endpoints, infer GroupError, infer _R, infer _TopLevel> ? {
      readonly [Endpoint in Endpoints as HttpApiEndpoint.HttpApiEndpoint.Name<Endpoint>]: Method<Endpoint, GroupError>
    }
    : never
}

/** HttpApiClient's client, typed as `TandemApiClient`: the same values, the errors a union TypeScript can narrow. */
const makeApi = (http: HttpClient.HttpClient): Effect.Effect<TandemApiClient> =>
  HttpApiClient.makeWith(TandemApi, { httpClient: http }) as Effect.Effect<unknown> as Effect.Effect<TandemApiClient>

/** The HttpClient every request goes through: the base URL, the bearer token, then the caller's transform. */
const configure = (http: HttpClient.HttpClient, options: TandemClientOptions): HttpClient.HttpClient => {
  const baseUrl = options.baseUrl.toString().replace(/\/+$/, "")
  const token = options.token
  const configured = http.pipe(
    HttpClient.mapRequest((request) => {
      const withBase = HttpClientRequest.prependUrl(request, baseUrl)
      return token === undefined ? withBase : HttpClientRequest.bearerToken(withBase, token)
    })
  )
  return options.transformClient === undefined ? configured : options.transformClient(configured)
}

/**
 * The client: the typed endpoints (`files.upload({ payload: uploadForm(blob, name), headers: {} })`,
 * `files.get({ path: { id } })`, ...), and beside them `download`, the content as a
 * stream rather than one buffer, and `listAll`, every file, following the pages.
 */
export const make = Effect.fn("TandemClient.make")(function*(options: TandemClientOptions) {
  const http = configure(yield* HttpClient.HttpClient, options)
  const api = yield* makeApi(http)

  const download = Effect.fn("TandemClient.download")(function*(id: FileId) {
    const response = yield* http.get(`/files/${encodeURIComponent(id)}/content`)
    if (response.status === 200) {
      const download: Download = {
        size: Option.flatMap(
          header(response, "content-length"),
          (n) => Option.liftPredicate(Number(n), Number.isFinite)
        ),
        contentType: header(response, "content-type"),
        sha256: Option.map(header(response, "etag"), (etag) => etag.replace(/^(W\/)?"|"$/g, "")),
        stream: response.stream
      }
      return download
    }
    const error = yield* response.json.pipe(
      Effect.flatMap(Schema.decodeUnknown(ContentErrors)),
      Effect.mapError(() =>
        new HttpClientError.ResponseError({ request: response.request, response, reason: "StatusCode" })
      )
    )
    return yield* Effect.fail<ContentError>(error)
  })

  /** Every file of the caller, newest first, `pageSize` (1 to 100) at a time. */
  const listAll = (pageSize = 100) =>
    Stream.paginateChunkEffect(
      Option.none<FileCursor>(),
      (cursor) =>
        api.files.list({
          urlParams: {
            limit: pageSize,
            ...Option.match(cursor, { onNone: () => ({}), onSome: (cursor) => ({ cursor }) })
          }
        })
          .pipe(
            Effect.flatMap((page: FilePage) =>
              page.nextCursor === null
                ? Effect.succeed([Chunk.fromIterable(page.items), Option.none()] as const)
                : Option.match(parseCursor(page.nextCursor), {
                  onNone: () => Effect.dieMessage(`the server sent a cursor that is not one: ${page.nextCursor}`),
                  onSome: (next) =>
                    Effect.succeed([Chunk.fromIterable(page.items), Option.some(Option.some(next))] as const)
                })
            )
          )
    )

  return { ...api, download, listAll }
})

/** The client's type: the typed endpoints, `download` and `listAll`. */
export type TandemClientService = Effect.Effect.Success<ReturnType<typeof make>>

/** `TANDEM_URL` (default `http://127.0.0.1:3000`) and `TANDEM_TOKEN` (optional). */
export const config: Config.Config<TandemClientOptions> = Config.all({
  baseUrl: Config.url("TANDEM_URL").pipe(Config.withDefault(new URL("http://127.0.0.1:3000"))),
  token: Config.option(Config.redacted("TANDEM_TOKEN"))
}).pipe(Config.map(({ baseUrl, token }) => ({ baseUrl, token: Option.getOrUndefined(token) })))

/** The client as a service; it needs an `HttpClient` (`FetchHttpClient.layer`, `NodeHttpClient.layer`, ...). */
export class TandemClient extends Context.Tag("tandem/TandemClient")<TandemClient, TandemClientService>() {
  static readonly layer = (options: TandemClientOptions): Layer.Layer<TandemClient, never, HttpClient.HttpClient> =>
    Layer.effect(TandemClient, make(options))

  /** Configured from the environment: `TANDEM_URL` and `TANDEM_TOKEN` (see `config`). */
  static readonly layerConfig = (
    options: Config.Config<TandemClientOptions> = config
  ): Layer.Layer<TandemClient, ConfigError.ConfigError, HttpClient.HttpClient> =>
    Layer.effect(TandemClient, Effect.flatMap(options, make))
}

/** Every failure a call can end in besides the API's own errors. */
export type TransportError = HttpClientError.HttpClientError | ParseResult.ParseError
