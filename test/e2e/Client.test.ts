/**
 * The typed client (src/client, `tandem/client`) against the real server
 * (`node dist/bin/serve.js`) with bearer tokens, on a fresh PostgreSQL database and
 * a local-disk store: every endpoint, and the API's errors as typed failures.
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, layer } from "@effect/vitest"
import { Chunk, Context, Effect, Either, Layer, Option, Redacted, Stream } from "effect"
import { SignJWT } from "jose"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { FileId, IdempotencyKey, isTandemError, statusOf, TandemClient, uploadForm } from "../../src/client/index.js"
import { textOfSize } from "../support/Http.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as TestDatabase from "../support/TestDatabase.js"

const SECRET = "an HS256 secret for the client e2e test, 32 bytes or more"

const tokenFor = (sub: string) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setIssuedAt().setExpirationTime("10m")
      .sign(new TextEncoder().encode(SECRET))
  )

/** The server under test: its URL and a token for `alice`. */
class Server extends Context.Tag("test/Server")<Server, { readonly url: string; readonly token: string }>() {}

const ServerLive = Layer.scoped(
  Server,
  Effect.gen(function*() {
    const databaseUrl = yield* TestDatabase.freshDatabaseUrl(Option.getOrThrow(TestDatabase.serverUrl))
    const dataDir = yield* Effect.acquireRelease(
      Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-client-"))),
      (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
    )
    const server = yield* ServerProcess.start({
      DATABASE_URL: Redacted.value(databaseUrl),
      DATA_DIR: dataDir,
      AUTH_JWT_SECRET: SECRET,
      LINK_SIGNING_SECRET: "a link-signing secret for the client e2e test"
    })
    return { url: server.url, token: yield* tokenFor("alice") }
  }).pipe(Effect.orDie)
)

/** The client as `alice`, or with `token` (none: no Authorization at all). */
const clientAs = (token: Option.Option<string>) =>
  Effect.flatMap(Server, (server) =>
    Effect.provide(
      TandemClient,
      TandemClient.layer({ baseUrl: server.url, token: Option.getOrUndefined(token) }).pipe(
        Layer.provide(FetchHttpClient.layer)
      )
    ))

const alice = Effect.flatMap(Server, (server) => clientAs(Option.some(server.token)))

const text = (bytes: Uint8Array) => new Blob([bytes], { type: "text/plain" })

const failureOf = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.either(effect), (result) => Either.isLeft(result) ? Option.some(result.left) : Option.none())

