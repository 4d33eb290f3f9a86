import { Config, ConfigError, Duration, Either, LogLevel, Option, ParseResult, Schema } from "effect"
import { Redacted } from "effect"
import { resolve } from "node:path"
import type { AuthSettings } from "../adapters/http/Authentication.js"
import { DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE } from "../adapters/objects/ObjectBackend.js"
import type { S3Settings } from "../adapters/objects/S3ObjectStore.js"
import { DEFAULT_IDEMPOTENCY_TTL, DEFAULT_RESUMABLE, type UploadSettings } from "../app/UploadSettings.js"
import { KeyPrefix } from "../domain/ObjectKey.js"
import { UploadPolicy } from "../domain/UploadPolicy.js"

/**
 * Every setting tandem reads from the environment, read here and nowhere else
 * (README, "Configuration"). Adapters and workflows take plain values.
 */

const logLevels: Record<string, LogLevel.LogLevel> = {
  all: LogLevel.All,
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None,
  off: LogLevel.None
}

/** Decodes with a schema and reports failures as invalid data at `path`, the variable's name. */
const decodeAt = <A, I>(schema: Schema.Schema<A, I>, path: ReadonlyArray<string>) => (input: unknown) =>
  Either.mapLeft(
    Schema.decodeUnknownEither(schema)(input),
    (error) => ConfigError.InvalidData([...path], ParseResult.TreeFormatter.formatErrorSync(error).replace(/\s+/g, " "))
  )

const list = (name: string, fallback: ReadonlyArray<string>, normalize: (item: string) => string) =>
  Config.array(Config.string(), name).pipe(
    Config.map((items) => items.map(normalize).filter((item) => item.length > 0)),
    Config.withDefault(fallback)
  )

const seconds = (name: string, fallback: number) =>
  Config.number(name).pipe(
    Config.validate({ message: "Expected a number of seconds, 0 or more", validation: (n) => n >= 0 }),
    Config.withDefault(fallback),
    Config.map(Duration.seconds)
  )

/** Where the server listens, what it logs and traces, and where the embedded defaults keep their data. */
export const server = Config.all({
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1")),
  // 0 asks the system for any free port (tests, and running several instances).
  port: Config.integer("PORT").pipe(
    Config.validate({ message: "Expected a port from 0 to 65535", validation: (port) => port >= 0 && port <= 65535 }),
    Config.withDefault(3000)
  ),
  dataDirectory: Config.string("DATA_DIR").pipe(Config.withDefault("./data"), Config.map((dir) => resolve(dir))),
  logLevel: Config.string("LOG_LEVEL").pipe(
    Config.mapOrFail((name) => {
      const level = logLevels[name.toLowerCase()]
      return level === undefined
        ? Either.left(ConfigError.InvalidData([], `Expected one of ${Object.keys(logLevels).join(", ")}`))
        : Either.right(level)
    }),
    Config.withDefault(LogLevel.Info)
  )
})

/**
 * Trace export over OTLP/HTTP, on when OTEL_EXPORTER_OTLP_ENDPOINT is set (the
 * OpenTelemetry variables: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, a full URL, wins over
 * the endpoint + /v1/traces; OTEL_SERVICE_NAME names the service). Spans are recorded
 * only then: a span costs CPU on every request whether or not anyone reads it.
 */
export const tracing = Config.all({
  endpoint: Config.option(Config.url("OTEL_EXPORTER_OTLP_ENDPOINT")),
  tracesEndpoint: Config.option(Config.url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  serviceName: Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault("tandem"))
}).pipe(Config.map(({ endpoint, serviceName, tracesEndpoint }) =>
  Option.map(
    Option.orElse(
      Option.map(tracesEndpoint, (url) => url.href),
      () => Option.map(endpoint, (url) => `${url.href.replace(/\/+$/, "")}/v1/traces`)
    ),
    (tracesUrl) => ({ tracesUrl, serviceName })
  )
))

/** Log lines as JSON (LOG_FORMAT=json, the default when NODE_ENV=production) or readable text (LOG_FORMAT=text). */
export const logFormat = Config.all({
  format: Config.option(Config.literal("json", "text")("LOG_FORMAT")),
  nodeEnv: Config.string("NODE_ENV").pipe(Config.withDefault("development"))
}).pipe(
  Config.map(({ format, nodeEnv }) =>
    Option.getOrElse(format, () => (nodeEnv === "production" ? "json" as const : "text" as const))
  )
)

