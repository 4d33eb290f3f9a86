/**
 * One contract for every FileRepository: memory, embedded PGlite, and real
 * PostgreSQL when TEST_DATABASE_URL is set; the intent protocol's states, the
 * reconciler's locking reads and repair claims. Then how PgFileRepository fails
 * when its database is gone, and the intents migration.
 */
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { SqlError } from "@effect/sql/SqlError"
import { addEqualityTesters, describe, expect, it, layer as itLayer } from "@effect/vitest"
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import {
  Array as Arr,
  Context,
  DateTime,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FastCheck as fc,
  Fiber,
  Layer,
  Option,
  Order,
  Redacted,
  Schedule,
  Scope
} from "effect"
import { readdir } from "node:fs/promises"
import { createServer } from "node:net"
import { join } from "node:path"
import * as EmbeddedDatabase from "../src/adapters/database/EmbeddedDatabase.js"
import * as MemoryFileRepository from "../src/adapters/database/MemoryFileRepository.js"
import CreateFiles from "../src/adapters/database/migrations/0001_create_files.js"
import * as PgFileRepository from "../src/adapters/database/PgFileRepository.js"
import * as PostgresDatabase from "../src/adapters/database/PostgresDatabase.js"
import type { FileCursor } from "../src/domain/FileCursor.js"
import {
  FileId,
  FileName,
  FileRecord,
  LOCAL_OWNER,
  MediaType,
  ObjectKey,
  Owner,
  Sha256Hex
} from "../src/domain/FileRecord.js"
import { IdempotencyKey } from "../src/domain/IdempotencyKey.js"
import { Repair } from "../src/domain/Repair.js"
import type { RepairProblem } from "../src/domain/Repair.js"
import { CommitOutcomeUnknown, DatabaseUnavailable } from "../src/domain/StorageErrors.js"
import type { Intent, ResumableProgress } from "../src/ports/FileRepository.js"
import { FileRepository, noQuota } from "../src/ports/FileRepository.js"

/** What commitPending records: the record's own size and sha256. */
const contentOf = (record: FileRecord) => ({ size: record.size, sha256: record.sha256 })
const unknownContent = { size: 0, sha256: Sha256Hex.make("0".repeat(64)) }
import * as EmbeddedCluster from "./support/EmbeddedCluster.js"
import * as TestDatabase from "./support/TestDatabase.js"

addEqualityTesters()

// ---------------------------------------------------------------- records

const BASE_MILLIS = Date.UTC(2025, 0, 2, 3, 4, 5, 678)

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

/** The owner the contract's records belong to, and another. */
const OWNER = Owner.make("owner-a")
const OTHER = Owner.make("owner-b")