describe.skipIf(Option.isNone(TestDatabase.serverUrl))("tandem/client, on the real server", () => {
  layer(ServerLive, { excludeTestServices: true, timeout: 60_000 })((it) => {
    it.effect("upload, get, list, content (whole and streamed), link, delete", () =>
      Effect.gen(function*() {
        const client = yield* alice
        const bytes = textOfSize(700, "client ")
        const stored = yield* client.files.upload({ payload: uploadForm(text(bytes), "notes.txt"), headers: {} })
        expect(stored.name).toBe("notes.txt")
        expect(stored.size).toBe(700)
        expect(stored.contentType).toBe("text/plain")
        const id = FileId.make(stored.id)

        const got = yield* client.files.get({ path: { id } })
        expect(got.id).toBe(stored.id)
        expect(got.sha256).toBe(stored.sha256)

        const page = yield* client.files.list({ urlParams: { limit: 100 } })
        expect(page.items.map((file) => file.id)).toContain(stored.id)

        const content = yield* client.files.content({ path: { id } })
        expect(Buffer.from(content).equals(Buffer.from(bytes))).toBe(true)

        const download = yield* client.download(id)
        expect(download.size).toEqual(Option.some(700))
        expect(download.sha256).toEqual(Option.some(stored.sha256))
        const streamed = yield* Stream.runCollect(download.stream)
        expect(Buffer.concat(Chunk.toArray(streamed)).equals(Buffer.from(bytes))).toBe(true)

        const link = yield* client.files.link({ path: { id }, payload: { expiresInSeconds: 60 } })
        expect(link.url).toMatch(new RegExp(`^/files/${stored.id}/content\\?expires=\\d+&signature=`))
        const server = yield* Server
        const viaLink = yield* Effect.promise(() => fetch(`${server.url}${link.url}`).then((r) => r.arrayBuffer()))
        expect(Buffer.from(viaLink).equals(Buffer.from(bytes))).toBe(true)

        yield* client.files.delete({ path: { id } })
        const gone = yield* failureOf(client.files.get({ path: { id } }))
        expect(Option.map(gone, (error) => isTandemError(error) ? error._tag : "other")).toEqual(
          Option.some("FileNotFound")
        )
      }), 60_000)

    it.effect(
      "the API's errors are typed failures: FileNotFound, FileTooSmall, ContentTypeNotAllowed",
      () =>
        Effect.gen(function*() {
          const client = yield* alice
          const missing = FileId.make(crypto.randomUUID())
          const notFound = yield* client.files.get({ path: { id: missing } }).pipe(
            Effect.as("found"),
            Effect.catchTag("FileNotFound", (error) => Effect.succeed(`${error._tag}: ${error.message}`))
          )
          expect(notFound).toMatch(/^FileNotFound: /)
          // The download helper decodes the same errors.
          const notDownloaded = yield* client.download(missing).pipe(
            Effect.as("downloaded"),
            Effect.catchTag("FileNotFound", (error) => Effect.succeed(error._tag))
          )
          expect(notDownloaded).toBe("FileNotFound")

          const tooSmall = yield* client.files.upload({
            payload: uploadForm(text(textOfSize(10)), "tiny.txt"),
            headers: {}
          })
            .pipe(Effect.as("stored"), Effect.catchTag("FileTooSmall", (error) => Effect.succeed(statusOf(error))))
          expect(tooSmall).toBe(422)

          const png = new Blob([textOfSize(600)], { type: "image/png" })
          const wrongType = yield* client.files.upload({ payload: uploadForm(png, "picture.txt"), headers: {} }).pipe(
            Effect.as("stored"),
            Effect.catchTag("ContentTypeNotAllowed", (error) => Effect.succeed(error._tag))
          )
          expect(wrongType).toBe("ContentTypeNotAllowed")
        }),
      60_000
    )

    it.effect(
      "without a token: 401 Unauthorized, typed; with another owner's token: that owner's files only",
      () =>
        Effect.gen(function*() {
          const anonymous = yield* clientAs(Option.none())
          const refused = yield* anonymous.files.list({ urlParams: { limit: 10 } }).pipe(
            Effect.as(0),
            Effect.catchTag("Unauthorized", (error) => Effect.succeed(statusOf(error)))
          )
          expect(refused).toBe(401)

          const client = yield* alice
          const mine = yield* client.files.upload({
            payload: uploadForm(text(textOfSize(600)), "mine.txt"),
            headers: {}
          })
          const bob = yield* clientAs(Option.some(yield* tokenFor("bob")))
          const theirs = yield* failureOf(bob.files.get({ path: { id: FileId.make(mine.id) } }))
          expect(Option.map(theirs, (error) => isTandemError(error) ? error._tag : "other")).toEqual(
            Option.some("FileNotFound")
          )
        }),
      60_000
    )

    it.effect("an Idempotency-Key replays the first upload; listAll follows every page", () =>
      Effect.gen(function*() {
        const client = yield* clientAs(Option.some(yield* tokenFor(`pager-${crypto.randomUUID()}`)))
        const bytes = textOfSize(600, "again ")
        const key = IdempotencyKey.make(crypto.randomUUID())
        const first = yield* client.files.upload({
          payload: uploadForm(text(bytes), "again.txt"),
          headers: { "idempotency-key": key }
        })
        const retry = yield* client.files.upload({
          payload: uploadForm(text(bytes), "again.txt"),
          headers: { "idempotency-key": key }
        })
        expect(retry.id).toBe(first.id)

        for (const i of [1, 2, 3, 4]) {
          yield* client.files.upload({ payload: uploadForm(text(textOfSize(600 + i)), `page-${i}.txt`), headers: {} })
        }
        const all = yield* Stream.runCollect(client.listAll(2))
        expect(Chunk.size(all)).toBe(5)
        expect(new Set(Chunk.toArray(all).map((file) => file.id)).size).toBe(5)
      }), 60_000)
  })
})
