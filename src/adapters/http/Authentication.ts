import { HttpApiMiddleware, HttpApiSecurity, HttpRouter, HttpServerRequest } from "@effect/platform"
import { Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from "jose"
import { FileId, LOCAL_OWNER, Owner } from "../../domain/FileRecord.js"
import { FileNotFound } from "../../domain/StorageErrors.js"
import { FileRepository } from "../../ports/FileRepository.js"
import { errorsOn } from "./ErrorTable.js"
import { LinkSigner } from "./LinkSigner.js"
import { ForbiddenOrigin, MisdirectedRequest, Unauthorized } from "./RequestErrors.js"
import * as RequestLog from "./RequestLog.js"
import { withResponseHeaders } from "./ResponseHeaders.js"

/** Who is calling: the owner every read and write of a file is scoped to. */
export class CurrentOwner extends Context.Tag("http/CurrentOwner")<CurrentOwner, Owner>() {}

/** How callers prove who they are (src/main/Settings.ts reads it from AUTH_*). */
export type AuthSettings =
  | {
    readonly _tag: "Jwt"
    /** HS256 with a shared secret, or RS256/ES256 with the keys a JWKS publishes. */
    readonly keys:
      | { readonly _tag: "Secret"; readonly secret: Redacted.Redacted }
      | { readonly _tag: "Jwks"; readonly url: URL }
    readonly issuer: Option.Option<string>
    readonly audience: Option.Option<string>
    /** Seconds of leeway on `exp` and `nbf`. */
    readonly clockSkew: number
    /** Seconds between fetches of the JWKS for a key id it does not hold. */
    readonly jwksCooldown: number
  }
  /** One owner, `local`, for every caller: a loopback server, which checks the browser instead. */
  | { readonly _tag: "None" }

/**
 * The files routes' security: a bearer token (a JWT) whose `sub` is the caller's
 * owner, or, for a file's content only, a signed link naming its owner. Declared on
 * the API, so /openapi.json and /docs show the bearer scheme.
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("http/Authentication", {
  failure: errorsOn("authentication"),
  provides: CurrentOwner,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

const decodeFileId = Schema.decodeUnknownOption(FileId)
const decodeOwner = Schema.decodeUnknownOption(Owner)

const loopbackHost = /^(localhost|[^:]*\.localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$/i

const unauthorized = (reason: string) =>
  Effect.zipRight(withResponseHeaders({ "www-authenticate": "Bearer" }), Effect.fail(new Unauthorized({ reason })))

/** `/files/{id}/content?expires=…&signature=…`: the id and the link's two parameters, if the request is one. */
const signedLink = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const route = yield* HttpRouter.RouteContext
  const params = yield* HttpServerRequest.ParsedSearchParams
  const expires = params["expires"]
  const signature = params["signature"]
  if (route.route.path !== "/files/:id/content" || typeof expires !== "string" || typeof signature !== "string") {
    return Option.none()
  }
  if (request.method !== "GET" && request.method !== "HEAD") return Option.none()
  return Option.some({ id: route.params["id"] ?? "", expires, signature })
})

/**
 * The middleware, for the configured mode. A valid link stands for a token of the
 * file's owner, for that file's content only; it needs no token, and a token beside
 * it is ignored. Otherwise, in `jwt` mode the token must verify (signature, `exp`
 * and `nbf` within the clock skew, `iss` and `aud` when configured) and name its
 * owner in `sub`; in `none` mode every caller is `local`, but a request whose Host
 * is not a loopback name or address is misdirected (DNS rebinding), and a POST,
 * PATCH or DELETE from another Origin is forbidden (a web page posting to 127.0.0.1).
 */
export const layer = (settings: AuthSettings) =>
  Layer.effect(
    Authentication,
    Effect.gen(function*() {
      const repository = yield* FileRepository
      const links = yield* LinkSigner

      const verifyToken = (() => {
        if (settings._tag === "None") return (_token: string) => Effect.succeed(LOCAL_OWNER)
        const options = {
          clockTolerance: settings.clockSkew,
          algorithms: settings.keys._tag === "Secret" ? ["HS256"] : ["RS256", "ES256"],
          ...Option.match(settings.issuer, { onNone: () => ({}), onSome: (issuer) => ({ issuer }) }),
          ...Option.match(settings.audience, { onNone: () => ({}), onSome: (audience) => ({ audience }) })
        }
        // A JWKS is fetched when first needed, cached, and fetched again for a key id it does not hold.
        const key = settings.keys._tag === "Secret"
          ? { _tag: "Secret" as const, key: new TextEncoder().encode(Redacted.value(settings.keys.secret)) }
          : {
            _tag: "Jwks" as const,
            key: createRemoteJWKSet(settings.keys.url, { cooldownDuration: settings.jwksCooldown * 1000 })
          }
        return (token: string) =>
          Effect.tryPromise({
            try: (): Promise<{ readonly payload: JWTPayload }> =>
              key._tag === "Secret" ? jwtVerify(token, key.key, options) : jwtVerify(token, key.key, options),
            catch: (error) => error instanceof Error ? error.message : String(error)
          }).pipe(
            Effect.flatMap((verified) =>
              Option.match(decodeOwner(verified.payload.sub), {
                onNone: () => Effect.fail("the token names no owner (sub)"),
                onSome: Effect.succeed
              })
            ),
            Effect.catchAll((reason) => unauthorized(`the token is not valid: ${reason}`))
          )
      })()

      const checkBrowser = Effect.gen(function*() {
        if (settings._tag !== "None") return
        const request = yield* HttpServerRequest.HttpServerRequest
        const host = request.headers["host"] ?? ""
        if (!loopbackHost.test(host)) return yield* new MisdirectedRequest({ host })
        const origin = request.headers["origin"]
        if (request.method !== "GET" && request.method !== "HEAD" && origin !== undefined) {
          if (origin !== `http://${host}` && origin !== `https://${host}`) return yield* new ForbiddenOrigin({ origin })
        }
      })

      const viaLink = (link: { readonly id: string; readonly expires: string; readonly signature: string }) =>
        Effect.gen(function*() {
          const record = yield* Option.match(decodeFileId(link.id), {
            onNone: () => Effect.succeedNone,
            onSome: (id) => Effect.orElseSucceed(repository.findAny(id), () => Option.none())
          })
          if (Option.isNone(record)) return yield* new FileNotFound({ id: link.id })
          return yield* links.verify(record.value, link.expires, link.signature)
        })

      return {
        bearer: (token) =>
          Effect.gen(function*() {
            yield* checkBrowser
            const link = yield* signedLink
            if (Option.isSome(link)) return yield* viaLink(link.value)
            const text = Redacted.value(token)
            if (settings._tag === "Jwt" && text.length === 0) {
              return yield* unauthorized("no bearer token (Authorization: Bearer <JWT>)")
            }
            return yield* verifyToken(text)
          }).pipe(Effect.tap((owner) => RequestLog.note({ owner })))
      }
    })
  )
