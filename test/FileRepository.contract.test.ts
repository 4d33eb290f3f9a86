/**
 * One contract for every FileRepository: memory, embedded PGlite, and real
 * PostgreSQL when TEST_DATABASE_URL is set. Then how PgFileRepository fails when
 * its database is gone.
 */
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { addEqualityTesters, describe, expect, it, layer as itLayer } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Array as Arr, Context, DateTime, Deferred, Duration, Effect, Either, FastCheck as fc, Fiber, Layer, Option, Order, Redacted } from "effect"
import { mkdtemp, readdir, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as MemoryFileRepository from "../src/adapters/MemoryFileRepository.js"
import * as PgFileRepository from "../src/adapters/PgFileRepository.js"
import * as PostgresDatabase from "../src/adapters/PostgresDatabase.js"
import type { FileCursor } from "../src/domain/FileCursor.js"
import { DatabaseUnavailable } from "../src/domain/StorageErrors.js"
import { FileId, FileName, FileRecord, MediaType, ObjectKey, Sha256Hex } from "../src/domain/FileRecord.js"
import { FileRepository } from "../src/ports/FileRepository.js"
import * as TestDatabase from "./support/TestDatabase.js"

addEqualityTesters()

// ---------------------------------------------------------------- records

const BASE_MILLIS = Date.UTC(2025, 0, 2, 3, 4, 5, 678)

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

const makeRecord = (fields: {
  readonly id: string
  readonly createdAtMillis: number
  readonly name?: string
  readonly size?: number
}): FileRecord =>
  new FileRecord({
    id: FileId.make(fields.id),
    name: FileName.make(fields.name ?? `file-${fields.id}.txt`),
    size: fields.size ?? 1024,
    contentType: MediaType.make("text/plain"),
    sha256: Sha256Hex.make(hex(new Uint8Array(32).fill(7))),
    objectKey: ObjectKey.make(`files/${fields.id}`),
    createdAt: DateTime.unsafeMake(fields.createdAtMillis)
  })

const newRecord = (createdAtMillis = BASE_MILLIS) => makeRecord({ id: crypto.randomUUID(), createdAtMillis })

/** Names PostgreSQL text can hold: valid Unicode without NUL. */
const fileName = fc.string({ unit: "grapheme", minLength: 1, maxLength: 40 }).filter((name) => !name.includes("\u0000"))

const recordArb = (createdAtMillis: fc.Arbitrary<number>): fc.Arbitrary<FileRecord> =>
  fc.record({
    id: fc.uuid(),
    name: fileName,
    size: fc.oneof(fc.nat(), fc.constant(5 * 1024 ** 3)),
    contentType: fc.constantFrom("text/plain", "application/json", "image/png"),
    sha256: fc.uint8Array({ minLength: 32, maxLength: 32 }).map(hex),
    createdAtMillis
  }).map((r) =>
    new FileRecord({
      id: FileId.make(r.id),
      name: FileName.make(r.name),
      size: r.size,
      contentType: MediaType.make(r.contentType),
      sha256: Sha256Hex.make(r.sha256),
      objectKey: ObjectKey.make(`files/${r.id}`),
      createdAt: DateTime.unsafeMake(r.createdAtMillis)
    })
  )

/** Few distinct timestamps, so many records tie on createdAt and the id decides. */
const recordsArb = fc.uniqueArray(recordArb(fc.integer({ min: 0, max: 4 }).map((k) => BASE_MILLIS + k)), {
  selector: (record) => record.id,
  maxLength: 30
})

/** The documented order, written independently of the adapters: createdAt desc, then id desc. */
const newestFirst = Order.reverse(Order.combine(
  Order.mapInput(Order.number, (r: FileRecord) => DateTime.toEpochMillis(r.createdAt)),
  Order.mapInput(Order.string, (r: FileRecord) => r.id)
))

const limitsArb = fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 10 })

// ---------------------------------------------------------------- helpers

type Repository = FileRepository["Type"]

