/**
 * Never delete a bucket by mistake: the reconciler treats objects as orphans only
 * when the store and the database are bound to each other, deletes none past
 * RECONCILE_MAX_ORPHANS, and orphans can be restored as files from their own
 * metadata, each checked against its sha256.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Option, Stream } from "effect"
import * as MemoryFileRepository from "../../src/adapters/database/MemoryFileRepository.js"
import * as PgFileRepository from "../../src/adapters/database/PgFileRepository.js"
import { FileService } from "../../src/app/FileService.js"
import { Reconciler } from "../../src/app/Reconciler.js"
import { Restore } from "../../src/app/Restore.js"
import { markerKeyFor, StoreBinding } from "../../src/app/StoreBinding.js"
import * as UploadSettings from "../../src/app/UploadSettings.js"
import { ObjectKey } from "../../src/domain/FileRecord.js"
import { LOCAL_OWNER } from "../../src/domain/FileRecord.js"
import { UploadPolicy } from "../../src/domain/UploadPolicy.js"
import { FileRepository, noQuota } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import * as Backends from "../support/Backends.js"
import { uploadBytes } from "../support/Content.js"
import { textOfSize } from "../support/Http.js"
import { readAll } from "../support/ReadAll.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestServer from "../support/TestServer.js"

const PART = TestServer.testPartSize
const prefix = TestServer.testPrefix
const policy = new UploadPolicy({
  minBytes: 512,
  maxBytes: 1024 * 1024,
  contentTypes: ["text/plain"],
  extensions: ["txt"]
})
const settings = UploadSettings.layer({ policy, keyPrefix: prefix, quota: noQuota })

/** The workflows over a given store and repository (each built once, by the caller). */
const servicesOver = (stores: Context.Context<ObjectStore | FileRepository | Backends.Backend>) =>
  Layer.mergeAll(FileService.Default, Reconciler.Default, Restore.Default, StoreBinding.Default).pipe(
    Layer.provideMerge(Layer.merge(Layer.succeedContext(stores), settings)),
    Layer.provide(TestServer.quietLogs)
  )

const objectsUnder = Effect.flatMap(ObjectStore, (store) => Stream.runCollect(store.list(prefix))).pipe(
  Effect.map((keys) => Array.from(keys).filter((key) => key !== markerKeyFor(prefix)))
)

/** Stray objects written straight into the backend: what another deployment, or a lost database, leaves. */
const strays = (count: number) =>
  Effect.gen(function*() {
    const backend = yield* Backends.Backend
    yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => ObjectKey.make(`${prefix}stray-${i}`)),
      (key) => backend.put(key, textOfSize(600), { contentType: "text/plain", metadata: {} }),
      { discard: true }
    )
  })

const pass = (maxOrphans: number) =>
  Effect.flatMap(Reconciler, (reconciler) => reconciler.pass({ dryRun: false, grace: 0, maxOrphans }))

const repositories: ReadonlyArray<{ readonly name: string; readonly fresh: Layer.Layer<FileRepository, unknown> }> = [
  { name: "memory", fresh: MemoryFileRepository.layer },
  { name: "embedded PGlite", fresh: PgFileRepository.layer.pipe(Layer.provide(TestDatabase.embeddedLayer)) }
]

/** A store (a backend and the port over it) and a repository, built now, for the test's scope. */
const build = (
  repository: Layer.Layer<FileRepository, unknown>,
  backend: Layer.Layer<Backends.Backend> = Backends.memory
) => Layer.build(Layer.merge(Backends.objectStore(PART).pipe(Layer.provideMerge(backend)), repository))

