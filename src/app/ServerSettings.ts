import { Config, LogLevel } from "effect"
import { resolve } from "node:path"

/** Where the server listens and where the embedded defaults keep their data. */
export const ServerSettings = Config.all({
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1")),
  port: Config.port("PORT").pipe(Config.withDefault(3000)),
  dataDirectory: Config.string("DATA_DIR").pipe(Config.withDefault("./data"), Config.map((dir) => resolve(dir))),
  logLevel: Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))
})

/** Set means "use this PostgreSQL"; unset means the embedded PGlite under DATA_DIR. */
export const useExternalDatabase = Config.option(Config.redacted("DATABASE_URL"))

/** Set means "use this S3 bucket"; unset means the local-disk store under DATA_DIR. */
export const useS3 = Config.option(Config.string("S3_BUCKET"))
