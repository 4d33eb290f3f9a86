import { Chunk, DateTime, Effect, Either, Exit, FiberRef, HashMap, Layer, Option, Order, Ref } from "effect"
import type { FileCursor } from "../domain/FileCursor.js"
import { FileId, FileRecord } from "../domain/FileRecord.js"
import { DatabaseUnavailable } from "../domain/StorageErrors.js"
import type { FilePage } from "../ports/FileRepository.js"
import { FileRepository } from "../ports/FileRepository.js"

/**
 * An in-memory FileRepository that behaves like PgFileRepository. Ids are kept
 * lowercase and compared like PostgreSQL's uuid; ids and object keys are unique.
 *
 * A transaction does not copy the table: it keeps a log of its own changes, read
 * on top of the shared table (so, as in READ COMMITTED, it sees others' commits) and
 * replayed onto it atomically on commit. Transactions take turns (a semaphore);
 * calls outside one apply on their own.
 */

type Table = HashMap.HashMap<string, FileRecord>

type Change =
  | { readonly _tag: "Insert"; readonly record: FileRecord }
  | { readonly _tag: "Delete"; readonly id: string }

interface Frame {
  readonly parent: Option.Option<Frame>
  readonly log: Ref.Ref<Chunk.Chunk<Change>>
  /** A call failed in this frame: like PostgreSQL's aborted transaction, it cannot commit. */
  readonly failed: Ref.Ref<boolean>
}

const key = (id: string): string => id.toLowerCase()

const apply = (table: Table, change: Change): Either.Either<Table, string> => {
  if (change._tag === "Delete") return Either.right(HashMap.remove(table, change.id))
  const { record } = change
  if (HashMap.has(table, record.id)) return Either.left(`duplicate id ${record.id}`)
  if (HashMap.some(table, (other) => other.objectKey === record.objectKey)) {
    return Either.left(`duplicate object key ${record.objectKey}`)
  }
  return Either.right(HashMap.set(table, record.id, record))
}

const replay = (table: Table, changes: Iterable<Change>): Either.Either<Table, string> => {
  let current = table
  for (const change of changes) {
    const next = apply(current, change)
    if (Either.isLeft(next)) return next
    current = next.right
  }
  return Either.right(current)
}

const newestFirst: Order.Order<FileRecord> = Order.reverse(
  Order.combine(
    Order.mapInput(Order.number, (r: FileRecord) => DateTime.toEpochMillis(r.createdAt)),
    Order.mapInput(Order.string, (r: FileRecord) => r.id)
  )
)

/** (createdAt, id) < (cursor.createdAt, cursor.id), as PostgreSQL compares rows. */
const isAfter = (cursor: FileCursor) => (record: FileRecord): boolean => {
  const millis = DateTime.toEpochMillis(record.createdAt)
  const cursorMillis = DateTime.toEpochMillis(cursor.createdAt)
  return millis < cursorMillis || (millis === cursorMillis && record.id < key(cursor.id))
}

const toPage = (rows: ReadonlyArray<FileRecord>, limit: number): FilePage => {
  const items = rows.slice(0, limit)
  const last = items[items.length - 1]
  return {
    items,
    nextCursor: rows.length > limit && last !== undefined
      ? Option.some<FileCursor>({ createdAt: last.createdAt, id: last.id })
      : Option.none()
  }
}

