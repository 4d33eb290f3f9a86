import {
  Chunk,
  DateTime,
  Deferred,
  type Duration,
  Effect,
  Either,
  Exit,
  FiberRef,
  HashMap,
  HashSet,
  Layer,
  Option,
  Order,
  Ref,
  type Scope
} from "effect"
import type { FileCursor } from "../../domain/FileCursor.js"
import type { ObjectKey } from "../../domain/FileRecord.js"
import { checkedRecord, FileId, type FileRecord, type Owner } from "../../domain/FileRecord.js"
import type { IdempotencyKey } from "../../domain/IdempotencyKey.js"
import { Repair } from "../../domain/Repair.js"
import { DatabaseUnavailable } from "../../domain/StorageErrors.js"
import type {
  FinalContent,
  Intent,
  KeyedInsert,
  ListOptions,
  Quota,
  ResumableProgress,
  ResumableUpload,
  StaleOptions
} from "../../ports/FileRepository.js"
import { atLeastOne, FileRepository, toPage } from "../../ports/FileRepository.js"

/**
 * An in-memory FileRepository that behaves like PgFileRepository. Ids are kept
 * lowercase and compared like PostgreSQL's uuid; ids, object keys and repaired keys
 * are unique.
 *
 * A transaction does not copy the tables: it keeps a log of its own changes, read
 * on top of the shared tables (so, as in READ COMMITTED, it sees others' commits)
 * and replayed onto them atomically on commit. Transactions take turns (a
 * semaphore); calls outside one apply on their own. Like PostgreSQL's row locks,
 * what the running transaction wrote or locked makes outside writes to the same
 * row or key wait until it ends, and outside `lock: true` reads skip it.
 *
 * A resumable upload's state (offset, parts, tail) is part of its row, so it is
 * logged, committed and rolled back with it, and goes when the row is removed (as
 * PostgreSQL's ON DELETE CASCADE). Its lock is beside the tables, as PostgreSQL's
 * session advisory locks are beside transactions: held until the holder's scope closes.
 */

type Status = "pending" | "committed" | "deleting" | "reclaiming"

interface Row {
  readonly record: FileRecord
  readonly status: Status
  readonly since: DateTime.Utc
  readonly multipartUploadId: Option.Option<string>
  /** A resumable upload's state; none for any other record, and once dropped. */
  readonly resumable: Option.Option<Resumable>
}

/** A resumable upload's state beside its row. Its bytes are copies: callers' buffers are never kept. */
interface Resumable {
  readonly length: number
  readonly offset: number
  readonly partSize: number
  readonly parts: ReadonlyArray<string>
  readonly check: Uint8Array
  readonly tail: Chunk.Chunk<Uint8Array>
  readonly expiresAt: DateTime.Utc
}

interface LoggedRepair {
  readonly repair: Repair
  /** Insertion order, like a bigserial: breaks ties between equal repairedAt. */
  readonly seq: number
}

/** An owner's Idempotency-Key and the file it names. */
interface KeyRow {
  readonly fileId: string
  readonly createdAt: DateTime.Utc
}

interface Tables {
  readonly files: HashMap.HashMap<string, Row>
  /** By owner and key (`keyOf`); a file's keys go with it, as PostgreSQL's ON DELETE CASCADE. */
  readonly keys: HashMap.HashMap<string, KeyRow>
  /** The object keys of `files`, for the unique check (PostgreSQL's unique index). */
  readonly objectKeys: HashSet.HashSet<string>
  readonly repairs: HashMap.HashMap<string, LoggedRepair>
}

type Change =
  | { readonly _tag: "Insert"; readonly row: Row }
  | { readonly _tag: "SetStatus"; readonly id: string; readonly status: Status; readonly since: DateTime.Utc }
  | { readonly _tag: "Update"; readonly id: string; readonly update: (row: Row) => Row }
  | { readonly _tag: "Remove"; readonly id: string }
  | { readonly _tag: "InsertRepair"; readonly logged: LoggedRepair }
  | { readonly _tag: "InsertKey"; readonly key: string; readonly row: KeyRow }
  | { readonly _tag: "RemoveKey"; readonly key: string }

