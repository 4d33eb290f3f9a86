import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Effect, Layer, Option, Redacted, Stream } from "effect"
import { execFile } from "node:child_process"
import * as PgFileRepository from "../../src/adapters/database/PgFileRepository.js"
import * as PostgresDatabase from "../../src/adapters/database/PostgresDatabase.js"
import * as S3ObjectStore from "../../src/adapters/objects/S3ObjectStore.js"
import { FileService } from "../../src/app/FileService.js"
import { StoreBinding } from "../../src/app/StoreBinding.js"
import { ObjectKey } from "../../src/domain/FileRecord.js"
import { LOCAL_OWNER } from "../../src/domain/FileRecord.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import { uploadBytes, writeBytes } from "../support/Content.js"
import { textOfSize } from "../support/Http.js"
import { recordFor } from "../support/Records.js"
import * as S3TestServer from "../support/S3TestServer.js"
import { mainScript } from "../support/ServerProcess.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestServer from "../support/TestServer.js"

const reconcileScript = mainScript.replace(/serve\.js$/, "reconcile.js")

/** `npm run reconcile` as an operator runs it: exit code and output. */
const cli = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.async<{ code: number; stdout: string; stderr: string }>((resume) => {
    execFile(
      process.execPath,
      [reconcileScript, ...args],
      { env: { PATH: process.env.PATH ?? "", ...env } },
      (error, stdout, stderr) =>
        resume(
          Effect.succeed({
            code: error === null ? 0 : typeof error.code === "number" ? error.code : -1,
            stdout,
            stderr
          })
        )
    )
  })

const put = (key: string) =>
  Effect.flatMap(ObjectStore, (store) => writeBytes(store, ObjectKey.make(key), textOfSize(600)))