/** On SIGTERM or SIGINT, how long requests in flight may take to finish before they are interrupted (and compensate). */
export const shutdownTimeout = seconds("SHUTDOWN_TIMEOUT_SECONDS", 25)

const positiveSeconds = (name: string, fallback: number) =>
  Config.number(name).pipe(
    Config.validate({ message: "Expected a number of seconds above 0", validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.map(Duration.seconds)
  )

const atLeastOne = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: "Expected a whole number, 1 or more", validation: (n) => n >= 1 }),
    Config.withDefault(fallback)
  )

/**
 * How long the HTTP server waits for a client, and how many it serves at once
 * (README, "Timeouts and limits"). There is no cap on a whole request: an honest
 * upload of UPLOAD_MAX_BYTES on a slow link takes as long as it takes, and a
 * client that stops sending is dropped by the idle timeout instead.
 */
export const limits = Config.all({
  /** The request's headers must all arrive within this (Node's headersTimeout). */
  headersTimeout: positiveSeconds("HTTP_HEADERS_TIMEOUT_SECONDS", 30),
  /** No byte either way for this long and the connection is dropped (Node's server.timeout). */
  idleTimeout: positiveSeconds("HTTP_IDLE_TIMEOUT_SECONDS", 60),
  /** Open connections; one more is closed as it arrives (Node's server.maxConnections). */
  maxConnections: atLeastOne("MAX_CONNECTIONS", 1024),
  /** Uploads in flight; one more is refused at once with 503 ServerBusy. */
  maxConcurrentUploads: atLeastOne("MAX_CONCURRENT_UPLOADS", 64)
})

const policy: Config.Config<UploadPolicy> = Config.all({
  minBytes: Config.integer("UPLOAD_MIN_BYTES").pipe(Config.withDefault(UploadPolicy.default.minBytes)),
  maxBytes: Config.integer("UPLOAD_MAX_BYTES").pipe(Config.withDefault(UploadPolicy.default.maxBytes)),
  contentTypes: list("UPLOAD_CONTENT_TYPES", UploadPolicy.default.contentTypes, (t) => t.trim().toLowerCase()),
  extensions: list(
    "UPLOAD_EXTENSIONS",
    UploadPolicy.default.extensions,
    (e) => e.trim().toLowerCase().replace(/^\./, "")
  )
}).pipe(
  Config.mapOrFail(decodeAt(UploadPolicy, ["UPLOAD_MIN_BYTES/UPLOAD_MAX_BYTES/UPLOAD_CONTENT_TYPES/UPLOAD_EXTENSIONS"]))
)

/** The upload policy and the key prefix: what the workflow needs. */
const optionalLimit = (name: string) =>
  Config.option(
    Config.integer(name).pipe(
      Config.validate({ message: "Expected a whole number, 1 or more", validation: (n) => n >= 1 })
    )
  )

export const upload: Config.Config<UploadSettings["Type"]> = Config.all({
  policy,
  keyPrefix: Config.string("S3_PREFIX").pipe(
    Config.withDefault("files/"),
    Config.mapOrFail(decodeAt(KeyPrefix, ["S3_PREFIX"]))
  ),
  /** Per owner, enforced as each file commits; unset: no quota. */
  quota: Config.all({ maxFiles: optionalLimit("OWNER_QUOTA_FILES"), maxBytes: optionalLimit("OWNER_QUOTA_BYTES") }),
  /** How long an upload's Idempotency-Key is kept: a retry within it returns the first attempt's file. */
  idempotencyTtl: positiveSeconds("IDEMPOTENCY_TTL_SECONDS", Duration.toSeconds(DEFAULT_IDEMPOTENCY_TTL)),
  /** Resumable (tus) uploads: idle this long, one expires; its object's parts are S3_PART_SIZE. */
  resumable: Config.all({
    expiry: positiveSeconds("TUS_EXPIRY_SECONDS", Duration.toSeconds(DEFAULT_RESUMABLE.expiry)),
    // Defined below, with the object store's settings.
    partSize: Config.suspend(() => partSize)
  })
})

