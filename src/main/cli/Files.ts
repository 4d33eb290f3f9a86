import { Args, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { NodeHttpClient, NodeSink } from "@effect/platform-node"
import {
  Config,
  Console,
  DateTime,
  Duration,
  Effect,
  Either,
  Exit as EffectExit,
  Layer,
  Option,
  Schema,
  Stream
} from "effect"
import { createHash, randomBytes } from "node:crypto"
import { createWriteStream, openAsBlob } from "node:fs"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { FileView, Link } from "../../adapters/http/Api.js"
import * as Client from "../../client/TandemClient.js"
import { FileId } from "../../domain/FileRecord.js"
import { IdempotencyKey } from "../../domain/IdempotencyKey.js"
import { describe, DownloadCorrupt, Exit, exitCodeOf, LocalFileError } from "./ExitCodes.js"
import * as Progress from "./Progress.js"

/**
 * The commands that talk to a server: upload, ls, get, rm, link. They find it at
 * TANDEM_URL and speak for TANDEM_TOKEN's owner, through the typed client.
 */

/** The client, configured from TANDEM_URL and TANDEM_TOKEN, over node:http; uploads can be counted (Progress). */
export const clientLayer = Client.TandemClient.layerConfig(
  Config.map(Client.config, (options) => ({ ...options, transformClient: Progress.countUploadBytes }))
).pipe(Layer.provide(NodeHttpClient.layer))

const json = Options.boolean("json").pipe(Options.withDescription("One JSON object per file (or link) instead of text"))

const fileId = Args.text({ name: "ID" }).pipe(Args.withSchema(FileId), Args.withDescription("The file's id (a UUID)"))

/** A file as a line: id, size, created at, content type, name, tab-separated; or its JSON. */
const fileLine = (file: FileView, asJson: boolean) =>
  asJson
    ? Effect.map(Schema.encode(FileView)(file), (encoded) => JSON.stringify(encoded))
    : Effect.succeed([file.id, file.size, DateTime.formatIso(file.createdAt), file.contentType, file.name].join("\t"))

const printFile = (file: FileView, asJson: boolean) => Effect.flatMap(Effect.orDie(fileLine(file, asJson)), Console.log)

/** Reports a failure on stderr and gives its exit status: for commands that go on past one. */
const report = (what: string, error: unknown) =>
  Effect.as(
    Option.match(describe(error), {
      onNone: () => Effect.void,
      onSome: (line) => Console.error(`tandem: ${what}: ${line}`)
    }),
    exitCodeOf(error)
  )

// --- upload ---------------------------------------------------------------------------------------------------------

const contentTypes: Record<string, string> = {
  txt: "text/plain",
  md: "text/markdown",
  csv: "text/csv",
  html: "text/html",
  css: "text/css",
  js: "text/javascript",
  json: "application/json",
  xml: "application/xml",
  pdf: "application/pdf",
  zip: "application/zip",
  gz: "application/gzip",
  tar: "application/x-tar",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  svg: "image/svg+xml",
  mp3: "audio/mpeg",
  mp4: "video/mp4"
}

/** The content type a file is declared with: by its extension, `application/octet-stream` for others. */
export const contentTypeOf = (path: string): string =>
  contentTypes[Path.extname(path).slice(1).toLowerCase()] ?? "application/octet-stream"

const files = Args.file({ name: "FILE", exists: "yes" }).pipe(
  Args.atLeast(1),
  Args.withDescription("The files to upload; each is stored under its base name")
)

const key = Options.text("key").pipe(
  Options.withSchema(IdempotencyKey),
  Options.optional,
  Options.withDescription(
    "Idempotency-Key: running the same command again returns the files the first run made instead of new ones. " +
      "With several files, the Nth is sent with KEY/N"
  )
)

const type = Options.text("type").pipe(
  Options.optional,
  Options.withDescription("The content type every file is declared with (default: by extension, text/plain for .txt)")
)

const concurrency = Options.integer("concurrency").pipe(
  Options.withSchema(Schema.Number.pipe(Schema.between(1, 64))),
  Options.withDefault(4),
  Options.withDescription("Uploads in flight at once")
)

const keyFor = (key: Option.Option<IdempotencyKey>, index: number, count: number) =>
  Option.map(key, (key) => count === 1 ? key : IdempotencyKey.make(`${key}/${index + 1}`))

const open = (path: string, type: string) =>
  Effect.tryPromise({
    try: async () => ({ blob: await openAsBlob(path, { type }), size: (await Fs.stat(path)).size }),
    catch: (error) =>
      new LocalFileError({
        path,
        reason: error instanceof Error ? error.message : String(error),
        missing: error instanceof Error && "code" in error && error.code === "ENOENT"
      })
  })

export const upload = Command.make(
  "upload",
  { files, key, type, concurrency, json },
  (options) =>
    Effect.gen(function*() {
      const client = yield* Client.TandemClient
      const opened = yield* Effect.forEach(
        options.files,
        (path) => open(path, Option.getOrElse(options.type, () => contentTypeOf(path)))
      )
      const progress = yield* Progress.bar(opened.reduce((total, file) => total + file.size, 0), opened.length)
      const uploadOne = Effect.fn("tandem.cli.upload")(function*(path: string, index: number) {
        const file = opened[index]
        if (file === undefined) return yield* Effect.dieMessage(`no file at ${index}`)
        const idempotencyKey = keyFor(options.key, index, options.files.length)
        const stored = yield* client.files.upload({
          payload: Client.uploadForm(file.blob, Path.basename(path)),
          headers: Option.match(idempotencyKey, { onNone: () => ({}), onSome: (key) => ({ "idempotency-key": key }) })
        }).pipe(progress.track)
        yield* printFile(stored, options.json)
      })
      const codes = yield* Effect.forEach(
        options.files,
        (path, index) =>
          uploadOne(path, index).pipe(
            Effect.as(0),
            Effect.catchAll((error) => report(`upload ${path}`, error)),
            Effect.zipLeft(progress.fileDone)
          ),
        { concurrency: options.concurrency }
      )
      const failed = codes.find((code) => code !== 0)
      if (failed !== undefined) return yield* new Exit({ code: failed })
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Upload files (several at once), printing each stored file as `ID SIZE CREATED TYPE NAME` (tab-separated) " +
      "as it is stored. A file refused is reported on stderr and the others go on; the exit status is the first " +
      "refused file's. A progress bar shows on stderr for large uploads when it is a terminal"
  )
)

// --- ls -------------------------------------------------------------------------------------------------------------

const limit = Options.integer("limit").pipe(
  Options.withSchema(Schema.Number.pipe(Schema.between(1, 100))),
  Options.optional,
  Options.withDescription("One page of this many files (1 to 100); the next page's cursor is printed on stderr")
)

const cursor = Options.text("cursor").pipe(
  Options.mapEffect((text) =>
    Option.match(Client.parseCursor(text), {
      onNone: () =>
        Either.left(ValidationError.invalidValue(HelpDoc.p(`--cursor ${text} is not a cursor tandem gave`))),
      onSome: Either.right
    })
  ),
  Options.optional,
  Options.withDescription("The page after this cursor (printed by a previous `ls --limit`)")
)

export const ls = Command.make("ls", { limit, cursor, json }, (options) =>
  Effect.gen(function*() {
    const client = yield* Client.TandemClient
    if (Option.isNone(options.limit) && Option.isNone(options.cursor)) {
      return yield* client.listAll().pipe(Stream.runForEach((file) => printFile(file, options.json)))
    }
    const page = yield* client.files.list({
      urlParams: {
        limit: Option.getOrElse(options.limit, () => 20),
        ...Option.match(options.cursor, { onNone: () => ({}), onSome: (cursor) => ({ cursor }) })
      }
    })
    yield* Effect.forEach(page.items, (file) => printFile(file, options.json), { discard: true })
    if (page.nextCursor !== null) yield* Console.error(`next cursor: ${page.nextCursor}`)
  }).pipe(Effect.withSpan("tandem.cli.ls"))).pipe(
    Command.withDescription(
      "List your files, newest first, as `ID SIZE CREATED TYPE NAME` (tab-separated): all of them, following the " +
        "pages, or one page with --limit/--cursor"
    )
  )

// --- get ------------------------------------------------------------------------------------------------------------

const output = Options.file("output").pipe(
  Options.withAlias("o"),
  Options.optional,
  Options.withDescription("Write the content to this file (replaced only once all of it arrived and checked)")
)

const info = Options.boolean("info").pipe(
  Options.withDescription("Print the file's metadata (`ID SIZE CREATED TYPE NAME`) instead of its content")
)

type Write = (stream: Stream.Stream<Uint8Array, unknown>) => Effect.Effect<void, LocalFileError>

/** Streams the content through `write`, counting and hashing it; fails if it is not the announced bytes. */
const checkedCopy = (id: FileId, download: Client.Download, write: Write) =>
  Effect.gen(function*() {
    const hash = createHash("sha256")
    let size = 0
    yield* write(download.stream.pipe(Stream.tap((chunk) =>
      Effect.sync(() => {
        hash.update(chunk)
        size += chunk.byteLength
      })
    )))
    const sha256 = hash.digest("hex")
    if (Option.isSome(download.size) && download.size.value !== size) {
      return yield* new DownloadCorrupt({ id, reason: `${size} bytes arrived of ${download.size.value}` })
    }
    if (Option.isSome(download.sha256) && download.sha256.value !== sha256) {
      return yield* new DownloadCorrupt({ id, reason: `SHA-256 ${sha256}, not ${download.sha256.value}` })
    }
  })

const localError = (path: string) => (error: unknown) =>
  new LocalFileError({ path, reason: error instanceof Error ? error.message : String(error), missing: false })

const writeTo = (path: string, flags: string): Write => (stream) =>
  Stream.run(stream, NodeSink.fromWritable(() => createWriteStream(path, { flags }), localError(path))).pipe(
    Effect.mapError((error) => error instanceof LocalFileError ? error : localError(path)(error))
  )

const toStdout: Write = (stream) =>
  Stream.run(stream, NodeSink.fromWritable(() => process.stdout, localError("stdout"), { endOnDone: false })).pipe(
    Effect.mapError((error) => error instanceof LocalFileError ? error : localError("stdout")(error))
  )

/** Into a temporary file beside `path`, renamed over it once `copy` succeeded; removed otherwise. */
const intoFile = <E>(path: string, copy: (write: Write) => Effect.Effect<void, E>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => Path.join(Path.dirname(path), `.${Path.basename(path)}.${randomBytes(4).toString("hex")}.part`)),
    (temporary) =>
      Effect.zipRight(
        copy(writeTo(temporary, "wx")),
        Effect.tryPromise({ try: () => Fs.rename(temporary, path), catch: localError(path) })
      ),
    (temporary, exit) =>
      EffectExit.isSuccess(exit) ? Effect.void : Effect.promise(() => Fs.rm(temporary, { force: true }))
  )

export const get = Command.make("get", { id: fileId, output, info, json }, (options) =>
  Effect.gen(function*() {
    const client = yield* Client.TandemClient
    if (options.info) {
      return yield* printFile(yield* client.files.get({ path: { id: options.id } }), options.json)
    }
    const download = yield* client.download(options.id)
    yield* Option.match(options.output, {
      onNone: () => checkedCopy(options.id, download, toStdout),
      onSome: (path) => intoFile(path, (write) => checkedCopy(options.id, download, write))
    })
  }).pipe(Effect.withSpan("tandem.cli.get"))).pipe(
    Command.withDescription(
      "Download a file's content to stdout, or to a file with -o (checked against its size and SHA-256); " +
        "--info prints its metadata instead"
    )
  )

// --- rm -------------------------------------------------------------------------------------------------------------

export const rm = Command.make("rm", { ids: Args.atLeast(fileId, 1) }, ({ ids }) =>
  Effect.gen(function*() {
    const client = yield* Client.TandemClient
    const codes = yield* Effect.forEach(ids, (id) =>
      client.files.delete({ path: { id } }).pipe(
        Effect.as(0),
        Effect.catchAll((error) => report(`rm ${id}`, error))
      ))
    const failed = codes.find((code) => code !== 0)
    if (failed !== undefined) return yield* new Exit({ code: failed })
  }).pipe(Effect.withSpan("tandem.cli.rm"))).pipe(
    Command.withDescription("Delete files (the record and the bytes); the exit status is the first failure's")
  )

// --- link -----------------------------------------------------------------------------------------------------------

const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 }