interface Shared {
  readonly tables: Tables
  /** Lock keys held by the running transaction. */
  readonly locks: HashSet.HashSet<string>
  /** Completed when the running transaction ends; none when none runs. */
  readonly released: Option.Option<Deferred.Deferred<void>>
}

/** One call: what it reads and changes, given the tables as its caller sees them. */
interface Statement<A> {
  /** Lock keys it writes: outside a transaction it waits while the running one holds any. */
  readonly writes: ReadonlyArray<string>
  readonly run: (tables: Tables, lockedByOther: (key: string) => boolean) => {
    readonly result: A
    readonly changes?: ReadonlyArray<Change>
    /** Lock keys it takes besides `writes` (rows read with `lock: true`). */
    readonly locks?: ReadonlyArray<string>
  }
}

interface Frame {
  readonly parent: Option.Option<Frame>
  readonly log: Ref.Ref<Chunk.Chunk<Change>>
  /** A call failed in this frame: like PostgreSQL's aborted transaction, it cannot commit. */
  readonly failed: Ref.Ref<boolean>
}

const key = (id: string): string => id.toLowerCase()

const fileLock = (id: string) => `file:${key(id)}`
const objectKeyLock = (objectKey: string) => `object:${objectKey}`
const repairLock = (objectKey: string) => `repair:${objectKey}`
const keyOf = (owner: Owner, idempotencyKey: IdempotencyKey) => `${owner}\u0000${idempotencyKey}`
const idempotencyLock = (k: string) => `idempotency:${k}`

const apply = (tables: Tables, change: Change): Either.Either<Tables, string> => {
  switch (change._tag) {
    case "Insert": {
      const { record } = change.row
      if (HashMap.has(tables.files, record.id)) return Either.left(`duplicate id ${record.id}`)
      if (HashSet.has(tables.objectKeys, record.objectKey)) {
        return Either.left(`duplicate object key ${record.objectKey}`)
      }
      return Either.right({
        ...tables,
        files: HashMap.set(tables.files, record.id, change.row),
        objectKeys: HashSet.add(tables.objectKeys, record.objectKey)
      })
    }
    case "SetStatus":
      return Either.right({
        ...tables,
        files: HashMap.modify(
          tables.files,
          change.id,
          (row) => ({ ...row, status: change.status, since: change.since })
        )
      })
    case "Update":
      return Either.right({ ...tables, files: HashMap.modify(tables.files, change.id, change.update) })
    case "Remove":
      return Either.right(Option.match(HashMap.get(tables.files, change.id), {
        onNone: () => tables,
        onSome: (row) => ({
          ...tables,
          files: HashMap.remove(tables.files, change.id),
          objectKeys: HashSet.remove(tables.objectKeys, row.record.objectKey),
          keys: HashMap.filter(tables.keys, (k) => k.fileId !== change.id)
        })
      }))
    case "InsertRepair": {
      const { objectKey } = change.logged.repair
      if (HashMap.has(tables.repairs, objectKey)) return Either.left(`duplicate repaired key ${objectKey}`)
      return Either.right({ ...tables, repairs: HashMap.set(tables.repairs, objectKey, change.logged) })
    }
    case "InsertKey": {
      if (HashMap.has(tables.keys, change.key)) return Either.left("duplicate idempotency key")
      if (!HashMap.has(tables.files, change.row.fileId)) return Either.left("an idempotency key for no file")
      return Either.right({ ...tables, keys: HashMap.set(tables.keys, change.key, change.row) })
    }
    case "RemoveKey":
      return Either.right({ ...tables, keys: HashMap.remove(tables.keys, change.key) })
  }
}

const replay = (tables: Tables, changes: Iterable<Change>): Either.Either<Tables, string> => {
  let current = tables
  for (const change of changes) {
    const next = apply(current, change)
    if (Either.isLeft(next)) return next
    current = next.right
  }
  return Either.right(current)
}

const byId = Order.mapInput(Order.string, (r: FileRecord) => r.id)

const newestFirst: Order.Order<FileRecord> = Order.reverse(
  Order.combine(Order.mapInput(Order.number, (r: FileRecord) => DateTime.toEpochMillis(r.createdAt)), byId)
)

/** Oldest first, then by id: as PostgreSQL orders (status_since, id). */
const oldestIntentFirst: Order.Order<Intent> = Order.combine(
  Order.mapInput(Order.number, (i: Intent) => DateTime.toEpochMillis(i.since)),
  Order.mapInput(byId, (i: Intent) => i.record)
)