/** Deletes every record, through the port, so each test starts from an empty table. */
const clear = (repo: Repository): Effect.Effect<void, unknown> =>
  Effect.flatMap(repo.list({ limit: 1000, after: Option.none() }), (page) =>
    page.items.length === 0
      ? Effect.void
      : Effect.zipRight(Effect.forEach(page.items, (r) => repo.delete(r.id), { discard: true }), clear(repo)))

/**
 * Every page from the start, with limits taken in turn from `limits`; checks each
 * page's shape, and gives up after `maxPages` (a cursor that does not advance).
 */
const pageThrough = (
  repo: Repository,
  limits: ReadonlyArray<number>,
  maxPages: number,
  between: (cursor: FileCursor) => Effect.Effect<void, unknown> = () => Effect.void
) =>
  Effect.gen(function*() {
    const seen: Array<FileRecord> = []
    let after = Option.none<FileCursor>()
    for (let page = 0;; page++) {
      expect(page, "more pages than records").toBeLessThan(maxPages)
      const limit = limits[page % limits.length] ?? 1
      const result = yield* repo.list({ limit, after })
      expect(result.items.length).toBeLessThanOrEqual(limit)
      seen.push(...result.items)
      if (Option.isNone(result.nextCursor)) return seen
      // A cursor only when more follows, so a page with a cursor is full.
      expect(result.items.length).toBe(limit)
      const last = result.items[result.items.length - 1]
      expect(result.nextCursor.value).toEqual({ createdAt: last?.createdAt, id: last?.id })
      after = result.nextCursor
      yield* between(result.nextCursor.value)
    }
  })

// ---------------------------------------------------------------- the contract