const makeRecord = (fields: {
  readonly id: string
  readonly createdAtMillis: number
  readonly name?: string
  readonly size?: number
  readonly owner?: Owner
}): FileRecord =>
  new FileRecord({
    id: FileId.make(fields.id),
    owner: fields.owner ?? OWNER,
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
      owner: OWNER,
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

const FAR_FUTURE = DateTime.unsafeMake(Date.UTC(3000, 0, 1))

/** A committed file, through the intent protocol. */
const store =
  (repo: Repository) => (record: FileRecord): Effect.Effect<void, DatabaseUnavailable | CommitOutcomeUnknown> =>
    Effect.zipRight(repo.insertPending(record), repo.commitPending(record.id, contentOf(record), noQuota)).pipe(
      Effect.map((committed) => {
        expect(committed, `commitPending(${record.id})`).toBe("Committed")
      })
    )

/** Removes every record, committed or not, through the port, so a test starts from an empty table. */
const clear = (repo: Repository): Effect.Effect<void, unknown> =>
  Effect.gen(function*() {
    const page = yield* repo.list(OWNER, { limit: 1000, after: Option.none() })
    const intents = yield* repo.staleIntents({ before: FAR_FUTURE, limit: 1000 })
    const ids = [...page.items.map((r) => r.id), ...intents.map((i) => i.record.id)]
    if (ids.length === 0) return
    yield* Effect.forEach(ids, repo.remove, { discard: true })
    yield* clear(repo)
  })

const ids = (intents: ReadonlyArray<Intent>) => intents.map((i) => i.record.id)

const makeRepair = (fields: {
  readonly repairedAtMillis: number
  readonly problem?: RepairProblem
  readonly fileId?: string
  readonly action?: string
}): Repair =>
  new Repair({
    objectKey: ObjectKey.make(`files/${crypto.randomUUID()}`),
    fileId: Option.map(Option.fromNullable(fields.fileId), FileId.make),
    problem: fields.problem ?? "orphan-object",
    action: fields.action ?? "deleted the object",
    repairedAt: DateTime.unsafeMake(fields.repairedAtMillis)
  })

/** Whether `fiber` is still running after a pause long enough for any adapter to answer. */
const stillWaiting = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.zipRight(Effect.sleep("200 millis"), Effect.map(Fiber.poll(fiber), Option.isNone))

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
      const result = yield* repo.list(OWNER, { limit, after })
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

interface Sessions {
  /** A call outside a transaction runs while one is open (not PGlite: one connection). */
  readonly besideTransaction: boolean
  /** Two transactions are open at once (real PostgreSQL only: memory ones take turns). */
  readonly concurrentTransactions: boolean
}

const contract = (name: string, layer: Layer.Layer<FileRepository, unknown>, sessions: Sessions) =>
  itLayer(layer, { timeout: Duration.minutes(2), excludeTestServices: true })(name, (it) => {
    // ------------------------------------------------------------ records

    it.effect("a stored record is found exactly as it was given", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const injection = makeRecord({
          id: crypto.randomUUID(),
          createdAtMillis: BASE_MILLIS,
          name: "x'); DROP TABLE files;--.txt"
        })
        const records = [
          makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS + 1, size: 0 }),
          makeRecord({
            id: crypto.randomUUID(),
            createdAtMillis: 1,
            name: "Grüße, 世界 🌍 é.txt",
            size: 5 * 1024 ** 3
          }),
          injection,
          makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS, name: "$1 \\ \" ' %s ${name}.txt" })
        ]
        yield* Effect.forEach(records, store(repo), { discard: true })
        for (const record of records) {
          const found = yield* repo.find(OWNER, record.id)
          expect(found).toEqual(Option.some(record))
          const value = Option.getOrThrow(found)
          expect(value.name).toBe(record.name)
          expect(DateTime.toEpochMillis(value.createdAt)).toBe(DateTime.toEpochMillis(record.createdAt))
        }
        // The injection attempt was stored as a name, and the table is still there.
        expect(yield* repo.find(OWNER, injection.id)).toEqual(Option.some(injection))
      }))

    it.effect("find of a missing id is none", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        expect(yield* repo.find(OWNER, FileId.make(crypto.randomUUID()))).toEqual(Option.none())
      }))

    it.effect("a pending record is invisible to find and list until committed, once", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        const record = newRecord()
        yield* repo.insertPending(record)
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
        expect((yield* repo.list(OWNER, { limit: 10, after: Option.none() })).items).toEqual([])
        expect(yield* repo.commitPending(record.id, contentOf(record), noQuota)).toBe("Committed")
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
        expect((yield* repo.list(OWNER, { limit: 10, after: Option.none() })).items).toEqual([record])
        // Committed already: nothing pending to commit.
        expect(yield* repo.commitPending(record.id, contentOf(record), noQuota)).toBe("Gone")
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
      }))

    it.effect("commitPending is Gone once the intent was removed, and for an unknown id", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        yield* repo.insertPending(record)
        yield* repo.remove(record.id)
        expect(yield* repo.commitPending(record.id, contentOf(record), noQuota)).toBe("Gone")
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
        expect(yield* repo.commitPending(FileId.make(crypto.randomUUID()), unknownContent, noQuota)).toBe("Gone")
      }))

    it.effect("markDeleting returns the file and hides it at once; remove forgets it", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        const record = newRecord()
        const other = newRecord(BASE_MILLIS - 1)
        yield* Effect.forEach([record, other], store(repo), { discard: true })
        expect(yield* repo.markDeleting(OWNER, record.id)).toEqual(Option.some(record))
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
        expect((yield* repo.list(OWNER, { limit: 10, after: Option.none() })).items).toEqual([other])
        // Already deleting: a second delete finds nothing to delete.
        expect(yield* repo.markDeleting(OWNER, record.id)).toEqual(Option.none())
        expect(ids(yield* repo.staleIntents({ before: FAR_FUTURE, limit: 10 }))).toEqual([record.id])
        yield* repo.remove(record.id)
        expect(yield* repo.staleIntents({ before: FAR_FUTURE, limit: 10 })).toEqual([])
        expect(yield* repo.markDeleting(OWNER, record.id)).toEqual(Option.none())
        expect(yield* repo.find(OWNER, other.id)).toEqual(Option.some(other))
      }))

    it.effect("markDeleting is none for a pending or unknown id, and leaves a pending record pending", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const pending = newRecord()
        yield* repo.insertPending(pending)
        expect(yield* repo.markDeleting(OWNER, pending.id)).toEqual(Option.none())
        expect(yield* repo.markDeleting(OWNER, FileId.make(crypto.randomUUID()))).toEqual(Option.none())
        expect(yield* repo.commitPending(pending.id, contentOf(pending), noQuota)).toBe("Committed")
        expect(yield* repo.find(OWNER, pending.id)).toEqual(Option.some(pending))
      }))

    it.effect("remove of an unknown id does nothing", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        yield* store(repo)(record)
        yield* repo.remove(FileId.make(crypto.randomUUID()))
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
      }))

    it.effect("a duplicate id or object key fails with DatabaseUnavailable and changes nothing", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        yield* store(repo)(record)
        const pending = newRecord()
        yield* repo.insertPending(pending)
        const sameId = new FileRecord({ ...newRecord(), id: record.id })
        const sameKey = new FileRecord({ ...newRecord(), objectKey: record.objectKey })
        const samePendingKey = new FileRecord({ ...newRecord(), objectKey: pending.objectKey })
        for (const duplicate of [sameId, sameKey, samePendingKey]) {
          const error = yield* Effect.flip(repo.insertPending(duplicate))
          expect(error._tag).toBe("DatabaseUnavailable")
          expect(error.operation).toBe("insertPending")
        }
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
        expect(yield* repo.commitPending(sameKey.id, contentOf(sameKey), noQuota)).toBe("Gone")
        expect(yield* repo.find(OWNER, sameKey.id)).toEqual(Option.none())
      }))

    // ------------------------------------------------------------ owners and quotas

    it.effect("another owner's file is none to find, absent from its list, and cannot be deleted by it", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        const mine = newRecord()
        const theirs = makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS, owner: OTHER })
        yield* Effect.forEach([mine, theirs], store(repo), { discard: true })
        expect(yield* repo.find(OWNER, theirs.id)).toEqual(Option.none())
        expect(yield* repo.find(OTHER, theirs.id)).toEqual(Option.some(theirs))
        expect((yield* repo.list(OWNER, { limit: 10, after: Option.none() })).items).toEqual([mine])
        expect((yield* repo.list(OTHER, { limit: 10, after: Option.none() })).items).toContainEqual(theirs)
        expect(yield* repo.markDeleting(OWNER, theirs.id)).toEqual(Option.none())
        expect(yield* repo.find(OTHER, theirs.id)).toEqual(Option.some(theirs))
        // A signed link names its owner itself: findAny finds either, and never a pending one.
        expect(yield* repo.findAny(theirs.id)).toEqual(Option.some(theirs))
        expect(yield* repo.findAny(mine.id)).toEqual(Option.some(mine))
        const pending = newRecord()
        yield* repo.insertPending(pending)
        expect(yield* repo.findAny(pending.id)).toEqual(Option.none())
        yield* repo.remove(theirs.id)
      }))

    const freshOwner = () => Owner.make(`quota-${crypto.randomUUID()}`)
    const ownedBy = (owner: Owner, size = 1024) =>
      makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS, owner, size })
    const quota = (limits: { readonly files?: number; readonly bytes?: number }) => ({
      maxFiles: Option.fromNullable(limits.files),
      maxBytes: Option.fromNullable(limits.bytes)
    })

    it.effect("a commit that would pass the owner's file quota is OverQuota and changes nothing", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const owner = freshOwner()
        const [first, second, third] = [ownedBy(owner), ownedBy(owner), ownedBy(owner)]
        for (const record of [first, second, third]) yield* repo.insertPending(record)
        const twoFiles = quota({ files: 2 })
        expect(yield* repo.commitPending(first.id, contentOf(first), twoFiles)).toBe("Committed")
        expect(yield* repo.commitPending(second.id, contentOf(second), twoFiles)).toBe("Committed")
        expect(yield* repo.commitPending(third.id, contentOf(third), twoFiles)).toBe("OverQuota")
        // Still an intent: invisible, and the reconciler's to reclaim.
        expect(yield* repo.find(owner, third.id)).toEqual(Option.none())
        expect(ids(yield* repo.staleIntents({ before: FAR_FUTURE, limit: 1000 }))).toContain(third.id)
        // Another owner's files, and files being deleted, do not count.
        const elsewhere = ownedBy(freshOwner())
        yield* repo.insertPending(elsewhere)
        expect(yield* repo.commitPending(elsewhere.id, contentOf(elsewhere), quota({ files: 1 }))).toBe("Committed")
        yield* repo.markDeleting(owner, first.id)
        expect(yield* repo.commitPending(third.id, contentOf(third), twoFiles)).toBe("Committed")
        expect((yield* repo.list(owner, { limit: 10, after: Option.none() })).items.length).toBe(2)
        for (const record of [first, second, third, elsewhere]) yield* repo.remove(record.id)
      }))

    it.effect("the byte quota counts the committed sizes, up to exactly the limit", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const owner = freshOwner()
        const [big, tooMuch, exact] = [ownedBy(owner, 1024), ownedBy(owner, 1024), ownedBy(owner, 976)]
        for (const record of [big, tooMuch, exact]) yield* repo.insertPending(record)
        const bytes = quota({ bytes: 2000 })
        expect(yield* repo.commitPending(big.id, contentOf(big), bytes)).toBe("Committed")
        expect(yield* repo.commitPending(tooMuch.id, contentOf(tooMuch), bytes)).toBe("OverQuota")
        expect(yield* repo.commitPending(exact.id, contentOf(exact), bytes)).toBe("Committed")
        // The size counted is the one committed, not the one declared with the intent.
        expect(yield* repo.commitPending(tooMuch.id, { ...contentOf(tooMuch), size: 0 }, bytes)).toBe("Committed")
        for (const record of [big, tooMuch, exact]) yield* repo.remove(record.id)
      }))

    it.effect("commits racing for one owner's last places never overshoot the quota", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const owner = freshOwner()
        const records = Array.from({ length: 12 }, () => ownedBy(owner))
        for (const record of records) yield* repo.insertPending(record)
        const fiveFiles = quota({ files: 5 })
        // Half inside a caller's transaction (as the upload workflow commits), half on their own.
        const results = yield* Effect.forEach(records, (record, i) => {
          const commit = repo.commitPending(record.id, contentOf(record), fiveFiles)
          return i % 2 === 0 ? repo.withTransaction(commit) : commit
        }, { concurrency: "unbounded" })
        expect(results.filter((result) => result === "Committed").length).toBe(5)
        expect(results.filter((result) => result === "OverQuota").length).toBe(7)
        expect((yield* repo.list(owner, { limit: 100, after: Option.none() })).items.length).toBe(5)
        for (const record of records) yield* repo.remove(record.id)
      }))

    // ------------------------------------------------------------ idempotency keys

    const DAY = Duration.days(1)
    const keyed = (name: string) => IdempotencyKey.make(`${name}-${crypto.randomUUID()}`)

    it.effect("a free key inserts the intent; the key then finds it in flight, and its file once committed", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const key = keyed("first")
        const record = newRecord()
        expect(yield* repo.insertPendingWithKey(record, key, DAY)).toEqual({ _tag: "Inserted" })
        expect(ids(yield* repo.staleIntents({ before: FAR_FUTURE, limit: 1000 }))).toContain(record.id)
        const retry = newRecord()
        expect(yield* repo.insertPendingWithKey(retry, key, DAY)).toEqual({ _tag: "InFlight" })
        yield* repo.commitPending(record.id, contentOf(record), noQuota)
        expect(yield* repo.insertPendingWithKey(retry, key, DAY)).toEqual({ _tag: "Done", record })
        // The retries inserted nothing.
        expect(ids(yield* repo.staleIntents({ before: FAR_FUTURE, limit: 1000 }))).not.toContain(retry.id)
        expect(yield* repo.find(OWNER, retry.id)).toEqual(Option.none())
        // Keys are per owner: another owner's same key is free.
        const theirs = makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS, owner: OTHER })
        expect(yield* repo.insertPendingWithKey(theirs, key, DAY)).toEqual({ _tag: "Inserted" })
        yield* repo.remove(theirs.id)
      }))

    it.effect("a key is free again once its intent is dropped or its file deleted", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const key = keyed("freed")
        const failed = newRecord()
        yield* repo.insertPendingWithKey(failed, key, DAY)
        // The upload failed (or the reconciler reclaimed it): its intent is removed.
        yield* repo.remove(failed.id)
        const second = newRecord()
        expect(yield* repo.insertPendingWithKey(second, key, DAY)).toEqual({ _tag: "Inserted" })
        yield* repo.commitPending(second.id, contentOf(second), noQuota)
        yield* repo.markDeleting(OWNER, second.id)
        // Being deleted: not a file to return, not yet free.
        expect(yield* repo.insertPendingWithKey(newRecord(), key, DAY)).toEqual({ _tag: "InFlight" })
        yield* repo.remove(second.id)
        const third = newRecord()
        expect(yield* repo.insertPendingWithKey(third, key, DAY)).toEqual({ _tag: "Inserted" })
        yield* repo.remove(third.id)
      }))

    it.effect("a key older than its ttl is free; purging forgets exactly the expired keys", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* repo.purgeIdempotencyKeys(Duration.millis(1))
        const [old, kept] = [keyed("old"), keyed("kept")]
        const first = newRecord()
        yield* repo.insertPendingWithKey(first, old, DAY)
        yield* repo.commitPending(first.id, contentOf(first), noQuota)
        yield* Effect.sleep("50 millis")
        const recent = newRecord()
        yield* repo.insertPendingWithKey(recent, kept, DAY)
        // Within a 30 ms ttl, the first key has expired: a new upload takes it.
        const again = newRecord()
        expect(yield* repo.insertPendingWithKey(again, old, Duration.millis(30))).toEqual({ _tag: "Inserted" })
        yield* repo.remove(again.id)
        yield* repo.insertPendingWithKey(newRecord(), old, DAY).pipe(
          Effect.flatMap((found) =>
            found._tag === "Inserted" ? Effect.void : Effect.dieMessage("expected the key free")
          )
        )
        yield* Effect.sleep("50 millis")
        const still = newRecord()
        yield* repo.insertPendingWithKey(still, keyed("fresh"), DAY)
        // Keys older than 30 ms: `old` (taken again 50 ms ago) and `kept`; not `fresh`.
        expect(yield* repo.purgeIdempotencyKeys(Duration.millis(30))).toBe(2)
        expect(yield* repo.insertPendingWithKey(newRecord(), kept, DAY)).toEqual({ _tag: "Inserted" })
        expect(yield* repo.purgeIdempotencyKeys(DAY)).toBe(0)
        // The files stay: only the keys were forgotten.
        expect(yield* repo.find(OWNER, first.id)).toEqual(Option.some(first))
      }))

    it.effect("uploads racing with one key: exactly one inserts, the others find it in flight", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const key = keyed("race")
        const records = Array.from({ length: 8 }, () => newRecord())
        const results = yield* Effect.forEach(
          records,
          (record) => repo.insertPendingWithKey(record, key, DAY),
          { concurrency: "unbounded" }
        )
        expect(results.filter((r) => r._tag === "Inserted").length).toBe(1)
        expect(results.filter((r) => r._tag === "InFlight").length).toBe(7)
        const intents = ids(yield* repo.staleIntents({ before: FAR_FUTURE, limit: 1000 }))
        expect(records.filter((r) => intents.includes(r.id)).length).toBe(1)
        for (const record of records) yield* repo.remove(record.id)
      }))

    // ------------------------------------------------------------ listing

    it.effect("list is newest first, ties broken by id descending", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        const older = makeRecord({ id: "00000000-0000-4000-8000-000000000001", createdAtMillis: BASE_MILLIS - 1 })
        const tieLow = makeRecord({ id: "10000000-0000-4000-8000-000000000000", createdAtMillis: BASE_MILLIS })
        const tieHigh = makeRecord({ id: "f0000000-0000-4000-8000-000000000000", createdAtMillis: BASE_MILLIS })
        const newer = makeRecord({ id: "50000000-0000-4000-8000-000000000000", createdAtMillis: BASE_MILLIS + 1 })
        yield* Effect.forEach([tieLow, older, newer, tieHigh], store(repo), { discard: true })
        // Intents around them never show.
        yield* repo.insertPending(newRecord(BASE_MILLIS))
        yield* store(repo)(makeRecord({ id: "e0000000-0000-4000-8000-000000000000", createdAtMillis: BASE_MILLIS }))
        yield* repo.markDeleting(OWNER, FileId.make("e0000000-0000-4000-8000-000000000000"))
        const page = yield* repo.list(OWNER, { limit: 10, after: Option.none() })
        expect(page.items).toEqual([newer, tieHigh, tieLow, older])
        expect(page.nextCursor).toEqual(Option.none())
        const first = yield* repo.list(OWNER, { limit: 2, after: Option.none() })
        expect(first.items).toEqual([newer, tieHigh])
        expect(first.nextCursor).toEqual(Option.some({ createdAt: tieHigh.createdAt, id: tieHigh.id }))
        const rest = yield* repo.list(OWNER, { limit: 2, after: first.nextCursor })
        expect(rest.items).toEqual([tieLow, older])
        expect(rest.nextCursor).toEqual(Option.none())
        const exact = yield* repo.list(OWNER, { limit: 4, after: Option.none() })
        expect(exact.nextCursor).toEqual(Option.none())
      }))

    it.effect.prop(
      "paging with any limits yields the whole sorted list, once each",
      { records: recordsArb, limits: limitsArb },
      ({ limits, records }) =>
        Effect.gen(function*() {
          const repo = yield* FileRepository
          yield* clear(repo)
          yield* Effect.forEach(records, store(repo), { discard: true })
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
          yield* Effect.forEach(records, store(repo), { discard: true })
          let arrivals = 0
          const seen = yield* pageThrough(repo, limits, records.length + 1, (cursor) =>
            Effect.gen(function*() {
              arrivals++
              // Newer than everything, and a tie with the cursor that sorts before it.
              yield* store(repo)(newRecord(BASE_MILLIS + 1000 + arrivals))
              const tie = makeRecord({
                id: `ffffffff-ffff-4fff-bfff-${crypto.randomUUID().slice(-12)}`,
                createdAtMillis: DateTime.toEpochMillis(cursor.createdAt)
              })
              if (tie.id > cursor.id) yield* store(repo)(tie)
            }))
          expect(seen).toEqual(Arr.sort(records, newestFirst))
        }),
      { fastCheck: { numRuns: 15 } }
    )

    // ------------------------------------------------------------ intents

    /** The database's clock, once it has moved past `since` (so what comes next is strictly later). */
    const cutoffAfter = (repo: Repository, since: DateTime.Utc) =>
      repo.cutoff(Duration.zero).pipe(Effect.repeat({ until: (at) => DateTime.greaterThan(at, since) }))

    it.effect("staleIntents gives both kinds, at or before `before` by the database's clock, oldest first, within the limit", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        // Two apart from a third in time, the first two in either order.
        const [first, second, third] = [
          newRecord(BASE_MILLIS + 3),
          newRecord(BASE_MILLIS + 1),
          newRecord(BASE_MILLIS + 2)
        ]
        const committed = newRecord(BASE_MILLIS)
        const deleted = newRecord(BASE_MILLIS)
        yield* Effect.forEach([first, second], repo.insertPending, { discard: true })
        yield* Effect.forEach([committed, deleted], store(repo), { discard: true })
        yield* repo.markDeleting(OWNER, deleted.id)
        const all = yield* repo.staleIntents({ before: FAR_FUTURE, limit: 10 })
        const mid = yield* cutoffAfter(
          repo,
          Arr.reduce(all, DateTime.unsafeMake(0), (max, i) => DateTime.max(max, i.since))
        )
        yield* cutoffAfter(repo, mid)
        yield* repo.insertPending(third)

        // Every state timestamp is the database's own: it owes nothing to the record's createdAt.
        for (const intent of all) {
          expect(DateTime.lessThanOrEqualTo(intent.since, mid)).toBe(true)
          expect(DateTime.toEpochMillis(intent.since)).toBeGreaterThan(BASE_MILLIS + 1_000_000)
        }
        expect(all.map((i) => [i.kind, i.record.id]).sort()).toEqual(
          [["delete", deleted.id], ["upload", first.id], ["upload", second.id]].sort()
        )
        // Oldest first, ties by id.
        const order = (intents: ReadonlyArray<Intent>) =>
          intents.every((intent, i) => {
            const previous = intents[i - 1]
            return previous === undefined || DateTime.lessThan(previous.since, intent.since) ||
              (DateTime.Equivalence(previous.since, intent.since) && previous.record.id < intent.record.id)
          })
        const everything = yield* repo.staleIntents({ before: FAR_FUTURE, limit: 10 })
        expect(order(everything)).toBe(true)
        expect(ids(everything).at(-1)).toBe(third.id)
        expect(ids(yield* repo.staleIntents({ before: mid, limit: 10 }))).toEqual(ids(all))
        expect(ids(yield* repo.staleIntents({ before: mid, limit: 1 }))).toEqual(ids(all).slice(0, 1))
        // Committing one takes it out.
        expect(yield* repo.commitPending(first.id, contentOf(first), noQuota)).toBe("Committed")
        expect(ids(yield* repo.staleIntents({ before: mid, limit: 10 }))).not.toContain(first.id)
      }))

    it.effect("a claim takes the oldest stale intents and stamps them: a claimed upload can no longer commit", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        const records = Arr.makeBy(4, (k) => newRecord(BASE_MILLIS + k))
        yield* Effect.forEach(records, repo.insertPending, { discard: true })
        const doomed = newRecord(BASE_MILLIS)
        yield* store(repo)(doomed)
        yield* repo.markDeleting(OWNER, doomed.id)
        const stale = yield* repo.staleIntents({ before: FAR_FUTURE, limit: 10 })
        const before = yield* cutoffAfter(
          repo,
          Arr.reduce(stale, DateTime.unsafeMake(0), (max, i) => DateTime.max(max, i.since))
        )

        const first = yield* repo.claimStaleIntents({ before, limit: 3 })
        expect(ids(first)).toEqual(ids(stale).slice(0, 3))
        // Claimed intents come back as they were: their kind, and since when they were stale.
        expect(first).toEqual(stale.slice(0, 3))
        // The same pass (same `before`) moves on past them; then there is nothing left.
        const second = yield* repo.claimStaleIntents({ before, limit: 3 })
        expect(ids(second)).toEqual(ids(stale).slice(3))
        expect(yield* repo.claimStaleIntents({ before, limit: 3 })).toEqual([])
        // A claimed upload is not committed, nor does it record a multipart upload; a
        // claimed delete stays a delete.
        for (const intent of [...first, ...second]) {
          if (intent.kind === "delete") continue
          expect(yield* repo.recordMultipart(intent.record.id, "upload-id")).toBe(false)
          expect(yield* repo.commitPending(intent.record.id, contentOf(intent.record), noQuota)).toBe("Gone")
          expect(yield* repo.find(OWNER, intent.record.id)).toEqual(Option.none())
        }
        expect([...first, ...second].find((i) => i.record.id === doomed.id)?.kind).toBe("delete")
        // Claimed intents are still intents, stamped with their claim: stale again once the grace has passed.
        const after = yield* repo.staleIntents({ before: FAR_FUTURE, limit: 10 })
        expect(ids(after).sort()).toEqual(ids(stale).sort())
        for (const intent of after) expect(DateTime.greaterThan(intent.since, before)).toBe(true)
        const later = yield* cutoffAfter(
          repo,
          Arr.reduce(after, DateTime.unsafeMake(0), (max, i) => DateTime.max(max, i.since))
        )
        expect(ids(yield* repo.claimStaleIntents({ before: later, limit: 10 })).sort()).toEqual(ids(stale).sort())
      }))

    it.effect("an intent whose commit is under way is not claimed; once committed it is no intent", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        const record = newRecord()
        yield* repo.insertPending(record)
        const before = yield* cutoffAfter(
          repo,
          (yield* repo.staleIntents({ before: FAR_FUTURE, limit: 1 }))[0]?.since ?? FAR_FUTURE
        )
        const holding = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const committer = yield* Effect.fork(repo.withTransaction(
          Effect.gen(function*() {
            const done = yield* repo.commitPending(record.id, contentOf(record), noQuota)
            yield* Deferred.succeed(holding, undefined)
            yield* Deferred.await(finish)
            return done
          })
        ))
        yield* Deferred.await(holding)
        if (sessions.besideTransaction) expect(yield* repo.claimStaleIntents({ before, limit: 10 })).toEqual([])
        yield* Deferred.succeed(finish, undefined)
        expect(yield* Fiber.join(committer)).toBe("Committed")
        expect(yield* repo.claimStaleIntents({ before, limit: 10 })).toEqual([])
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
      }))

    if (sessions.concurrentTransactions) {
      it.effect("claims made at once by several replicas take disjoint intents", () =>
        Effect.gen(function*() {
          const repo = yield* FileRepository
          yield* clear(repo)
          const records = Arr.makeBy(12, (k) => newRecord(BASE_MILLIS + k))
          yield* Effect.forEach(records, repo.insertPending, { discard: true })
          const stale = yield* repo.staleIntents({ before: FAR_FUTURE, limit: 100 })
          const before = yield* cutoffAfter(
            repo,
            Arr.reduce(stale, DateTime.unsafeMake(0), (max, i) => DateTime.max(max, i.since))
          )
          const claims = yield* Effect.all(Arr.makeBy(4, () => repo.claimStaleIntents({ before, limit: 5 })), {
            concurrency: "unbounded"
          })
          const claimed = claims.flatMap(ids)
          expect(new Set(claimed).size).toBe(claimed.length)
          expect([...claimed].sort()).toEqual(records.map((r) => r.id).sort())
        }))
    }

    it.effect("insertCommitted records a whole file at once; a taken id or key is refused and changes nothing", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        const record = newRecord()
        expect(yield* repo.insertCommitted(record)).toBe(true)
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
        expect(yield* repo.insertCommitted(record)).toBe(false)
        expect(yield* repo.insertCommitted(new FileRecord({ ...newRecord(), objectKey: record.objectKey }))).toBe(false)
        expect((yield* repo.list(OWNER, { limit: 10, after: Option.none() })).items).toEqual([record])
      }))

    it.effect("the store binding is none at first, then the last one bound", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const before = yield* repo.binding
        yield* repo.bind("binding-a")
        expect(yield* repo.binding).toEqual(Option.some("binding-a"))
        yield* repo.bind("binding-b")
        expect(yield* repo.binding).toEqual(Option.some("binding-b"))
        expect(Option.isNone(before) || before.value.startsWith("binding-")).toBe(true)
      }))

    it.effect("unknownKeys gives exactly the keys no record names, in any state", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const [committed, pending, deleting, removed] = Arr.makeBy(4, () => newRecord())
        if (committed === undefined || pending === undefined || deleting === undefined || removed === undefined) {
          return expect.unreachable()
        }
        yield* Effect.forEach([committed, deleting, removed], store(repo), { discard: true })
        yield* repo.insertPending(pending)
        yield* repo.markDeleting(OWNER, deleting.id)
        yield* repo.remove(removed.id)
        const stranger = ObjectKey.make(`files/${crypto.randomUUID()}`)
        const lookalikes = [
          ObjectKey.make(committed.objectKey.toUpperCase()),
          ObjectKey.make(`${committed.objectKey} `),
          ObjectKey.make(`${pending.objectKey}x`),
          ObjectKey.make("files/%"),
          ObjectKey.make("files/'; DROP TABLE files;--")
        ]
        const keys = [
          committed.objectKey,
          stranger,
          pending.objectKey,
          removed.objectKey,
          deleting.objectKey,
          ...lookalikes
        ]
        expect(yield* repo.unknownKeys(keys)).toEqual([stranger, removed.objectKey, ...lookalikes])
        expect(yield* repo.unknownKeys([committed.objectKey, pending.objectKey, deleting.objectKey])).toEqual([])
        expect(yield* repo.unknownKeys([])).toEqual([])
        expect(yield* repo.find(OWNER, committed.id)).toEqual(Option.some(committed))
      }))

    // ------------------------------------------------------------ repairs

    it.effect("recordRepair claims a key once: the second repair of it is refused and not logged", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const first = makeRepair({
          repairedAtMillis: BASE_MILLIS,
          problem: "abandoned-upload",
          fileId: crypto.randomUUID()
        })
        const again = new Repair({ ...makeRepair({ repairedAtMillis: BASE_MILLIS + 1 }), objectKey: first.objectKey })
        expect(yield* repo.recordRepair(first)).toBe(true)
        expect(yield* repo.recordRepair(again)).toBe(false)
        expect(yield* repo.recordRepair(first)).toBe(false)
        const logged = (yield* repo.repairs(1000)).filter((r) => r.objectKey === first.objectKey)
        expect(logged).toEqual([first])
      }))

    it.effect("a claim made in a rolled-back transaction is released", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const repair = makeRepair({ repairedAtMillis: BASE_MILLIS, problem: "unfinished-delete" })
        const result = yield* Effect.either(repo.withTransaction(
          Effect.zipRight(
            Effect.map(repo.recordRepair(repair), (claimed) => expect(claimed).toBe(true)),
            Effect.fail("crash")
          )
        ))
        expect(result).toEqual(Either.left("crash"))
        expect((yield* repo.repairs(1000)).filter((r) => r.objectKey === repair.objectKey)).toEqual([])
        expect(yield* repo.recordRepair(repair)).toBe(true)
      }))

    it.effect("a claim inside a transaction holds until it ends: another claimant waits, then is refused", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const repair = makeRepair({ repairedAtMillis: BASE_MILLIS })
        const claimed = yield* Deferred.make<boolean>()
        const finish = yield* Deferred.make<void>()
        const first = yield* Effect.fork(repo.withTransaction(
          Effect.flatMap(
            repo.recordRepair(repair),
            (ok) => Effect.zipRight(Deferred.succeed(claimed, ok), Deferred.await(finish))
          )
        ))
        expect(yield* Deferred.await(claimed)).toBe(true)
        const second = yield* Effect.fork(repo.recordRepair(new Repair({ ...repair, action: "second" })))
        expect(yield* stillWaiting(second)).toBe(true)
        yield* Deferred.succeed(finish, undefined)
        yield* Fiber.join(first)
        expect(yield* Fiber.join(second)).toBe(false)
        expect((yield* repo.repairs(1000)).filter((r) => r.objectKey === repair.objectKey)).toEqual([repair])
      }))

    it.effect("a claimant waiting on a transaction that rolls back gets the key", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const repair = makeRepair({ repairedAtMillis: BASE_MILLIS })
        const claimed = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const first = yield* Effect.fork(Effect.either(repo.withTransaction(
          Effect.zipRight(
            Effect.zipRight(repo.recordRepair(repair), Deferred.succeed(claimed, undefined)),
            Effect.zipRight(Deferred.await(finish), Effect.fail("crash"))
          )
        )))
        yield* Deferred.await(claimed)
        const mine = new Repair({ ...repair, action: "second" })
        const second = yield* Effect.fork(repo.recordRepair(mine))
        expect(yield* stillWaiting(second)).toBe(true)
        yield* Deferred.succeed(finish, undefined)
        expect(yield* Fiber.join(first)).toEqual(Either.left("crash"))
        expect(yield* Fiber.join(second)).toBe(true)
        expect((yield* repo.repairs(1000)).filter((r) => r.objectKey === repair.objectKey)).toEqual([mine])
      }))

    it.effect("repairs lists the log newest first, ties by insertion, within the limit", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        // Later than anything other tests log, so these head the log.
        const at = (year: number) => Date.UTC(year, 0, 1)
        const oldest = makeRepair({
          repairedAtMillis: at(2990),
          problem: "abandoned-upload",
          fileId: crypto.randomUUID()
        })
        const newest = makeRepair({
          repairedAtMillis: at(2992),
          problem: "unfinished-delete",
          fileId: crypto.randomUUID()
        })
        const tieFirst = makeRepair({ repairedAtMillis: at(2991), action: "deleted the object (1)" })
        const tieSecond = makeRepair({ repairedAtMillis: at(2991), action: "deleted the object (2)" })
        for (const repair of [tieFirst, newest, oldest, tieSecond]) expect(yield* repo.recordRepair(repair)).toBe(true)
        expect(yield* repo.repairs(4)).toEqual([newest, tieSecond, tieFirst, oldest])
        expect(yield* repo.repairs(2)).toEqual([newest, tieSecond])
        const [head] = yield* repo.repairs(1)
        expect(head?.fileId).toEqual(newest.fileId)
        expect(Option.isSome(newest.fileId)).toBe(true)
      }))

    // ------------------------------------------------------------ transactions

    it.effect("a committed transaction is visible, and returns its value", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const a = newRecord()
        const b = newRecord()
        const result = yield* repo.withTransaction(Effect.as(Effect.zipRight(store(repo)(a), store(repo)(b)), 42))
        expect(result).toBe(42)
        expect(yield* repo.find(OWNER, a.id)).toEqual(Option.some(a))
        expect(yield* repo.find(OWNER, b.id)).toEqual(Option.some(b))
      }))

    it.effect("a transaction that fails after an insert leaves no trace", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        const before = yield* repo.list(OWNER, { limit: 1000, after: Option.none() })
        const result = yield* Effect.either(
          repo.withTransaction(Effect.zipRight(store(repo)(record), Effect.fail("boom")))
        )
        expect(result).toEqual(Either.left("boom"))
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
        expect(yield* repo.commitPending(record.id, contentOf(record), noQuota)).toBe("Gone")
        expect(yield* repo.list(OWNER, { limit: 1000, after: Option.none() })).toEqual(before)
      }))

    it.effect("a transaction that fails rolls back its deletes too", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        yield* store(repo)(record)
        const result = yield* Effect.either(repo.withTransaction(
          Effect.gen(function*() {
            expect(yield* repo.markDeleting(OWNER, record.id)).toEqual(Option.some(record))
            expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
            yield* repo.remove(record.id)
            return yield* Effect.fail("boom")
          })
        ))
        expect(Either.isLeft(result)).toBe(true)
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
      }))

    it.effect("an interrupted transaction leaves no trace", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = newRecord()
        const inserted = yield* Deferred.make<void>()
        const fiber = yield* Effect.fork(repo.withTransaction(
          Effect.gen(function*() {
            yield* store(repo)(record)
            expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
            yield* Deferred.succeed(inserted, undefined)
            return yield* Effect.never
          })
        ))
        yield* Deferred.await(inserted)
        yield* Fiber.interrupt(fiber)
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
        // The repository is usable afterwards.
        yield* repo.withTransaction(store(repo)(record))
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
      }))

    it.effect("a failed inner transaction is undone, the outer one keeps its work", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const outer = newRecord()
        const inner = newRecord()
        const after = newRecord()
        yield* repo.withTransaction(
          Effect.gen(function*() {
            yield* store(repo)(outer)
            const innerResult = yield* Effect.either(
              repo.withTransaction(Effect.zipRight(store(repo)(inner), Effect.fail("inner boom")))
            )
            expect(innerResult).toEqual(Either.left("inner boom"))
            expect(yield* repo.find(OWNER, inner.id)).toEqual(Option.none())
            yield* store(repo)(after)
          })
        )
        expect(yield* repo.find(OWNER, outer.id)).toEqual(Option.some(outer))
        expect(yield* repo.find(OWNER, inner.id)).toEqual(Option.none())
        expect(yield* repo.find(OWNER, after.id)).toEqual(Option.some(after))
      }))

    it.effect("a committed inner transaction is undone when the outer one fails", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const inner = newRecord()
        const result = yield* Effect.either(repo.withTransaction(
          Effect.zipRight(repo.withTransaction(store(repo)(inner)), Effect.fail("outer boom"))
        ))
        expect(result).toEqual(Either.left("outer boom"))
        expect(yield* repo.find(OWNER, inner.id)).toEqual(Option.none())
      }))

    it.effect("a transaction whose body swallowed a failed call does not commit", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const existing = newRecord()
        yield* store(repo)(existing)
        const record = newRecord()
        const result = yield* Effect.either(repo.withTransaction(
          Effect.gen(function*() {
            yield* store(repo)(record)
            yield* Effect.ignore(repo.insertPending(existing))
            return "done"
          })
        ))
        expect(Either.isLeft(result) && result.left._tag).toBe("DatabaseUnavailable")
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
      }))

    it.effect("concurrent transactions all commit", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const records = Array.from({ length: 8 }, () => newRecord())
        yield* Effect.forEach(
          records,
          (record) => repo.withTransaction(Effect.zipRight(store(repo)(record), repo.find(OWNER, record.id))),
          { concurrency: "unbounded", discard: true }
        )
        for (const record of records) expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
      }))

    // ------------------------------------------------------------ resumable uploads
    // The layer is built without test services, so these run on real time: expiry is by
    // the database's clock, which a TestClock would not move.

    const HOUR = Duration.hours(1)
    const bytesOf = (...values: ReadonlyArray<number>) => Uint8Array.from(values)
    /** A tail's bytes, whatever chunks an adapter keeps them in. */
    const joined = (chunks: ReadonlyArray<Uint8Array>) => hex(Buffer.concat(chunks))

    const startResumable = (
      repo: Repository,
      options: { readonly record?: FileRecord; readonly expiresIn?: Duration.Duration; readonly partSize?: number } = {}
    ) => {
      const record = options.record ?? newRecord()
      return Effect.as(
        repo.insertResumable(record, {
          length: record.size,
          partSize: options.partSize ?? 5 * 1024 * 1024,
          check: bytesOf(0xc0),
          expiresIn: options.expiresIn ?? HOUR
        }),
        record
      )
    }

    const progress = (fields: {
      readonly from: number
      readonly to: number
      readonly tail?: Uint8Array
      readonly parts?: ReadonlyArray<string>
      readonly check?: Uint8Array
      readonly expiresIn?: Duration.Duration
    }): ResumableProgress => ({
      from: fields.from,
      to: fields.to,
      tail: fields.tail ?? new Uint8Array(0),
      parts: fields.parts ?? [],
      check: fields.check ?? bytesOf(fields.to & 0xff),
      expiresIn: fields.expiresIn ?? HOUR
    })

    const found = (repo: Repository, id: FileId, owner: Owner = OWNER) =>
      Effect.map(repo.findResumable(owner, id), (upload) => {
        expect(Option.isSome(upload), `findResumable(${id})`).toBe(true)
        return Option.getOrThrow(upload)
      })

    /** Waits until the database's clock is past `instant`. */
    const waitPast = (repo: Repository, instant: DateTime.Utc) =>
      repo.cutoff(Duration.zero).pipe(
        Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (at) => DateTime.greaterThan(at, instant) })
      )

    it.effect("a resumable upload starts at offset 0, with no parts and an empty tail; it is no file yet", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const before = yield* repo.cutoff(Duration.zero)
        const record = yield* startResumable(repo, { partSize: 8 * 1024 * 1024 })
        const after = yield* repo.cutoff(Duration.zero)
        const upload = yield* found(repo, record.id)
        expect(upload.record).toEqual(record)
        expect(upload.length).toBe(record.size)
        expect(upload.offset).toBe(0)
        expect(upload.partSize).toBe(8 * 1024 * 1024)
        expect(upload.parts).toEqual([])
        expect(upload.multipartUploadId).toEqual(Option.none())
        expect(hex(upload.check)).toBe("c0")
        // It expires `expiresIn` after it was inserted, by the database's clock.
        expect(DateTime.greaterThanOrEqualTo(upload.expiresAt, DateTime.addDuration(before, HOUR))).toBe(true)
        expect(DateTime.lessThanOrEqualTo(upload.expiresAt, DateTime.addDuration(after, HOUR))).toBe(true)
        expect(yield* repo.resumableTail(record.id)).toEqual([])
        // A pending intent: no file to find or list.
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
        expect(yield* repo.findAny(record.id)).toEqual(Option.none())
        // The multipart upload it records is the upload's.
        expect(yield* repo.recordMultipart(record.id, "resumable-upload-id")).toBe(true)
        expect((yield* found(repo, record.id)).multipartUploadId).toEqual(Option.some("resumable-upload-id"))
        yield* repo.remove(record.id)
      }))

    it.effect("findResumable is none for another owner's upload, an unknown id, and a plain pending intent", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = yield* startResumable(repo)
        expect(yield* repo.findResumable(OTHER, record.id)).toEqual(Option.none())
        expect(yield* repo.findResumable(OWNER, FileId.make(crypto.randomUUID()))).toEqual(Option.none())
        const theirs = yield* startResumable(repo, {
          record: makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS, owner: OTHER })
        })
        expect(yield* repo.findResumable(OWNER, theirs.id)).toEqual(Option.none())
        expect((yield* found(repo, theirs.id, OTHER)).record).toEqual(theirs)
        const plain = newRecord()
        yield* repo.insertPending(plain)
        expect(yield* repo.findResumable(OWNER, plain.id)).toEqual(Option.none())
        expect((yield* found(repo, record.id)).record).toEqual(record)
        for (const r of [record, theirs, plain]) yield* repo.remove(r.id)
      }))

    it.effect("an advance from any offset but the upload's is refused and changes nothing", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = yield* startResumable(repo)
        const start = yield* found(repo, record.id)
        const wrong = (from: number) =>
          repo.advanceResumable(
            record.id,
            progress({ from, to: from + 2, tail: bytesOf(9, 9), parts: ["r-wrong"], expiresIn: Duration.days(2) })
          )
        expect(yield* wrong(1)).toBe(false)
        expect(yield* found(repo, record.id)).toEqual(start)
        expect(yield* repo.resumableTail(record.id)).toEqual([])
        expect(yield* repo.advanceResumable(record.id, progress({ from: 0, to: 3, tail: bytesOf(1, 2, 3) }))).toBe(true)
        const advanced = yield* found(repo, record.id)
        // From the old offset (a replay), from before it, from past it: all refused.
        for (const from of [0, 2, 4]) expect(yield* wrong(from)).toBe(false)
        expect(yield* found(repo, record.id)).toEqual(advanced)
        expect(advanced.offset).toBe(3)
        expect(advanced.parts).toEqual([])
        expect(joined(yield* repo.resumableTail(record.id))).toBe(hex(bytesOf(1, 2, 3)))
        // An unknown id is refused too.
        expect(yield* repo.advanceResumable(FileId.make(crypto.randomUUID()), progress({ from: 0, to: 1 }))).toBe(
          false
        )
        yield* repo.remove(record.id)
      }))

    it.effect("advances append to the tail in order; the check and the expiry move with them", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = yield* startResumable(repo)
        const inserted = yield* found(repo, record.id)
        expect(
          yield* repo.advanceResumable(
            record.id,
            progress({ from: 0, to: 3, tail: bytesOf(1, 2, 3), check: bytesOf(7) })
          )
        ).toBe(true)
        const first = yield* found(repo, record.id)
        expect(first.offset).toBe(3)
        expect(hex(first.check)).toBe("07")
        expect(joined(yield* repo.resumableTail(record.id))).toBe(hex(bytesOf(1, 2, 3)))
        const now = yield* repo.cutoff(Duration.zero)
        expect(
          yield* repo.advanceResumable(
            record.id,
            progress({ from: 3, to: 5, tail: bytesOf(4, 5), check: bytesOf(8, 8), expiresIn: Duration.days(1) })
          )
        ).toBe(true)
        const second = yield* found(repo, record.id)
        expect(second.offset).toBe(5)
        expect(hex(second.check)).toBe("0808")
        expect(second.parts).toEqual([])
        expect(joined(yield* repo.resumableTail(record.id))).toBe(hex(bytesOf(1, 2, 3, 4, 5)))
        // A day after this step, not an hour after the insert.
        expect(DateTime.greaterThanOrEqualTo(second.expiresAt, DateTime.addDuration(now, Duration.days(1)))).toBe(true)
        expect(DateTime.greaterThan(second.expiresAt, inserted.expiresAt)).toBe(true)
        // What did not move stays.
        expect(second.record).toEqual(record)
        expect([second.length, second.partSize]).toEqual([inserted.length, inserted.partSize])
        yield* repo.remove(record.id)
      }))

    it.effect("an advance with parts appends their receipts and empties the tail before appending to it", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        // Parts of 4 bytes: the repository keeps what it is told, whatever the size.
        const record = yield* startResumable(repo, { partSize: 4 })
        const advance = (from: number, to: number, tail: ReadonlyArray<number>, parts: ReadonlyArray<string> = []) =>
          Effect.map(
            repo.advanceResumable(record.id, progress({ from, to, tail: Uint8Array.from(tail), parts })),
            (ok) => expect(ok, `advance ${from} → ${to}`).toBe(true)
          )
        const state = Effect.zip(found(repo, record.id), repo.resumableTail(record.id))
        yield* advance(0, 3, [1, 2, 3])
        // Part 1 is bytes [0, 4): the tail is what follows it.
        yield* advance(3, 6, [5, 6], ["r1"])
        let [upload, tail] = yield* state
        expect([upload.offset, upload.parts, joined(tail)]).toEqual([6, ["r1"], hex(bytesOf(5, 6))])
        yield* advance(6, 9, [7, 8, 9])
        ;[upload, tail] = yield* state
        expect([upload.offset, upload.parts, joined(tail)]).toEqual([9, ["r1"], hex(bytesOf(5, 6, 7, 8, 9))])
        yield* advance(9, 13, [13], ["r2", "r3"])
        ;[upload, tail] = yield* state
        expect([upload.offset, upload.parts, joined(tail)]).toEqual([13, ["r1", "r2", "r3"], hex(bytesOf(13))])
        // A part that ends exactly at the offset leaves the tail empty.
        yield* advance(13, 16, [], ["r4"])
        ;[upload, tail] = yield* state
        expect([upload.offset, upload.parts, joined(tail)]).toEqual([16, ["r1", "r2", "r3", "r4"], ""])
        yield* repo.remove(record.id)
      }))

    it.effect("advances racing from one offset: exactly one moves it", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = yield* startResumable(repo)
        const results = yield* Effect.forEach(
          Arr.makeBy(8, (k) => k + 1),
          (k) => repo.advanceResumable(record.id, progress({ from: 0, to: k, tail: new Uint8Array(k).fill(k) })),
          { concurrency: "unbounded" }
        )
        expect(results.filter((ok) => ok).length).toBe(1)
        const winner = results.indexOf(true) + 1
        expect((yield* found(repo, record.id)).offset).toBe(winner)
        expect(joined(yield* repo.resumableTail(record.id))).toBe(hex(new Uint8Array(winner).fill(winner)))
        yield* repo.remove(record.id)
      }))

    it.effect("an expired upload is neither found nor advanced and is stale; a live one is never stale, however old", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        yield* clear(repo)
        const live = yield* startResumable(repo)
        const plain = newRecord()
        yield* repo.insertPending(plain)
        const expiring = yield* startResumable(repo, { expiresIn: Duration.seconds(1) })
        const inserted = yield* repo.cutoff(Duration.zero)
        expect((yield* found(repo, expiring.id)).offset).toBe(0)
        yield* waitPast(repo, DateTime.addDuration(inserted, Duration.seconds(1)))
        const before = yield* repo.cutoff(Duration.zero)

        expect(yield* repo.findResumable(OWNER, expiring.id)).toEqual(Option.none())
        expect(yield* repo.advanceResumable(expiring.id, progress({ from: 0, to: 1, tail: bytesOf(1) }))).toBe(false)
        expect((yield* found(repo, live.id)).record).toEqual(live)

        // The live upload entered its state before `before`, yet it is not stale: only its expiry counts.
        const stale = ids(yield* repo.staleIntents({ before, limit: 1000 }))
        expect(stale).toContain(expiring.id)
        expect(stale).toContain(plain.id)
        expect(stale).not.toContain(live.id)
        expect(ids(yield* repo.staleIntents({ before: FAR_FUTURE, limit: 1000 }))).not.toContain(live.id)
        // An expired upload is stale whatever `before` is; a plain intent still needs `before`.
        const early = ids(yield* repo.staleIntents({ before: DateTime.unsafeMake(BASE_MILLIS), limit: 1000 }))
        expect(early).toContain(expiring.id)
        expect(early).not.toContain(plain.id)

        const claimed = yield* repo.claimStaleIntents({ before, limit: 1000 })
        expect(ids(claimed).sort()).toEqual([expiring.id, plain.id].sort())
        expect(claimed.find((i) => i.record.id === expiring.id)?.kind).toBe("upload")
        // Claimed: it can no longer commit, and is not found again.
        expect(yield* repo.commitPending(expiring.id, contentOf(expiring), noQuota)).toBe("Gone")
        expect(yield* repo.findResumable(OWNER, expiring.id)).toEqual(Option.none())
        // The live one is never claimed, nor its progress lost.
        expect(ids(yield* repo.claimStaleIntents({ before: FAR_FUTURE, limit: 1000 }))).not.toContain(live.id)
        expect(yield* repo.advanceResumable(live.id, progress({ from: 0, to: 1, tail: bytesOf(1) }))).toBe(true)
        expect((yield* found(repo, live.id)).offset).toBe(1)
        for (const r of [live, plain, expiring]) yield* repo.remove(r.id)
      }))

    it.effect("lockResumable holds an upload's lock until its scope closes; a refused attempt frees nothing", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = yield* startResumable(repo)
        const other = yield* startResumable(repo)
        const attempt = (id: FileId) =>
          Effect.scoped(repo.lockResumable(id)).pipe(
            Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "lockResumable waited instead of answering" })
          )
        const holder = yield* Scope.make()
        expect(yield* Scope.extend(repo.lockResumable(record.id), holder)).toBe(true)
        expect(yield* attempt(record.id)).toBe(false)
        // The refused attempt's scope closed: the holder still holds it.
        expect(yield* attempt(record.id)).toBe(false)
        // Another upload's lock is its own.
        expect(yield* attempt(other.id)).toBe(true)
        // The holder can still use the repository.
        expect((yield* found(repo, record.id)).offset).toBe(0)
        yield* Scope.close(holder, Exit.void)
        expect(yield* attempt(record.id)).toBe(true)
        expect(yield* attempt(record.id)).toBe(true)
        for (const r of [record, other]) yield* repo.remove(r.id)
      }))

    it.effect("commitPending and dropResumable in one transaction: the file is committed, the upload gone", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = yield* startResumable(repo)
        expect(yield* repo.advanceResumable(record.id, progress({ from: 0, to: 2, tail: bytesOf(1, 2) }))).toBe(true)
        const committed = yield* repo.withTransaction(Effect.gen(function*() {
          const outcome = yield* repo.commitPending(record.id, contentOf(record), noQuota)
          // Committed: no live upload any more, even before its state is dropped.
          expect(yield* repo.findResumable(OWNER, record.id)).toEqual(Option.none())
          yield* repo.dropResumable(record.id)
          return outcome
        }))
        expect(committed).toBe("Committed")
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.some(record))
        expect(yield* repo.findResumable(OWNER, record.id)).toEqual(Option.none())
        expect(yield* repo.resumableTail(record.id)).toEqual([])
        expect(yield* repo.advanceResumable(record.id, progress({ from: 2, to: 3, tail: bytesOf(3) }))).toBe(false)
        // The committed file is a file like any other.
        expect(ids(yield* repo.staleIntents({ before: FAR_FUTURE, limit: 1000 }))).not.toContain(record.id)
        expect(yield* repo.markDeleting(OWNER, record.id)).toEqual(Option.some(record))
        yield* repo.remove(record.id)
      }))

    it.effect("a transaction that fails after committing and dropping an upload leaves it as it was", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = yield* startResumable(repo, { partSize: 2 })
        expect(
          yield* repo.advanceResumable(record.id, progress({ from: 0, to: 3, tail: bytesOf(3), parts: ["r1"] }))
        ).toBe(true)
        const before = yield* found(repo, record.id)
        const result = yield* Effect.either(repo.withTransaction(Effect.gen(function*() {
          expect(yield* repo.advanceResumable(record.id, progress({ from: 3, to: 4, tail: bytesOf(4) }))).toBe(true)
          expect(yield* repo.commitPending(record.id, contentOf(record), noQuota)).toBe("Committed")
          yield* repo.dropResumable(record.id)
          return yield* Effect.fail("boom")
        })))
        expect(result).toEqual(Either.left("boom"))
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
        expect(yield* found(repo, record.id)).toEqual(before)
        expect(joined(yield* repo.resumableTail(record.id))).toBe(hex(bytesOf(3)))
        yield* repo.remove(record.id)
      }))

    it.effect("remove forgets a resumable upload with its record: not found, its tail empty", () =>
      Effect.gen(function*() {
        const repo = yield* FileRepository
        const record = yield* startResumable(repo)
        expect(yield* repo.advanceResumable(record.id, progress({ from: 0, to: 2, tail: bytesOf(1, 2) }))).toBe(true)
        // Rolled back, a remove changes nothing.
        const result = yield* Effect.either(
          repo.withTransaction(Effect.zipRight(repo.remove(record.id), Effect.fail("boom")))
        )
        expect(result).toEqual(Either.left("boom"))
        expect((yield* found(repo, record.id)).offset).toBe(2)
        expect(joined(yield* repo.resumableTail(record.id))).toBe(hex(bytesOf(1, 2)))
        yield* repo.remove(record.id)
        expect(yield* repo.findResumable(OWNER, record.id)).toEqual(Option.none())
        expect(yield* repo.resumableTail(record.id)).toEqual([])
        expect(yield* repo.advanceResumable(record.id, progress({ from: 2, to: 3, tail: bytesOf(3) }))).toBe(false)
        expect(yield* repo.unknownKeys([record.objectKey])).toEqual([record.objectKey])
        // The id is free again: a new upload under it starts afresh.
        yield* startResumable(repo, { record })
        expect((yield* found(repo, record.id)).offset).toBe(0)
        expect(yield* repo.resumableTail(record.id)).toEqual([])
        yield* repo.remove(record.id)
      }))

    it.effect("ping succeeds", () => Effect.flatMap(FileRepository, (repo) => repo.ping))
  })