const newestRepairFirst: Order.Order<LoggedRepair> = Order.reverse(
  Order.combine(
    Order.mapInput(Order.number, (r: LoggedRepair) => DateTime.toEpochMillis(r.repair.repairedAt)),
    Order.mapInput(Order.number, (r: LoggedRepair) => r.seq)
  )
)

/** (createdAt, id) < (cursor.createdAt, cursor.id), as PostgreSQL compares rows. */
const isAfter = (cursor: FileCursor) => (record: FileRecord): boolean => {
  const millis = DateTime.toEpochMillis(record.createdAt)
  const cursorMillis = DateTime.toEpochMillis(cursor.createdAt)
  return millis < cursorMillis || (millis === cursorMillis && record.id < key(cursor.id))
}

const committed = (tables: Tables, owner: Owner): Array<FileRecord> =>
  Array.from(HashMap.values(tables.files))
    .filter((row) => row.status === "committed" && row.record.owner === owner)
    .map((row) => row.record)

/** A status change of one row of the owner's, when it is in state `from`. */
const transition = (
  owner: Owner,
  id: string,
  from: Status,
  to: Status,
  now: DateTime.Utc
): Statement<Option.Option<FileRecord>> => ({
  writes: [fileLock(id)],
  run: (tables) =>
    Option.match(
      Option.filter(HashMap.get(tables.files, key(id)), (row) => row.status === from && row.record.owner === owner),
      {
        onNone: () => ({ result: Option.none() }),
        onSome: (row) => ({
          result: Option.some(row.record),
          changes: [{ _tag: "SetStatus", id: row.record.id, status: to, since: now }]
        })
      }
    )
})

const read = <A>(run: (tables: Tables) => A): Statement<A> => ({
  writes: [],
  run: (tables) => ({ result: run(tables) })
})