/** Loopback names and addresses: where `AUTH_MODE=none` may listen, and the only Hosts it answers. */
export const isLoopback = (host: string): boolean => {
  const name = host.replace(/^\[|\]$/g, "").toLowerCase()
  return name === "localhost" || name.endsWith(".localhost") || name === "::1" || /^127(\.\d{1,3}){3}$/.test(name)
}

/** AUTH_JWT_SECRET, the HS256 key: at least 32 bytes (also what `npm run token` signs with). */
export const jwtSecret = Config.redacted("AUTH_JWT_SECRET").pipe(
  Config.validate({
    message: "AUTH_JWT_SECRET must be at least 32 bytes",
    validation: (secret) => Buffer.byteLength(Redacted.value(secret), "utf8") >= 32
  })
)

/** The `iss` and `aud` a token must carry, when set. */
export const tokenClaims = {
  issuer: Config.option(Config.string("AUTH_ISSUER")),
  audience: Config.option(Config.string("AUTH_AUDIENCE"))
}

/**
 * Who may call the API (README, "Security"). `jwt`: a bearer token, HS256 with
 * AUTH_JWT_SECRET or RS256/ES256 from AUTH_JWKS_URL; the default whenever either is
 * set. `none`: every caller is the one owner `local`; the default otherwise, and
 * allowed only on a loopback HOST.
 */
export const auth = Config.all({
  mode: Config.option(Config.literal("jwt", "none")("AUTH_MODE")),
  secret: Config.option(jwtSecret),
  jwksUrl: Config.option(Config.url("AUTH_JWKS_URL")),
  ...tokenClaims,
  clockSkew: Config.number("AUTH_CLOCK_SKEW_SECONDS").pipe(
    Config.validate({ message: "Expected a number of seconds, 0 or more", validation: (n) => n >= 0 }),
    Config.withDefault(30)
  ),
  // A token naming a key the cached JWKS lacks fetches it again, at most this often.
  jwksCooldown: Config.number("AUTH_JWKS_COOLDOWN_SECONDS").pipe(
    Config.validate({ message: "Expected a number of seconds, 0 or more", validation: (n) => n >= 0 }),
    Config.withDefault(30)
  ),
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1"))
}).pipe(Config.mapOrFail(({ clockSkew, host, jwksCooldown, jwksUrl, mode, secret, ...claims }): Either.Either<
  AuthSettings,
  ConfigError.ConfigError
> => {
  const keys = Option.orElse(
    Option.map(secret, (secret) => ({ _tag: "Secret" as const, secret })),
    () => Option.map(jwksUrl, (url) => ({ _tag: "Jwks" as const, url }))
  )
  if (Option.isSome(secret) && Option.isSome(jwksUrl)) {
    return Either.left(ConfigError.InvalidData(["AUTH_JWKS_URL"], "set AUTH_JWT_SECRET or AUTH_JWKS_URL, not both"))
  }
  const chosen = Option.getOrElse(mode, () => Option.isSome(keys) ? "jwt" as const : "none" as const)
  if (chosen === "jwt") {
    return Option.match(keys, {
      onSome: (keys) => Either.right({ _tag: "Jwt" as const, keys, clockSkew, jwksCooldown, ...claims }),
      onNone: () => Either.left(ConfigError.InvalidData(["AUTH_MODE"], "jwt needs AUTH_JWT_SECRET or AUTH_JWKS_URL"))
    })
  }
  return isLoopback(host)
    ? Either.right({ _tag: "None" as const })
    : Either.left(ConfigError.InvalidData(
      ["AUTH_MODE"],
      `none (no authentication) is allowed only on a loopback HOST, not ${host}: set AUTH_JWT_SECRET or AUTH_JWKS_URL`
    ))
}))

/** Each owner's upload rate, per process (README, "Security"); unset: no limit. */
export const ownerRateLimits = Config.all({
  uploadsPerMinute: optionalLimit("RATE_LIMIT_UPLOADS_PER_MINUTE"),
  concurrentUploads: optionalLimit("RATE_LIMIT_CONCURRENT_UPLOADS")
})