describe.skipIf(Option.isNone(TestDatabase.serverUrl))("npm run reconcile", () => {
  it.live(
    "--dry-run lists exactly the stray objects and stale intents; a real run removes them and nothing else",
    () =>
      Effect.gen(function*() {
        const server = Option.getOrThrow(TestDatabase.serverUrl)
        const databaseUrl = yield* TestDatabase.freshDatabaseUrl(server)
        const s3 = yield* S3TestServer.settings
        const stores = Layer.merge(
          S3ObjectStore.layer(s3),
          PgFileRepository.layer.pipe(
            Layer.provideMerge(TestDatabase.migrated(PostgresDatabase.layerUrl(databaseUrl, 2)))
          )
        )
        const env = {
          DATABASE_URL: Redacted.value(databaseUrl),
          S3_BUCKET: s3.bucket,
          S3_ENDPOINT: s3.endpoint ?? "",
          S3_FORCE_PATH_STYLE: "true",
          AWS_ACCESS_KEY_ID: "S3RVER",
          AWS_SECRET_ACCESS_KEY: "S3RVER",
          RECONCILE_GRACE_SECONDS: "60"
        }

        // Seed: healthy files, fresh intents (within the grace period), and the problems.
        const seeded = yield* Effect.gen(function*() {
          const files = yield* FileService
          const repository = yield* FileRepository
          const sql = yield* SqlClient.SqlClient
          // Intents date from the database's clock: age them there.
          const anHourOld = (id: string) =>
            sql`UPDATE files SET status_since = now() - interval '1 hour' WHERE id = ${id}`.pipe(Effect.orDie)
          const hourAgo = DateTime.subtractDuration(yield* DateTime.now, "1 hour")
          const healthy = yield* Effect.forEach(
            [0, 1, 2],
            (i) => uploadBytes(files, { name: `ok-${i}.txt`, contentType: "text/plain" }, textOfSize(600 + i))
          )
          // An upload in progress: intent and object, within the grace period.
          const inFlight = recordFor("in-flight.txt", yield* DateTime.now)
          yield* repository.insertPending(inFlight)
          yield* put(inFlight.objectKey)
          // Abandoned uploads: one crashed after its put, one before.
          const abandonedWithObject = recordFor("crashed-after-put.txt", hourAgo)
          yield* repository.insertPending(abandonedWithObject)
          yield* put(abandonedWithObject.objectKey)
          const abandonedWithout = recordFor("crashed-before-put.txt", hourAgo)
          yield* repository.insertPending(abandonedWithout)
          yield* Effect.forEach([abandonedWithObject, abandonedWithout], (record) => anHourOld(record.id))
          // Stray objects under the prefix, and one outside it that is not tandem's.
          const strays = ["files/stray-1", "files/nested/stray-2"]
          yield* Effect.forEach(strays, put)
          yield* put("elsewhere/not-ours")
          return { healthy, inFlight, abandoned: [abandonedWithObject, abandonedWithout], strays }
        }).pipe(
          // As the server does: a fresh store and database are bound before the first upload.
          Effect.provide(
            Layer.merge(FileService.Default, StoreBinding.Default).pipe(
              Layer.provideMerge(Layer.merge(stores, TestServer.defaultSettings))
            )
          )
        )

        const dryRun = yield* cli(["--dry-run"], env)
        expect(dryRun.code).toBe(1)
        const listed = (title: string) => {
          const lines = dryRun.stdout.split("\n")
          const start = lines.findIndex((line) => line.trim().startsWith(`${title}:`))
          const rest = lines.slice(start + 1)
          const end = rest.findIndex((line) => !line.startsWith("    "))
          return rest.slice(0, end === -1 ? rest.length : end).map((line) => line.trim()).sort()
        }
        expect(listed("abandoned uploads")).toEqual(seeded.abandoned.map((r) => r.objectKey).sort())
        expect(listed("unfinished deletes")).toEqual([])
        expect(listed("orphan objects")).toEqual([...seeded.strays].sort())
        expect(dryRun.stdout).toContain("nothing changed (dry run)")

        const before = yield* Effect.flatMap(ObjectStore, (store) => Stream.runCollect(store.list(""))).pipe(
          Effect.provide(stores)
        )
        const run = yield* cli([], env)
        expect(run.code).toBe(0)
        expect(run.stdout).toContain("4 problem(s) repaired; consistent")

        const after = yield* Effect.gen(function*() {
          const store = yield* ObjectStore
          const repository = yield* FileRepository
          const keys = Array.from(yield* Stream.runCollect(store.list(""))).sort()
          const listedFiles = (yield* repository.list(LOCAL_OWNER, { limit: 100, after: Option.none() })).items.map((
            r
          ) => r.id)
            .sort()
          const intents = yield* repository.staleIntents({ before: yield* DateTime.now, limit: 100 })
          return { keys, listedFiles, intents: intents.map((i) => i.record.id) }
        }).pipe(Effect.provide(stores))
        const removed = [...seeded.strays, seeded.abandoned[0]?.objectKey ?? ""]
        expect(after.keys).toEqual(Array.from(before).filter((key) => !removed.includes(key)).sort())
        expect(after.keys).toContain("elsewhere/not-ours")
        expect(after.keys).toContain(seeded.inFlight.objectKey)
        expect(after.listedFiles).toEqual(seeded.healthy.map((r) => r.id).sort())
        expect(after.intents).toEqual([seeded.inFlight.id])

        const again = yield* cli(["--dry-run"], env)
        expect(again.code).toBe(0)
        expect(again.stdout).toContain("consistent")

        const repairs = yield* cli(["--repairs"], env)
        expect(repairs.code).toBe(0)
        for (const key of removed) expect(repairs.stdout).toContain(key)
        expect(repairs.stdout).toContain("orphan-object")
        expect(repairs.stdout).toContain("abandoned-upload")
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  it.live(
    "after the database is lost: the audit is refused (exit 1), --bind binds, --restore brings every file back",
    () =>
      Effect.gen(function*() {
        const server = Option.getOrThrow(TestDatabase.serverUrl)
        const s3 = yield* S3TestServer.settings
        const storesOn = (url: Redacted.Redacted) =>
          Layer.merge(
            S3ObjectStore.layer(s3),
            PgFileRepository.layer.pipe(Layer.provide(TestDatabase.migrated(PostgresDatabase.layerUrl(url, 2))))
          )
        const first = yield* TestDatabase.freshDatabaseUrl(server)
        const uploaded = yield* Effect.gen(function*() {
          const files = yield* FileService
          return yield* Effect.forEach(
            [0, 1, 2, 3, 4],
            (i) => uploadBytes(files, { name: `kept-${i}.txt`, contentType: "text/plain" }, textOfSize(700 + i))
          )
        }).pipe(
          Effect.provide(
            Layer.merge(FileService.Default, StoreBinding.Default).pipe(
              Layer.provideMerge(Layer.merge(storesOn(first), TestServer.defaultSettings))
            )
          )
        )
        // The service now runs on an empty database (say, a restored backup older than the bucket).
        const second = yield* TestDatabase.freshDatabaseUrl(server)
        const env = {
          DATABASE_URL: Redacted.value(second),
          S3_BUCKET: s3.bucket,
          S3_ENDPOINT: s3.endpoint ?? "",
          S3_FORCE_PATH_STYLE: "true",
          AWS_ACCESS_KEY_ID: "S3RVER",
          AWS_SECRET_ACCESS_KEY: "S3RVER"
        }
        const refused = yield* cli([], env)
        expect(refused.code).toBe(1)
        expect(refused.stdout).toContain("orphan audit refused")
        expect(refused.stdout).toContain("--bind")
        const bound = yield* cli(["--bind"], env)
        expect(bound.code).toBe(0)
        const restored = yield* cli(["--restore"], env)
        expect(restored.code).toBe(0)
        for (const record of uploaded) expect(restored.stdout).toContain(record.id)
        const listed = yield* Effect.flatMap(FileRepository, (repository) =>
          repository.list(LOCAL_OWNER, { limit: 100, after: Option.none() })).pipe(Effect.provide(storesOn(second)))
        expect(listed.items.map((r) => [r.id, r.name, r.sha256]).sort()).toEqual(
          uploaded.map((r) => [r.id, r.name, r.sha256]).sort()
        )
        const clean = yield* cli(["--dry-run"], env)
        expect(clean.code).toBe(0)
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  it.live("an unknown flag prints the usage and exits 2 without touching anything", () =>
    Effect.gen(function*() {
      const result = yield* cli(["--wat"], {})
      expect(result.code).toBe(2)
      expect(result.stderr).toContain("usage: npm run reconcile")
    }))
})