export const layer: Layer.Layer<FileRepository> = Layer.scoped(
  FileRepository,
  Effect.gen(function*() {
    const shared = yield* Ref.make<Table>(HashMap.empty())
    const currentFrame = yield* FiberRef.make(Option.none<Frame>())
    const turns = yield* Effect.makeSemaphore(1)

    /** Every change of the frame and its enclosing ones, oldest first. */
    const changesOf = (frame: Frame): Effect.Effect<Chunk.Chunk<Change>> =>
      Effect.flatMap(Ref.get(frame.log), (own) =>
        Option.match(frame.parent, {
          onNone: () => Effect.succeed(own),
          onSome: (parent) => Effect.map(changesOf(parent), Chunk.appendAll(own))
        }))

    /** The table as the current fiber sees it: shared, plus its transaction's changes. */
    const view = Effect.flatMap(FiberRef.get(currentFrame), Option.match({
      onNone: () => Ref.get(shared),
      onSome: (frame) =>
        Effect.flatMap(changesOf(frame), (changes) =>
          Effect.flatMap(Ref.get(shared), (table) =>
            Either.match(replay(table, changes), {
              // Others committed something that clashes with this transaction's changes.
              onLeft: (reason) => Effect.fail(reason),
              onRight: Effect.succeed
            })))
    }))

    const fail = (operation: string, reason: string) =>
      Effect.zipRight(
        Effect.flatMap(FiberRef.get(currentFrame), Option.match({
          onNone: () => Effect.void,
          onSome: (frame) => Ref.set(frame.failed, true)
        })),
        Effect.fail(new DatabaseUnavailable({ operation, cause: new Error(reason) }))
      )

    /** Applies a change now (outside a transaction) or logs it (inside one), once it applies cleanly. */
    const write = (operation: string, change: Change) =>
      Effect.flatMap(FiberRef.get(currentFrame), Option.match({
        onNone: () =>
          Effect.flatMap(
            Ref.modify(shared, (table) =>
              Either.match(apply(table, change), {
                onLeft: (reason) => [Option.some(reason), table] as const,
                onRight: (next) => [Option.none(), next] as const
              })),
            Option.match({ onNone: () => Effect.void, onSome: (reason) => fail(operation, reason) })
          ),
        onSome: (frame) =>
          Effect.flatMap(Effect.either(view), (table) =>
            Either.isLeft(table) ? fail(operation, table.left) : Either.match(apply(table.right, change), {
              onLeft: (reason) => fail(operation, reason),
              onRight: () => Ref.update(frame.log, Chunk.append(change))
            }))
      }))

    const read = (operation: string) => Effect.catchAll(view, (reason) => fail(operation, reason))

    const insert = (record: FileRecord) =>
      write("insert", { _tag: "Insert", record: new FileRecord({ ...record, id: FileId.make(key(record.id)) }) }).pipe(
        Effect.withSpan("MemoryFileRepository.insert")
      )

    const find = (id: FileId) =>
      Effect.map(read("find"), (table) => HashMap.get(table, key(id))).pipe(
        Effect.withSpan("MemoryFileRepository.find")
      )

    const remove = (id: FileId): Effect.Effect<Option.Option<FileRecord>, DatabaseUnavailable> =>
      Effect.flatMap(find(id), (found): Effect.Effect<Option.Option<FileRecord>, DatabaseUnavailable> =>
        Option.isSome(found)
          ? Effect.as(write("delete", { _tag: "Delete", id: key(id) }), found)
          : Effect.succeed(found)).pipe(Effect.withSpan("MemoryFileRepository.delete"))

    const list = ({ after, limit }: { readonly limit: number; readonly after: Option.Option<FileCursor> }) => {
      const size = Math.max(1, Math.floor(limit))
      return Effect.map(read("list"), (table) => {
        const all = Array.from(HashMap.values(table)).sort(newestFirst)
        const rest = Option.match(after, { onNone: () => all, onSome: (cursor) => all.filter(isAfter(cursor)) })
        return toPage(rest.slice(0, size + 1), size)
      }).pipe(Effect.withSpan("MemoryFileRepository.list"))
    }

    /** Publishes a finished frame: into its parent (a savepoint) or onto the shared table. */
    const publish = (frame: Frame): Effect.Effect<void, DatabaseUnavailable> =>
      Effect.flatMap(Ref.get(frame.log), (changes) =>
        Option.match(frame.parent, {
          onSome: (parent) => Ref.update(parent.log, Chunk.appendAll(changes)),
          onNone: () =>
            Effect.flatMap(
              Ref.modify(shared, (table) =>
                Either.match(replay(table, changes), {
                  onLeft: (reason) => [Option.some(reason), table] as const,
                  onRight: (next) => [Option.none(), next] as const
                })),
              Option.match({
                onNone: () => Effect.void,
                onSome: (reason) => new DatabaseUnavailable({ operation: "commit", cause: new Error(reason) })
              })
            )
        }))

    const run = <A, E, R>(self: Effect.Effect<A, E, R>, parent: Option.Option<Frame>) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const frame: Frame = {
            parent,
            log: yield* Ref.make(Chunk.empty<Change>()),
            failed: yield* Ref.make(false)
          }
          const exit = yield* Effect.exit(restore(Effect.locally(self, currentFrame, Option.some(frame))))
          if (Exit.isFailure(exit)) return yield* exit
          if (yield* Ref.get(frame.failed)) {
            return yield* new DatabaseUnavailable({
              operation: "withTransaction",
              cause: new Error("a call failed inside the transaction, so it cannot commit")
            })
          }
          yield* publish(frame)
          return exit.value
        })
      )

    const withTransaction = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | DatabaseUnavailable, R> =>
      Effect.flatMap(FiberRef.get(currentFrame), (parent) =>
        Option.isSome(parent) ? run(self, parent) : turns.withPermits(1)(run(self, parent))).pipe(
          Effect.withSpan("MemoryFileRepository.withTransaction")
        )

    return FileRepository.of({
      insert,
      find,
      list,
      delete: remove,
      withTransaction,
      ping: Effect.void
    })
  })
)