const contract = (name: string, layer: Layer.Layer<FileRepository, unknown>) =>
  itLayer(layer, { timeout: Duration.minutes(2), excludeTestServices: true })(name, (it) => {
    it.effect("insert then find gives back exactly the record", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const injection = makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS, name: "x'); DROP TABLE files;--.txt" })
        const records = [
          makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS + 1, size: 0 }),
          makeRecord({ id: crypto.randomUUID(), createdAtMillis: 1, name: "Grüße, 世界 🌍 é.txt", size: 5 * 1024 ** 3 }),
          injection,
          makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS, name: "$1 \\ \" ' %s ${name}.txt" })
        ]
        yield* Effect.forEach(records, repo.insert, { discard: true })
        for (const record of records) {
          const found = yield* repo.find(record.id)
          expect(found).toEqual(Option.some(record))
          const value = Option.getOrThrow(found)
          expect(value.name).toBe(record.name)
          expect(DateTime.toEpochMillis(value.createdAt)).toBe(DateTime.toEpochMillis(record.createdAt))
        }
        // The injection attempt was stored as a name, and the table is still there.
        expect(yield* repo.find(injection.id)).toEqual(Option.some(injection))
      }))

    it.effect("find of a missing id is none", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        expect(yield* repo.find(FileId.make(crypto.randomUUID()))).toEqual(Option.none())
      }))

    it.effect("delete returns the record, then it is gone", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        yield* repo.insert(record)
        expect(yield* repo.delete(record.id)).toEqual(Option.some(record))
        expect(yield* repo.find(record.id)).toEqual(Option.none())
        expect(yield* repo.delete(record.id)).toEqual(Option.none())
      }))

    it.effect("delete of a missing id is none", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        expect(yield* repo.delete(FileId.make(crypto.randomUUID()))).toEqual(Option.none())
      }))

    it.effect("a duplicate id or object key fails with DatabaseUnavailable and changes nothing", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        yield* repo.insert(record)
        const sameId = new FileRecord({ ...newRecord(), id: record.id })
        const sameKey = new FileRecord({ ...newRecord(), objectKey: record.objectKey })
        expect((yield* Effect.flip(repo.insert(sameId)))._tag).toBe("DatabaseUnavailable")
        expect((yield* Effect.flip(repo.insert(sameKey)))._tag).toBe("DatabaseUnavailable")
        expect(yield* repo.find(record.id)).toEqual(Option.some(record))
        expect(yield* repo.find(sameKey.id)).toEqual(Option.none())
      }))

    it.effect("list is newest first, ties broken by id descending", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        const older = makeRecord({ id: "00000000-0000-4000-8000-000000000001", createdAtMillis: BASE_MILLIS - 1 })
        const tieLow = makeRecord({ id: "10000000-0000-4000-8000-000000000000", createdAtMillis: BASE_MILLIS })
        const tieHigh = makeRecord({ id: "f0000000-0000-4000-8000-000000000000", createdAtMillis: BASE_MILLIS })
        const newer = makeRecord({ id: "50000000-0000-4000-8000-000000000000", createdAtMillis: BASE_MILLIS + 1 })
        yield* Effect.forEach([tieLow, older, newer, tieHigh], repo.insert, { discard: true })
        const page = yield* repo.list({ limit: 10, after: Option.none() })
        expect(page.items).toEqual([newer, tieHigh, tieLow, older])
        expect(page.nextCursor).toEqual(Option.none())
        const first = yield* repo.list({ limit: 2, after: Option.none() })
        expect(first.items).toEqual([newer, tieHigh])
        expect(first.nextCursor).toEqual(Option.some({ createdAt: tieHigh.createdAt, id: tieHigh.id }))
        const exact = yield* repo.list({ limit: 4, after: Option.none() })
        expect(exact.nextCursor).toEqual(Option.none())
      }))

    it.effect.prop(
      "paging with any limits yields the whole sorted list, once each",
      { records: recordsArb, limits: limitsArb },
      ({ limits, records }) =>
        Effect.gen(function*() {
          const repo = yield* FileRepository
          yield* clear(repo)
          yield* Effect.forEach(records, repo.insert, { discard: true })
          const seen = yield* pageThrough(repo, limits, records.length + 1)
          expect(seen).toEqual(Arr.sort(records, newestFirst))
        }),
      { fastCheck: { numRuns: 25 } }
    )

    it.effect.prop(
      "pages are stable while newer records arrive between fetches",
      { records: recordsArb, limits: limitsArb },
      ({ limits, records }) =>
        Effect.gen(function*() {
          const repo = yield* FileRepository
          yield* clear(repo)
          yield* Effect.forEach(records, repo.insert, { discard: true })
          let arrivals = 0
          const seen = yield* pageThrough(repo, limits, records.length + 1, (cursor) =>
            Effect.gen(function*() {
              arrivals++
              // Newer than everything, and a tie with the cursor that sorts before it.
              yield* repo.insert(newRecord(BASE_MILLIS + 1000 + arrivals))
              const tie = makeRecord({
                id: `ffffffff-ffff-4fff-bfff-${crypto.randomUUID().slice(-12)}`,
                createdAtMillis: DateTime.toEpochMillis(cursor.createdAt)
              })
              if (tie.id > cursor.id) yield* repo.insert(tie)
            }))
          expect(seen).toEqual(Arr.sort(records, newestFirst))
        }),
      { fastCheck: { numRuns: 15 } }
    )

    it.effect("a committed transaction is visible, and returns its value", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const a = newRecord()
        const b = newRecord()
        const result = yield* repo.withTransaction(Effect.as(Effect.zipRight(repo.insert(a), repo.insert(b)), 42))
        expect(result).toBe(42)
        expect(yield* repo.find(a.id)).toEqual(Option.some(a))
        expect(yield* repo.find(b.id)).toEqual(Option.some(b))
      }))

    it.effect("a transaction that fails after an insert leaves no trace", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        const before = yield* repo.list({ limit: 1000, after: Option.none() })
        const result = yield* Effect.either(repo.withTransaction(Effect.zipRight(repo.insert(record), Effect.fail("boom"))))
        expect(result).toEqual(Either.left("boom"))
        expect(yield* repo.find(record.id)).toEqual(Option.none())
        expect(yield* repo.list({ limit: 1000, after: Option.none() })).toEqual(before)
      }))

    it.effect("a transaction that fails rolls back its deletes too", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        yield* repo.insert(record)
        const result = yield* Effect.either(repo.withTransaction(
          Effect.gen(function*() {
            expect(yield* repo.delete(record.id)).toEqual(Option.some(record))
            expect(yield* repo.find(record.id)).toEqual(Option.none())
            return yield* Effect.fail("boom")
          })
        ))
        expect(Either.isLeft(result)).toBe(true)
        expect(yield* repo.find(record.id)).toEqual(Option.some(record))
      }))

    it.effect("an interrupted transaction leaves no trace", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        const inserted = yield* Deferred.make<void>()
        const fiber = yield* Effect.fork(repo.withTransaction(
          Effect.gen(function*() {
            yield* repo.insert(record)
            expect(yield* repo.find(record.id)).toEqual(Option.some(record))
            yield* Deferred.succeed(inserted, undefined)
            return yield* Effect.never
          })
        ))
        yield* Deferred.await(inserted)
        yield* Fiber.interrupt(fiber)
        expect(yield* repo.find(record.id)).toEqual(Option.none())
        // The repository is usable afterwards.
        yield* repo.withTransaction(repo.insert(record))
        expect(yield* repo.find(record.id)).toEqual(Option.some(record))
      }))

    it.effect("a failed inner transaction is undone, the outer one keeps its work", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const outer = newRecord()
        const inner = newRecord()
        const after = newRecord()
        yield* repo.withTransaction(
          Effect.gen(function*() {
            yield* repo.insert(outer)
            const innerResult = yield* Effect.either(
              repo.withTransaction(Effect.zipRight(repo.insert(inner), Effect.fail("inner boom")))
            )
            expect(innerResult).toEqual(Either.left("inner boom"))
            expect(yield* repo.find(inner.id)).toEqual(Option.none())
            yield* repo.insert(after)
          })
        )
        expect(yield* repo.find(outer.id)).toEqual(Option.some(outer))
        expect(yield* repo.find(inner.id)).toEqual(Option.none())
        expect(yield* repo.find(after.id)).toEqual(Option.some(after))
      }))

    it.effect("a committed inner transaction is undone when the outer one fails", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const inner = newRecord()
        const result = yield* Effect.either(repo.withTransaction(
          Effect.zipRight(repo.withTransaction(repo.insert(inner)), Effect.fail("outer boom"))
        ))
        expect(result).toEqual(Either.left("outer boom"))
        expect(yield* repo.find(inner.id)).toEqual(Option.none())
      }))

    it.effect("a transaction whose body swallowed a failed call does not commit", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const existing = newRecord()
        yield* repo.insert(existing)
        const record = newRecord()
        const result = yield* Effect.either(repo.withTransaction(
          Effect.gen(function*() {
            yield* repo.insert(record)
            yield* Effect.ignore(repo.insert(existing))
            return "done"
          })
        ))
        expect(Either.isLeft(result) && result.left._tag).toBe("DatabaseUnavailable")
        expect(yield* repo.find(record.id)).toEqual(Option.none())
      }))

    it.effect("concurrent transactions all commit", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const records = Array.from({ length: 8 }, () => newRecord())
        yield* Effect.forEach(
          records,
          (record) => repo.withTransaction(Effect.zipRight(repo.insert(record), repo.find(record.id))),
          { concurrency: "unbounded", discard: true }
        )
        for (const record of records) expect(yield* repo.find(record.id)).toEqual(Option.some(record))
      }))

    it.effect("ping succeeds", () => Effect.flatMap(FileRepository, (repo) => repo.ping))
  })

