import { Config, ConfigError, Duration, Either, LogLevel, Option, ParseResult, Schema } from "effect"
import type { Redacted } from "effect"
import { resolve } from "node:path"
import { DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE } from "../adapters/objects/ObjectBackend.js"
import type { S3Settings } from "../adapters/objects/S3ObjectStore.js"
import type { UploadSettings } from "../app/UploadSettings.js"
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
  /**
   * Record spans (Effect.fn, the HTTP server's, SQL's). Off by default: no exporter
   * is wired, and a span costs CPU on every request whether or not anyone reads it.
   */
  tracing: Config.boolean("TRACING").pipe(Config.withDefault(false)),
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
export const upload: Config.Config<UploadSettings["Type"]> = Config.all({
  policy,
  keyPrefix: Config.string("S3_PREFIX").pipe(
    Config.withDefault("files/"),
    Config.mapOrFail(decodeAt(KeyPrefix, ["S3_PREFIX"]))
  )
})

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

/** Set means "use this PostgreSQL"; none means the embedded PGlite under DATA_DIR. */
export const database: Config.Config<Option.Option<DatabaseSettings>> = Config.all({
  url: Config.option(Config.redacted("DATABASE_URL")),
  poolSize: Config.integer("DATABASE_POOL_SIZE").pipe(
    Config.validate({ message: "Expected a pool size of 1 or more", validation: (size) => size >= 1 }),
    Config.withDefault(10)
  )
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
