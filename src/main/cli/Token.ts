import { Command, Options } from "@effect/cli"
import { Config, Console, Effect, Option, Redacted, Schema } from "effect"
import { SignJWT } from "jose"
import { Owner } from "../../domain/FileRecord.js"
import * as Settings from "../Settings.js"
import { reportStartupFailure } from "../StartupFailure.js"

/** A token could not be made: the lifetime is not one jose reads. */
class TokenFailed extends Schema.TaggedError<TokenFailed>()("TokenFailed", { reason: Schema.String }) {}

const sub = Options.text("sub").pipe(
  Options.withSchema(Owner),
  Options.withDescription("The owner the token speaks for (its `sub`)")
)

const ttl = Options.text("ttl").pipe(
  Options.withDefault("1h"),
  Options.withDescription("How long the token is valid: 90s, 30m, 1h, 7d")
)

const sign = Effect.fn("tandem.token")(function*(sub: Owner, ttl: string) {
  const secret = yield* Settings.jwtSecret
  const { audience, issuer } = yield* Config.all(Settings.tokenClaims)
  return yield* Effect.tryPromise({
    try: () => {
      const jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setSubject(sub).setIssuedAt()
        .setExpirationTime(ttl)
      if (Option.isSome(issuer)) jwt.setIssuer(issuer.value)
      if (Option.isSome(audience)) jwt.setAudience(audience.value)
      return jwt.sign(new TextEncoder().encode(Redacted.value(secret)))
    },
    catch: (error) => new TokenFailed({ reason: error instanceof Error ? error.message : String(error) })
  })
})

/**
 * `npm run token -- --sub alice [--ttl 1h]` and `tandem token`: an HS256 token
 * signed with AUTH_JWT_SECRET, carrying AUTH_ISSUER and AUTH_AUDIENCE when they
 * are set, so the server configured alike accepts it. For trying tandem by hand;
 * real clients get their tokens from the identity provider. Exits 1 when it cannot
 * make one (a configuration error, or a --ttl jose does not read).
 */
export const command = Command.make("token", { sub, ttl }, ({ sub, ttl }) =>
  sign(sub, ttl).pipe(
    Effect.flatMap(Console.log),
    Effect.catchTag("TokenFailed", (failed) =>
      Effect.zipRight(
        Console.error(`tandem token: --ttl ${ttl}: ${failed.reason}`),
        Effect.sync(() => (process.exitCode = 1))
      )),
    Effect.tapErrorCause(reportStartupFailure)
  )).pipe(Command.withDescription("Print a bearer token for AUTH_JWT_SECRET (for trying tandem by hand)"))