contract("MemoryFileRepository", MemoryFileRepository.layer)

contract("PgFileRepository on embedded PGlite", PgFileRepository.layer.pipe(Layer.provide(TestDatabase.embeddedLayer)))

if (Option.isSome(TestDatabase.serverUrl)) {
  contract(
    "PgFileRepository on PostgreSQL",
    PgFileRepository.layer.pipe(Layer.provide(TestDatabase.freshDatabase(TestDatabase.serverUrl.value)))
  )
} else {
  it.skip("PgFileRepository on PostgreSQL (set TEST_DATABASE_URL)", () => {})
}

// ---------------------------------------------------------------- failures

/** A loopback port nothing listens on. */
const closedPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

describe("PgFileRepository when the database is gone", () => {
  it.live("connecting to a closed port fails with DatabaseUnavailable, quickly", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const url = Redacted.make(`postgres://postgres@127.0.0.1:${port}/postgres`)
      const error = yield* Effect.flip(Effect.scoped(Layer.build(PostgresDatabase.layerUrl(url, 1)))).pipe(
        Effect.timeout("3 seconds")
      )
      expect(error._tag).toBe("DatabaseUnavailable")
    }))

  it.scopedLive("every call fails with DatabaseUnavailable, not a defect, once the server is closed", () =>
    Effect.gen(function*() {
      const db = yield* Effect.acquireRelease(Effect.promise(() => PGlite.create()), (db) => Effect.promise(() => db.close()))
      const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0 })
      yield* Effect.promise(() => server.start())
      const port = Number(server.getServerConn().split(":")[1])
      const context = yield* Layer.build(
        PgFileRepository.layer.pipe(
          Layer.provide(TestDatabase.migrated(
            PgClient.layer({ host: "127.0.0.1", port, username: "postgres", maxConnections: 1, connectTimeout: "1 second" })
              .pipe(Layer.mapError((cause) => new DatabaseUnavailable({ operation: "connect", cause })))
          ))
        )
      )
      const repo = Context.get(context, FileRepository)
      yield* repo.ping

      // The server goes away inside a transaction: @effect/sql makes a failed COMMIT a defect.
      const record = newRecord()
      const commitFailure = yield* Effect.flip(repo.withTransaction(
        Effect.zipRight(repo.insert(record), Effect.promise(() => server.stop()))
      )).pipe(Effect.timeout("5 seconds"))
      expect(commitFailure._tag).toBe("DatabaseUnavailable")
      expect(commitFailure.operation).toBe("commit")

      const failures = yield* Effect.all([
        Effect.flip(repo.ping),
        Effect.flip(repo.insert(record)),
        Effect.flip(repo.find(record.id)),
        Effect.flip(repo.list({ limit: 10, after: Option.none() })),
        Effect.flip(repo.delete(record.id)),
        Effect.flip(repo.withTransaction(repo.insert(record)))
      ]).pipe(Effect.timeout("5 seconds"))
      for (const failure of failures) expect(failure._tag).toBe("DatabaseUnavailable")
      expect(failures.map((f) => f.operation)).toEqual(["ping", "insert", "find", "list", "delete", "withTransaction"])
    }))
})