export const layer: Layer.Layer<FileRepository> = Layer.scoped(
  FileRepository,
  Effect.gen(function*() {
    const shared = yield* Ref.make<Shared>({
      tables: { files: HashMap.empty(), keys: HashMap.empty(), objectKeys: HashSet.empty(), repairs: HashMap.empty() },
      locks: HashSet.empty(),
      released: Option.none()
    })
    const currentFrame = yield* FiberRef.make(Option.none<Frame>())
    const turns = yield* Effect.makeSemaphore(1)
    // The database's own clock, as PostgreSQL has now(): the one the layer was built
    // with, whatever clock the calling fiber runs with (a replica's may run ahead).
    const clock = yield* Effect.clock
    const now = Effect.map(clock.currentTimeMillis, (millis) => DateTime.unsafeMake(millis))
    const repairSeq = yield* Ref.make(0)

    /** Every change of the frame and its enclosing ones, oldest first. */
    const changesOf = (frame: Frame): Effect.Effect<Chunk.Chunk<Change>> =>
      Effect.flatMap(Ref.get(frame.log), (own) =>
        Option.match(frame.parent, {
          onNone: () => Effect.succeed(own),
          onSome: (parent) => Effect.map(changesOf(parent), Chunk.appendAll(own))
        }))

    const fail = (operation: string, reason: string) =>
      Effect.zipRight(
        Effect.flatMap(
          FiberRef.get(currentFrame),
          Option.match({
            onNone: () => Effect.void,
            onSome: (frame) => Ref.set(frame.failed, true)
          })
        ),
        Effect.fail(new DatabaseUnavailable({ operation, cause: new Error(reason) }))
      )

    type Outcome<A> =
      | { readonly _tag: "Done"; readonly result: A; readonly changes: ReadonlyArray<Change> }
      | { readonly _tag: "Wait"; readonly released: Deferred.Deferred<void> }
      | { readonly _tag: "Fail"; readonly reason: string }

    /** Runs the statement on `tables`; the tables after its changes, or why they do not apply. */
    const evaluate = <A>(
      statement: Statement<A>,
      tables: Tables,
      lockedByOther: (key: string) => boolean
    ) => {
      const { changes = [], locks = [], result } = statement.run(tables, lockedByOther)
      return Either.map(replay(tables, changes), (next) => ({ result, changes, locks, next }))
    }

    /** Outside a transaction: applies at once, after the running transaction if it holds what it writes. */
    const outside = <A>(operation: string, statement: Statement<A>): Effect.Effect<A, DatabaseUnavailable> =>
      Effect.flatMap(
        Ref.modify(shared, (state): readonly [Outcome<A>, Shared] => {
          if (Option.isSome(state.released) && statement.writes.some((k) => HashSet.has(state.locks, k))) {
            return [{ _tag: "Wait", released: state.released.value }, state]
          }
          return Either.match(evaluate(statement, state.tables, (k) => HashSet.has(state.locks, k)), {
            onLeft: (reason) => [{ _tag: "Fail", reason }, state],
            onRight: ({ changes, next, result }) => [{ _tag: "Done", result, changes }, { ...state, tables: next }]
          })
        }),
        (outcome): Effect.Effect<A, DatabaseUnavailable> => {
          switch (outcome._tag) {
            case "Done":
              return Effect.succeed(outcome.result)
            case "Fail":
              return fail(operation, outcome.reason)
            case "Wait":
              return Effect.zipRight(Deferred.await(outcome.released), outside(operation, statement))
          }
        }
      )

    /** Inside a transaction: on top of its changes; takes its locks and logs its changes. */
    const inside = <A>(
      operation: string,
      frame: Frame,
      statement: Statement<A>
    ): Effect.Effect<A, DatabaseUnavailable> =>
      Effect.flatMap(changesOf(frame), (mine) =>
        Effect.flatMap(
          Ref.modify(shared, (state): readonly [Outcome<A>, Shared] =>
            Either.match(Either.flatMap(replay(state.tables, mine), (view) => evaluate(statement, view, () => false)), {
              // Also when others committed something that clashes with this transaction's changes.
              onLeft: (reason) => [{ _tag: "Fail", reason }, state],
              onRight: ({ changes, locks, result }) => [
                { _tag: "Done", result, changes },
                { ...state, locks: HashSet.union(state.locks, [...statement.writes, ...locks]) }
              ]
            })),
          (outcome): Effect.Effect<A, DatabaseUnavailable> =>
            outcome._tag === "Done"
              ? Effect.as(Ref.update(frame.log, Chunk.appendAll(Chunk.fromIterable(outcome.changes))), outcome.result)
              : fail(operation, outcome._tag === "Fail" ? outcome.reason : "unexpected wait")
        ))

    const execute = <A>(operation: string, statement: Statement<A>): Effect.Effect<A, DatabaseUnavailable> =>
      Effect.flatMap(
        FiberRef.get(currentFrame),
        Option.match({
          onNone: () => outside(operation, statement),
          onSome: (frame) => inside(operation, frame, statement)
        })
      ).pipe(Effect.withSpan(`MemoryFileRepository.${operation}`))

    /** Inserts a pending row, with the resumable state `resumable` makes of its insertion time. */
    const insertPendingRow = (
      operation: string,
      record: FileRecord,
      resumable: (since: DateTime.Utc) => Option.Option<Resumable>
    ) =>
      Effect.flatMap(now, (since) => {
        const row: Row = {
          record: checkedRecord({ ...record, id: FileId.make(key(record.id), true) }),
          status: "pending",
          since,
          multipartUploadId: Option.none(),
          resumable: resumable(since)
        }
        return execute(operation, {
          writes: [fileLock(record.id), objectKeyLock(record.objectKey)],
          run: () => ({ result: undefined, changes: [{ _tag: "Insert", row }] })
        })
      })

    const insertPending = (record: FileRecord) => insertPendingRow("insertPending", record, () => Option.none())

    /** As PostgreSQL's: a live key names its file, and the intent is inserted only when the key was free. */
    const insertPendingWithKey = (record: FileRecord, idempotencyKey: IdempotencyKey, ttl: Duration.Duration) =>
      Effect.flatMap(now, (since) => {
        const id = key(record.id)
        const k = keyOf(record.owner, idempotencyKey)
        const row: Row = {
          record: checkedRecord({ ...record, id: FileId.make(id, true) }),
          status: "pending",
          since,
          multipartUploadId: Option.none(),
          resumable: Option.none()
        }
        return execute("insertPendingWithKey", {
          writes: [fileLock(record.id), objectKeyLock(record.objectKey), idempotencyLock(k)],
          run: (tables): { readonly result: KeyedInsert; readonly changes?: ReadonlyArray<Change> } => {
            const live = Option.filter(
              HashMap.get(tables.keys, k),
              (held) => DateTime.greaterThan(held.createdAt, DateTime.subtractDuration(since, ttl))
            )
            if (Option.isNone(live)) {
              return {
                result: { _tag: "Inserted" },
                changes: [
                  { _tag: "RemoveKey", key: k },
                  { _tag: "Insert", row },
                  { _tag: "InsertKey", key: k, row: { fileId: id, createdAt: since } }
                ]
              }
            }
            const made = Option.filter(HashMap.get(tables.files, live.value.fileId), (r) => r.status === "committed")
            return {
              result: Option.match(made, {
                onNone: () => ({ _tag: "InFlight" }),
                onSome: (r) => ({ _tag: "Done", record: r.record })
              })
            }
          }
        })
      })

    const purgeIdempotencyKeys = (ttl: Duration.Duration) =>
      Effect.flatMap(now, (at) =>
        execute("purgeIdempotencyKeys", {
          writes: [],
          run: (tables) => {
            const expired = Array.from(HashMap.keys(HashMap.filter(
              tables.keys,
              (held) => DateTime.lessThanOrEqualTo(held.createdAt, DateTime.subtractDuration(at, ttl))
            )))
            return {
              result: expired.length,
              changes: expired.map((k): Change => ({ _tag: "RemoveKey", key: k }))
            }
          }
        }))

    /** Changes a pending row; false when there is none. */
    const updatePending = (operation: string, id: FileId, update: (row: Row) => Row) =>
      execute(operation, {
        writes: [fileLock(id)],
        run: (tables) =>
          Option.match(Option.filter(HashMap.get(tables.files, key(id)), (row) => row.status === "pending"), {
            onNone: () => ({ result: false }),
            onSome: (row) => ({ result: true, changes: [{ _tag: "Update", id: row.record.id, update }] })
          })
      })

    const recordMultipart = (id: FileId, uploadId: string) =>
      updatePending("recordMultipart", id, (row) => ({ ...row, multipartUploadId: Option.some(uploadId) }))

    /** As PostgreSQL's: the quota is checked and the file committed in one step, so commits never overshoot. */
    const commitPending = (id: FileId, content: FinalContent, quota: Quota) =>
      Effect.flatMap(now, (now) =>
        execute("commitPending", {
          writes: [fileLock(id)],
          run: (tables) =>
            Option.match(Option.filter(HashMap.get(tables.files, key(id)), (row) => row.status === "pending"), {
              onNone: () => ({ result: "Gone" as const }),
              onSome: (row) => {
                // The owner's files are counted only under a quota: the count walks every row.
                if (Option.isSome(quota.maxFiles) || Option.isSome(quota.maxBytes)) {
                  const owned = committed(tables, row.record.owner)
                  const bytes = owned.reduce((sum, record) => sum + record.size, 0)
                  if (
                    Option.exists(quota.maxFiles, (max) => owned.length + 1 > max) ||
                    Option.exists(quota.maxBytes, (max) => bytes + content.size > max)
                  ) return { result: "OverQuota" as const }
                }
                // A resumable upload's state stays until dropResumable (in the same transaction).
                const update = (pending: Row): Row => ({
                  ...pending,
                  record: checkedRecord({ ...pending.record, size: content.size, sha256: content.sha256 }),
                  status: "committed",
                  since: now,
                  multipartUploadId: Option.none()
                })
                return { result: "Committed" as const, changes: [{ _tag: "Update", id: row.record.id, update }] }
              }
            })
        }))

    const markDeleting = (owner: Owner, id: FileId) =>
      Effect.flatMap(now, (now) => execute("markDeleting", transition(owner, id, "committed", "deleting", now)))

    const remove = (id: FileId) =>
      execute("remove", {
        writes: [fileLock(id)],
        run: () => ({ result: undefined, changes: [{ _tag: "Remove", id: key(id) }] })
      })

    const findAny = (id: FileId) =>
      execute(
        "find",
        read((tables) =>
          Option.filter(HashMap.get(tables.files, key(id)), (row) => row.status === "committed").pipe(
            Option.map((row) => row.record)
          )
        )
      )

    const find = (owner: Owner, id: FileId) =>
      Effect.map(findAny(id), Option.filter((record) => record.owner === owner))

    const list = (owner: Owner, { after, limit }: ListOptions) => {
      const size = atLeastOne(limit)
      return execute(
        "list",
        read((tables) => {
          const all = committed(tables, owner).sort(newestFirst)
          const rest = Option.match(after, { onNone: () => all, onSome: (cursor) => all.filter(isAfter(cursor)) })
          return toPage(rest.slice(0, size + 1), size)
        })
      )
    }

    const cutoff = (olderThan: Duration.Duration) => Effect.map(now, (at) => DateTime.subtractDuration(at, olderThan))

    /**
     * Whether an intent is stale: a pending resumable upload once it expired (at `at`,
     * whatever `before` says); any other intent once it entered its state at or before `before`.
     */
    const isStale = (row: Row, before: DateTime.Utc, at: DateTime.Utc, includeLiveResumable: boolean): boolean => {
      if (row.status === "committed") return false
      if (row.status === "pending" && Option.isSome(row.resumable)) {
        return includeLiveResumable || DateTime.lessThanOrEqualTo(row.resumable.value.expiresAt, at)
      }
      return DateTime.lessThanOrEqualTo(row.since, before)
    }

    /** Stale intents (`isStale`), oldest first, but those `skip` says another transaction holds. */
    const stale = (
      tables: Tables,
      { before, includeLiveResumable = false, limit }: StaleOptions,
      at: DateTime.Utc,
      skip: (key: string) => boolean
    ) =>
      Array.from(HashMap.values(tables.files))
        .filter((row) => isStale(row, before, at, includeLiveResumable) && !skip(fileLock(row.record.id)))
        .map((row): Intent => ({
          kind: row.status === "deleting" ? "delete" : "upload",
          record: row.record,
          since: row.since,
          multipartUploadId: row.multipartUploadId
        }))
        .sort(oldestIntentFirst)
        .slice(0, atLeastOne(limit))

    const staleIntents = (options: StaleOptions) =>
      Effect.flatMap(now, (at) => execute("staleIntents", read((tables) => stale(tables, options, at, () => false))))

    /** As PostgreSQL's UPDATE … FOR UPDATE SKIP LOCKED: rows the running transaction holds are skipped. */
    const claimStaleIntents = (options: StaleOptions) =>
      Effect.flatMap(now, (claimedAt) =>
        execute("claimStaleIntents", {
          writes: [],
          run: (tables, lockedByOther) => {
            const claimed = stale(tables, { ...options, includeLiveResumable: false }, claimedAt, lockedByOther)
            return {
              result: claimed,
              changes: claimed.map((intent): Change => ({
                _tag: "SetStatus",
                id: intent.record.id,
                status: intent.kind === "delete" ? "deleting" : "reclaiming",
                // Later than the pass's cutoff even within one tick of the clock, so the
                // same pass never claims it again.
                since: DateTime.max(claimedAt, DateTime.add(options.before, { millis: 1 }))
              }))
            }
          }
        }))

    const unknownKeys = (keys: ReadonlyArray<ObjectKey>) =>
      execute(
        "unknownKeys",
        read((tables) => keys.filter((k) => !HashSet.has(tables.objectKeys, k)))
      )

    const recordRepair = (repair: Repair) =>
      Effect.flatMap(Ref.getAndUpdate(repairSeq, (n) => n + 1), (seq) => {
        const logged: LoggedRepair = {
          repair: new Repair({ ...repair, fileId: Option.map(repair.fileId, (id) => FileId.make(key(id))) }),
          seq
        }
        return execute("recordRepair", {
          writes: [repairLock(repair.objectKey)],
          run: (tables) =>
            HashMap.has(tables.repairs, repair.objectKey)
              ? { result: false }
              : { result: true, changes: [{ _tag: "InsertRepair", logged }] }
        })
      })

    const insertCommitted = (record: FileRecord) =>
      Effect.flatMap(now, (since) =>
        execute("insertCommitted", {
          writes: [fileLock(record.id), objectKeyLock(record.objectKey)],
          run: (tables) =>
            HashMap.has(tables.files, key(record.id)) || HashSet.has(tables.objectKeys, record.objectKey)
              ? { result: false }
              : {
                result: true,
                changes: [{
                  _tag: "Insert",
                  row: {
                    record: checkedRecord({ ...record, id: FileId.make(key(record.id), true) }),
                    status: "committed",
                    since,
                    multipartUploadId: Option.none(),
                    resumable: Option.none()
                  }
                }]
              }
        }))

    // Beside the tables: bound once, and only outside transactions.
    const bound = yield* Ref.make(Option.none<string>())

    // ------------------------------------------------------------ resumable uploads

    /** A row's resumable state while the upload is live at `at`: pending (not reclaimed nor committed), not expired. */
    const liveResumable = (row: Row, at: DateTime.Utc): Option.Option<Resumable> =>
      row.status === "pending"
        ? Option.filter(row.resumable, (state) => DateTime.greaterThan(state.expiresAt, at))
        : Option.none()

    const insertResumable = (
      record: FileRecord,
      upload: {
        readonly length: number
        readonly partSize: number
        readonly check: Uint8Array
        readonly expiresIn: Duration.Duration
      }
    ) =>
      insertPendingRow("insertResumable", record, (since) =>
        Option.some({
          length: upload.length,
          offset: 0,
          partSize: upload.partSize,
          parts: [],
          check: upload.check.slice(),
          tail: Chunk.empty(),
          expiresAt: DateTime.addDuration(since, upload.expiresIn)
        }))

    const findResumable = (owner: Owner, id: FileId) =>
      Effect.flatMap(now, (at) =>
        execute(
          "findResumable",
          read((tables) =>
            Option.flatMap(
              Option.filter(HashMap.get(tables.files, key(id)), (row) => row.record.owner === owner),
              (row) =>
                Option.map(liveResumable(row, at), (state): ResumableUpload => ({
                  record: row.record,
                  length: state.length,
                  offset: state.offset,
                  partSize: state.partSize,
                  multipartUploadId: row.multipartUploadId,
                  parts: state.parts,
                  check: state.check.slice(),
                  expiresAt: state.expiresAt
                }))
            )
          )
        ))

    const resumableTail = (id: FileId) =>
      execute(
        "resumableTail",
        read((tables) =>
          Option.match(Option.flatMap(HashMap.get(tables.files, key(id)), (row) => row.resumable), {
            onNone: (): ReadonlyArray<Uint8Array> => [],
            onSome: (state) => Chunk.toReadonlyArray(state.tail).map((bytes) => bytes.slice())
          })
        )
      )

    /** Only while the upload is live and still at `progress.from`: two writers cannot both advance it. */
    const advanceResumable = (id: FileId, progress: ResumableProgress) =>
      Effect.flatMap(now, (at) => {
        const check = progress.check.slice()
        const appended = progress.tail.length > 0 ? Chunk.of(progress.tail.slice()) : Chunk.empty<Uint8Array>()
        const advance = (state: Resumable): Resumable => ({
          ...state,
          offset: progress.to,
          check,
          parts: [...state.parts, ...progress.parts],
          tail: Chunk.appendAll(progress.parts.length > 0 ? Chunk.empty() : state.tail, appended),
          expiresAt: DateTime.addDuration(at, progress.expiresIn)
        })
        return execute("advanceResumable", {
          writes: [fileLock(id)],
          run: (tables) =>
            Option.match(
              Option.filter(
                HashMap.get(tables.files, key(id)),
                (row) => Option.exists(liveResumable(row, at), (state) => state.offset === progress.from)
              ),
              {
                onNone: () => ({ result: false }),
                onSome: (row) => ({
                  result: true,
                  changes: [{
                    _tag: "Update",
                    id: row.record.id,
                    update: (current) => ({ ...current, resumable: Option.map(current.resumable, advance) })
                  }]
                })
              }
            )
        })
      })

    // Beside the tables, as PostgreSQL's session advisory locks: not undone by a rollback.
    const heldResumable = yield* Ref.make(HashSet.empty<string>())

    const lockResumable = (id: FileId): Effect.Effect<boolean, DatabaseUnavailable, Scope.Scope> =>
      Effect.acquireRelease(
        Ref.modify(heldResumable, (held) =>
          HashSet.has(held, key(id))
            ? [false, held] as const
            : [true, HashSet.add(held, key(id))] as const),
        (acquired) => acquired ? Ref.update(heldResumable, HashSet.remove(key(id))) : Effect.void
      ).pipe(Effect.withSpan("MemoryFileRepository.lockResumable"))

    /** Whatever the record's state: the upload finished (or is gone); the record stays. */
    const dropResumable = (id: FileId) =>
      execute("dropResumable", {
        writes: [fileLock(id)],
        run: (tables) =>
          Option.match(Option.filter(HashMap.get(tables.files, key(id)), (row) => Option.isSome(row.resumable)), {
            onNone: () => ({ result: undefined }),
            onSome: (row) => ({
              result: undefined,
              changes: [{
                _tag: "Update",
                id: row.record.id,
                update: (current) => ({ ...current, resumable: Option.none() })
              }]
            })
          })
      })

    const repairs = (limit: number) =>
      execute(
        "repairs",
        read((tables) =>
          Array.from(HashMap.values(tables.repairs)).sort(newestRepairFirst).slice(0, atLeastOne(limit)).map((r) =>
            r.repair
          )
        )
      )

    /** Ends the running transaction: publishes its changes when `commit`, and releases its locks either way. */
    const end = (changes: Chunk.Chunk<Change>, commit: boolean, released: Deferred.Deferred<void>) =>
      Effect.ensuring(
        Effect.flatMap(
          Ref.modify(shared, (state) => {
            const after = { ...state, locks: HashSet.empty<string>(), released: Option.none() }
            if (!commit) return [Option.none<string>(), after] as const
            return Either.match(replay(state.tables, changes), {
              onLeft: (reason) => [Option.some(reason), after] as const,
              onRight: (tables) => [Option.none<string>(), { ...after, tables }] as const
            })
          }),
          Option.match({
            onNone: () => Effect.void,
            onSome: (reason) => new DatabaseUnavailable({ operation: "commit", cause: new Error(reason) })
          })
        ),
        Deferred.succeed(released, undefined)
      )

    const run = <A, E, R>(self: Effect.Effect<A, E, R>, parent: Option.Option<Frame>) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const frame: Frame = {
            parent,
            log: yield* Ref.make(Chunk.empty<Change>()),
            failed: yield* Ref.make(false)
          }
          const released = yield* Deferred.make<void>()
          if (Option.isNone(parent)) {
            yield* Ref.update(shared, (state) => ({ ...state, released: Option.some(released) }))
          }
          const exit = yield* Effect.exit(restore(Effect.locally(self, currentFrame, Option.some(frame))))
          const outcome: Exit.Exit<A, E | DatabaseUnavailable> = Exit.isSuccess(exit) && (yield* Ref.get(frame.failed))
            ? Exit.fail(
              new DatabaseUnavailable({
                operation: "withTransaction",
                cause: new Error("a call failed inside the transaction, so it cannot commit")
              })
            )
            : exit
          const changes = yield* Ref.get(frame.log)
          yield* Option.match(parent, {
            // A savepoint: its changes join the enclosing transaction's, or are dropped.
            onSome: (parent) =>
              Exit.isSuccess(outcome) ? Ref.update(parent.log, Chunk.appendAll(changes)) : Effect.void,
            onNone: () => end(changes, Exit.isSuccess(outcome), released)
          })
          return yield* outcome
        })
      )

    const withTransaction = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | DatabaseUnavailable, R> =>
      Effect.flatMap(
        FiberRef.get(currentFrame),
        (parent) => Option.isSome(parent) ? run(self, parent) : turns.withPermits(1)(run(self, parent))
      ).pipe(
        Effect.withSpan("MemoryFileRepository.withTransaction")
      )

    return FileRepository.of({
      insertPending,
      insertPendingWithKey,
      purgeIdempotencyKeys,
      recordMultipart,
      commitPending,
      markDeleting,
      remove,
      find,
      findAny,
      list,
      insertCommitted,
      binding: Ref.get(bound),
      bind: (id: string) => Ref.set(bound, Option.some(id)),
      cutoff,
      staleIntents,
      claimStaleIntents,
      unknownKeys,
      recordRepair,
      repairs,
      withTransaction,
      ping: Effect.void,
      insertResumable,
      findResumable,
      resumableTail,
      advanceResumable,
      lockResumable,
      dropResumable
    })
  })
)