describe("the store and the database, bound", () => {
  for (const { fresh, name } of repositories) {
    describe(`over ${name}`, () => {
      it.scoped("100 objects and an empty database: the audit deletes nothing, and says the two are not bound", () =>
        Effect.gen(function*() {
          const stores = yield* build(fresh)
          yield* strays(100).pipe(Effect.provide(stores))
          yield* Effect.gen(function*() {
            const report = yield* pass(1000)
            expect(report.audit).toMatchObject({ _tag: "Unbound", reason: expect.stringContaining("--bind") })
            expect(report.orphans).toEqual([])
            expect(yield* objectsUnder).toHaveLength(100)
            // Uploads go on meanwhile.
            const files = yield* FileService
            yield* uploadBytes(files, { name: "meanwhile.txt", contentType: "text/plain" }, textOfSize(700))
            // A dry run says so too.
            const dry = yield* Effect.flatMap(Reconciler, (r) => r.pass({ dryRun: true, grace: 0, maxOrphans: 1000 }))
            expect(dry.audit._tag).toBe("Unbound")
          }).pipe(Effect.provide(servicesOver(stores)))
        }))

      it.scoped("a fresh pair is bound on first use; a database bound to another store is refused the audit", () =>
        Effect.gen(function*() {
          const stores = yield* build(fresh)
          yield* Effect.gen(function*() {
            const binding = yield* StoreBinding
            const found = yield* binding.found
            expect(Option.isSome(found.database) && found.database).toEqual(found.store)
            yield* strays(3)
            expect((yield* pass(1000)).orphans).toHaveLength(3)
          }).pipe(Effect.provide(servicesOver(stores)))
          // The same store beside another database: refused.
          const other = yield* build(fresh)
          const mixed = Context.merge(stores, Context.pick(FileRepository)(other))
          yield* strays(2).pipe(Effect.provide(stores))
          yield* Effect.gen(function*() {
            expect((yield* pass(1000)).audit._tag).toBe("Unbound")
            expect(yield* objectsUnder).toHaveLength(2)
          }).pipe(Effect.provide(servicesOver(mixed)))
        }))

      it.scoped(
        "150 true orphans, over a cap of 100: the audit deletes none; under a cap of 200 it deletes them all",
        () =>
          Effect.gen(function*() {
            const stores = yield* build(fresh)
            yield* Effect.gen(function*() {
              yield* strays(150)
              const capped = yield* pass(100)
              expect(capped.audit).toMatchObject({ _tag: "TooManyOrphans", found: 150, max: 100 })
              expect(capped.orphans).toEqual([])
              expect(yield* objectsUnder).toHaveLength(150)
              const uncapped = yield* pass(200)
              expect(uncapped.orphans).toHaveLength(150)
              expect(yield* objectsUnder).toHaveLength(0)
            }).pipe(Effect.provide(servicesOver(stores)))
          }),
        60_000
      )

      it.scoped(
        "restore: 20 files (one large), a switch to an empty database, bind, restore: all come back whole; a corrupt one stays an orphan",
        () =>
          Effect.gen(function*() {
            const stores = yield* build(fresh)
            const uploaded = yield* Effect.gen(function*() {
              const files = yield* FileService
              return yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
                uploadBytes(
                  files,
                  { name: `notes-${i} ✓.txt`, contentType: "text/plain; charset=utf-8" },
                  textOfSize(i === 0 ? 3 * PART + 77 : 600 + i, `file ${i} `)
                ))
            }).pipe(Effect.provide(servicesOver(stores)))
            // A corrupt object among them: its bytes no longer match its sha256.
            const backend = Context.get(stores, Backends.Backend)
            const corrupt = ObjectKey.make(`${prefix}${crypto.randomUUID()}`)
            const [model] = uploaded
            if (model === undefined) return
            const info = Option.getOrThrow(yield* backend.head(model.objectKey))
            yield* backend.put(corrupt, textOfSize(900), {
              contentType: "text/plain",
              metadata: { ...info.metadata, "file-id": corrupt.slice(prefix.length) }
            })

            // The database is lost: a fresh one beside the same store.
            const other = yield* build(fresh)
            const switched = Context.merge(stores, Context.pick(FileRepository)(other))
            yield* Effect.gen(function*() {
              const restore = yield* Restore
              // Unbound: nothing is restored until the operator binds.
              expect(Option.isSome((yield* restore.run()).unbound)).toBe(true)
              yield* (yield* StoreBinding).bind
              const report = yield* restore.run()
              expect(report.restored.map((r) => r.id).sort()).toEqual(uploaded.map((r) => r.id).sort())
              expect(report.refused).toEqual([{ key: corrupt, reason: expect.stringContaining("do not match") }])
              const files = yield* FileService
              for (const record of uploaded) {
                const restored = yield* files.get(LOCAL_OWNER, record.id)
                expect(restored).toEqual(record)
                const content = yield* readAll(yield* ObjectStore, restored.objectKey)
                expect(content.bytes.byteLength).toBe(record.size)
              }
              // The corrupt object is still an orphan, for the operator to look at; a second restore restores nothing new.
              expect((yield* restore.run()).restored).toEqual([])
              expect(yield* objectsUnder).toContain(corrupt)
            }).pipe(Effect.provide(servicesOver(switched)))
          }),
        60_000
      )
    })
  }
})