describe("PostgresDatabase.layerEmbedded", () => {
  it.scopedLive("keeps committed records under <dataDirectory>/pglite across restarts", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* Effect.acquireRelease(
        Effect.promise(() => mkdtemp(join(tmpdir(), "tandem-pglite-"))),
        (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
      )
      const repository = PgFileRepository.layer.pipe(
        Layer.provide(TestDatabase.migrated(PostgresDatabase.layerEmbedded(dataDirectory)))
      )
      const record = newRecord()
      yield* Effect.flatMap(FileRepository, (repo) => repo.withTransaction(repo.insert(record))).pipe(
        Effect.provide(repository)
      )
      expect(yield* Effect.promise(() => readdir(join(dataDirectory, "pglite")))).toContain("PG_VERSION")
      const found = yield* Effect.flatMap(FileRepository, (repo) => repo.find(record.id)).pipe(Effect.provide(repository))
      expect(found).toEqual(Option.some(record))
    }), 60_000)
})

describe("TestDatabase.layer", () => {
  it.scopedLive("each build is a separate, migrated database", () =>
    Effect.gen(function*() {
      const repository = PgFileRepository.layer.pipe(Layer.provide(TestDatabase.layer))
      const [first, second] = yield* Effect.all([Layer.build(repository), Layer.build(repository)], {
        concurrency: "unbounded"
      })
      const record = newRecord()
      yield* Context.get(first, FileRepository).insert(record)
      expect(yield* Context.get(first, FileRepository).find(record.id)).toEqual(Option.some(record))
      expect(yield* Context.get(second, FileRepository).find(record.id)).toEqual(Option.none())
    }), 60_000)
})
