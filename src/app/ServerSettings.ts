import { Config, ConfigError, Either, LogLevel } from "effect"
import { resolve } from "node:path"

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

/** Where the server listens and where the embedded defaults keep their data. */
export const ServerSettings = Config.all({
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

/** Set means "use this PostgreSQL"; unset means the embedded PGlite under DATA_DIR. */
export const useExternalDatabase = Config.option(Config.redacted("DATABASE_URL"))

/** Set means "use this S3 bucket"; unset means the local-disk store under DATA_DIR. */
export const useS3 = Config.option(Config.string("S3_BUCKET"))