/** Origins whose pages may call the API from a browser; empty (the default): none, no CORS headers at all. */
export const corsOrigins = Config.array(Config.string(), "CORS_ORIGINS").pipe(
  Config.map((origins) => origins.map((origin) => origin.trim()).filter((origin) => origin.length > 0)),
  Config.withDefault([])
)

/** Signed links: LINK_SIGNING_SECRET, or one made up at start (links then last as long as the process). */
export const linkSecret = Config.option(
  Config.redacted("LINK_SIGNING_SECRET").pipe(
    Config.validate({
      message: "LINK_SIGNING_SECRET must be at least 32 bytes",
      validation: (secret) => Buffer.byteLength(Redacted.value(secret), "utf8") >= 32
    })
  )
)

/** How every object store writes: one request up to this size, equal parts beyond it. */
export const partSize = Config.integer("S3_PART_SIZE").pipe(
  Config.validate({
    message: `Expected a part size from ${MIN_PART_SIZE} (5 MiB) to ${MAX_PART_SIZE} (5 GiB) bytes`,
    validation: (size) => size >= MIN_PART_SIZE && size <= MAX_PART_SIZE
  }),
  Config.withDefault(DEFAULT_PART_SIZE)
)

/**
 * How the reconciler runs: every RECONCILE_INTERVAL_SECONDS in the server (0: not
 * in the server), treating an intent older than RECONCILE_GRACE_SECONDS as
 * abandoned (the grace period must exceed the longest upload), and deleting no
 * orphan when there are more than RECONCILE_MAX_ORPHANS.
 */
export const reconcile = Config.all({
  interval: seconds("RECONCILE_INTERVAL_SECONDS", 60),
  grace: seconds("RECONCILE_GRACE_SECONDS", 900),
  // Past this many orphans in one pass, the audit deletes none: that many means a
  // misconfiguration (a wrong database, bucket or prefix), never garbage.
  maxOrphans: Config.integer("RECONCILE_MAX_ORPHANS").pipe(
    Config.validate({ message: "Expected a number of objects, 0 or more", validation: (n) => n >= 0 }),
    Config.withDefault(100)
  )
})

export interface DatabaseSettings {
  readonly url: Redacted.Redacted
  readonly poolSize: number
}

/** Connections in the pool, to DATABASE_URL's server or to the embedded one alike. */
export const databasePoolSize = Config.integer("DATABASE_POOL_SIZE").pipe(
  Config.validate({ message: "Expected a pool size of 1 or more", validation: (size) => size >= 1 }),
  Config.withDefault(10)
)

/** Set means "use this PostgreSQL"; none means the embedded PostgreSQL under DATA_DIR. */
export const database: Config.Config<Option.Option<DatabaseSettings>> = Config.all({
  url: Config.option(Config.redacted("DATABASE_URL")),
  poolSize: databasePoolSize
}).pipe(Config.map(({ poolSize, url }) => Option.map(url, (url) => ({ url, poolSize }))))

/** Set means "use this S3 bucket"; none means the local-disk store under DATA_DIR. */
export const s3: Config.Config<Option.Option<Omit<S3Settings, "partSize">>> = Config.all({
  bucket: Config.option(Config.string("S3_BUCKET")),
  region: Config.string("S3_REGION").pipe(Config.withDefault("us-east-1")),
  endpoint: Config.option(Config.url("S3_ENDPOINT")),
  forcePathStyle: Config.boolean("S3_FORCE_PATH_STYLE").pipe(Config.withDefault(false)),
  credentials: Config.option(Config.all({
    accessKeyId: Config.string("AWS_ACCESS_KEY_ID"),
    secretAccessKey: Config.redacted("AWS_SECRET_ACCESS_KEY")
  })),
  maxSockets: Config.integer("S3_MAX_SOCKETS").pipe(Config.withDefault(64))
}).pipe(Config.map(({ bucket, credentials, endpoint, ...rest }) =>
  Option.map(bucket, (bucket) => ({
    ...rest,
    bucket,
    // URL adds a trailing "/" to a bare origin, which would end up in every request path.
    endpoint: Option.getOrUndefined(Option.map(endpoint, (url) => url.href.replace(/\/$/, ""))),
    credentials: Option.getOrUndefined(credentials)
  }))
))
