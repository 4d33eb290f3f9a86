import { Config, ConfigError, Context, Either, Layer, ParseResult, Schema } from "effect"
import { KeyPrefix } from "../domain/ObjectKey.js"
import { UploadPolicy } from "../domain/UploadPolicy.js"

/** The upload policy, the key prefix and the part size, read once from the environment. */
export class UploadSettings extends Context.Tag("app/UploadSettings")<UploadSettings, {
  readonly policy: UploadPolicy
  readonly keyPrefix: KeyPrefix
  /** Files up to this size are checked whole and written with one PutObject; larger ones in parts of this size. */
  readonly partSize: number
}>() {}

/** S3's bounds for a multipart upload's parts (all but the last). */
export const MIN_PART_SIZE = 5 * 1024 ** 2
export const DEFAULT_PART_SIZE = 8 * 1024 ** 2

const list = (name: string, fallback: ReadonlyArray<string>, normalize: (item: string) => string) =>
  Config.array(Config.string(), name).pipe(
    Config.map((items) => items.map(normalize).filter((item) => item.length > 0)),
    Config.withDefault(fallback)
  )

/** Decodes with a schema and reports failures as invalid data at `path`, the variable's name. */
const decodeAt = <A, I>(schema: Schema.Schema<A, I>, path: ReadonlyArray<string>) => (input: unknown) =>
  Either.mapLeft(
    Schema.decodeUnknownEither(schema)(input),
    (error) => ConfigError.InvalidData([...path], ParseResult.TreeFormatter.formatErrorSync(error).replace(/\s+/g, " "))
  )

const policyConfig: Config.Config<UploadPolicy> = Config.all({
  minBytes: Config.integer("UPLOAD_MIN_BYTES").pipe(Config.withDefault(UploadPolicy.default.minBytes)),
  maxBytes: Config.integer("UPLOAD_MAX_BYTES").pipe(Config.withDefault(UploadPolicy.default.maxBytes)),
  contentTypes: list("UPLOAD_CONTENT_TYPES", UploadPolicy.default.contentTypes, (t) => t.trim().toLowerCase()),
  extensions: list("UPLOAD_EXTENSIONS", UploadPolicy.default.extensions, (e) => e.trim().toLowerCase().replace(/^\./, ""))
}).pipe(Config.mapOrFail(decodeAt(UploadPolicy, ["UPLOAD_MIN_BYTES/UPLOAD_MAX_BYTES/UPLOAD_CONTENT_TYPES/UPLOAD_EXTENSIONS"])))

const keyPrefixConfig = Config.string("S3_PREFIX").pipe(
  Config.withDefault("files/"),
  Config.mapOrFail(decodeAt(KeyPrefix, ["S3_PREFIX"]))
)

const partSizeConfig = Config.integer("S3_PART_SIZE").pipe(
  Config.validate({
    message: `Expected a part size from ${MIN_PART_SIZE} (5 MiB) to ${5 * 1024 ** 3} (5 GiB) bytes`,
    validation: (size) => size >= MIN_PART_SIZE && size <= 5 * 1024 ** 3
  }),
  Config.withDefault(DEFAULT_PART_SIZE)
)

export const layer = (settings: UploadSettings["Type"]) => Layer.succeed(UploadSettings, settings)

export const layerConfig = Layer.effect(
  UploadSettings,
  Config.all({ policy: policyConfig, keyPrefix: keyPrefixConfig, partSize: partSizeConfig })
)