contract("MemoryFileRepository", MemoryFileRepository.layer, { besideTransaction: true, concurrentTransactions: false })

contract(
  "PgFileRepository on embedded PGlite",
  PgFileRepository.layer.pipe(Layer.provide(TestDatabase.embeddedLayer)),
  { besideTransaction: false, concurrentTransactions: false }
)

if (Option.isSome(TestDatabase.serverUrl)) {
  contract(
    "PgFileRepository on PostgreSQL",
    PgFileRepository.layer.pipe(Layer.provide(TestDatabase.freshDatabase(TestDatabase.serverUrl.value))),
    { besideTransaction: true, concurrentTransactions: true }
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

/** A PgFileRepository on a PGlite served on a loopback socket, and a way to stop that server. */
const stoppableDatabase = Effect.gen(function*() {
  const db = yield* Effect.acquireRelease(
    Effect.promise(() => PGlite.create()),
    (db) => Effect.promise(() => db.close())
  )
  // Stopped before the database closes, even when the test did not stop it.
  const server = yield* Effect.acquireRelease(
    Effect.promise(async () => {
      const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0 })
      await server.start()
      return server
    }),
    (server) => Effect.ignore(Effect.tryPromise(() => server.stop()))
  )
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
  return { repo, stop: Effect.promise(() => server.stop()) }
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

  it.scopedLive("a COMMIT that gets no answer fails with CommitOutcomeUnknown; then every call fails with DatabaseUnavailable", () =>
    Effect.gen(function*() {
      const { repo, stop } = yield* stoppableDatabase

      // The server goes away inside a transaction: @effect/sql makes a failed COMMIT a defect.
      const record = newRecord()
      const commitFailure = yield* Effect.flip(repo.withTransaction(
        Effect.zipRight(repo.insertPending(record), stop)
      )).pipe(Effect.timeout("5 seconds"))
      expect(commitFailure).toBeInstanceOf(CommitOutcomeUnknown)

      const repair = makeRepair({ repairedAtMillis: BASE_MILLIS })
      const failures = yield* Effect.all([
        Effect.flip(repo.ping),
        Effect.flip(repo.insertPending(record)),
        Effect.flip(repo.commitPending(record.id, contentOf(record), noQuota)),
        Effect.flip(repo.markDeleting(OWNER, record.id)),
        Effect.flip(repo.remove(record.id)),
        Effect.flip(repo.find(OWNER, record.id)),
        Effect.flip(repo.list(OWNER, { limit: 10, after: Option.none() })),
        Effect.flip(repo.staleIntents({ before: FAR_FUTURE, limit: 10 })),
        Effect.flip(repo.claimStaleIntents({ before: FAR_FUTURE, limit: 10 })),
        Effect.flip(repo.unknownKeys([record.objectKey])),
        Effect.flip(repo.recordRepair(repair)),
        Effect.flip(repo.repairs(10)),
        Effect.flip(repo.withTransaction(repo.insertPending(record)))
      ]).pipe(Effect.timeout("5 seconds"))
      for (const failure of failures) expect(failure).toBeInstanceOf(DatabaseUnavailable)
      expect(failures.map((f) => f._tag === "DatabaseUnavailable" ? f.operation : f._tag)).toEqual([
        "ping",
        "insertPending",
        "commitPending",
        "markDeleting",
        "remove",
        "find",
        "list",
        "staleIntents",
        "claimStaleIntents",
        "unknownKeys",
        "recordRepair",
        "repairs",
        "withTransaction"
      ])
    }))

  it.scopedLive("a ROLLBACK that fails is DatabaseUnavailable, never CommitOutcomeUnknown: no COMMIT was sent", () =>
    Effect.gen(function*() {
      const { repo, stop } = yield* stoppableDatabase
      const failure = yield* Effect.flip(repo.withTransaction(
        Effect.zipRight(Effect.zipRight(repo.insertPending(newRecord()), stop), Effect.fail("boom"))
      )).pipe(Effect.timeout("5 seconds"))
      expect(failure).toBeInstanceOf(DatabaseUnavailable)
      expect(failure instanceof DatabaseUnavailable && failure.operation).toBe("rollback")
    }))

  it.scopedLive("a defect of the body is not mistaken for a failed COMMIT", () =>
    Effect.gen(function*() {
      const { repo } = yield* stoppableDatabase
      const defect = new SqlError({ cause: new Error("raised by the body"), message: "body" })
      const exit = yield* Effect.exit(repo.withTransaction(Effect.die(defect)))
      expect(exit).toEqual(Exit.die(defect))
      // The transaction was rolled back and the connection is usable.
      yield* repo.ping
    }))
})