/** `90`, `90s`, `30m`, `1h`, `7d`, or what Effect's Duration reads (`2 hours`): whole seconds. */
export const parseLifetime = (text: string): Option.Option<number> => {
  const short = /^(\d+)\s*([smhd]?)$/.exec(text.trim())
  if (short !== null) return Option.some(Number(short[1]) * (units[short[2] || "s"] ?? 1))
  return Option.map(Duration.decodeUnknown(text), (duration) => Math.round(Duration.toSeconds(duration)))
}

const expires = Options.text("expires").pipe(
  Options.withDefault("1h"),
  Options.mapEffect((text) =>
    Option.match(Option.filter(parseLifetime(text), (seconds) => seconds >= 1 && seconds <= 7 * 86400), {
      onNone: () =>
        Either.left(ValidationError.invalidValue(HelpDoc.p(`--expires ${text}: expected 1s to 7d (90s, 30m, 1h, 7d)`))),
      onSome: Either.right
    })
  ),
  Options.withDescription("How long the link works: 90s, 30m, 1h, 7d (1 second to 7 days)")
)

export const link = Command.make("link", { id: fileId, expires, json }, (options) =>
  Effect.gen(function*() {
    const client = yield* Client.TandemClient
    const { baseUrl } = yield* Client.config
    const link = yield* client.files.link({ path: { id: options.id }, payload: { expiresInSeconds: options.expires } })
    const url = `${baseUrl.toString().replace(/\/+$/, "")}${link.url}`
    if (options.json) {
      const encoded = yield* Effect.orDie(Schema.encode(Link)(new Link({ ...link, url })))
      return yield* Console.log(JSON.stringify(encoded))
    }
    yield* Console.log(url)
  }).pipe(Effect.withSpan("tandem.cli.link"))).pipe(
    Command.withDescription("Print a signed link to the file's content, which works without a token until it expires")
  )