describe("migrations", () => {
  it.scopedLive(
    "0002_intents keeps the files that existed before it, committed; 0006_owners gives them to `local`",
    () =>
      Effect.gen(function*() {
        const database = yield* Layer.build(EmbeddedDatabase.layerEmbeddedMemory)
        yield* PgMigrator.run({ loader: PgMigrator.fromRecord({ "0001_create_files": CreateFiles }) }).pipe(
          Effect.provide(Layer.merge(Layer.succeedContext(database), NodeContext.layer))
        )
        const record = makeRecord({ id: crypto.randomUUID(), createdAtMillis: BASE_MILLIS, owner: LOCAL_OWNER })
        const sql = Context.get(database, SqlClient.SqlClient)
        yield* sql`INSERT INTO files (id, name, size, content_type, sha256, object_key, created_at)
                 VALUES (${record.id}, ${record.name}, ${record.size}, ${record.contentType}, ${record.sha256},
                         ${record.objectKey}, ${DateTime.formatIso(record.createdAt)})`
        const context = yield* Layer.build(
          PgFileRepository.layer.pipe(Layer.provide(TestDatabase.migrated(Layer.succeedContext(database))))
        )
        const repo = Context.get(context, FileRepository)
        expect(yield* repo.find(LOCAL_OWNER, record.id)).toEqual(Option.some(record))
        expect((yield* repo.list(LOCAL_OWNER, { limit: 10, after: Option.none() })).items).toEqual([record])
        expect(yield* repo.find(OWNER, record.id)).toEqual(Option.none())
        expect(yield* repo.staleIntents({ before: FAR_FUTURE, limit: 10 })).toEqual([])
        expect(yield* repo.markDeleting(LOCAL_OWNER, record.id)).toEqual(Option.some(record))
      }),
    60_000
  )
})

describe("EmbeddedDatabase.layerEmbedded", () => {
  it.scopedLive("keeps committed records under <dataDirectory>/postgres across restarts", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* EmbeddedCluster.dataDirectory("embedded")
      const repository = PgFileRepository.layer.pipe(
        Layer.provide(TestDatabase.migrated(EmbeddedDatabase.layerEmbedded(dataDirectory)))
      )
      const record = newRecord()
      yield* Effect.flatMap(FileRepository, (repo) => repo.withTransaction(store(repo)(record))).pipe(
        Effect.provide(repository)
      )
      expect(yield* Effect.promise(() => readdir(join(dataDirectory, "postgres")))).toContain("PG_VERSION")
      const found = yield* Effect.flatMap(FileRepository, (repo) => repo.find(OWNER, record.id)).pipe(
        Effect.provide(repository)
      )
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
      yield* store(Context.get(first, FileRepository))(record)
      expect(yield* Context.get(first, FileRepository).find(OWNER, record.id)).toEqual(Option.some(record))
      expect(yield* Context.get(second, FileRepository).find(OWNER, record.id)).toEqual(Option.none())
    }), 60_000)
})
