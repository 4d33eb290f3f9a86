import { Chunk, Effect, Stream } from "effect"
import type { ObjectKey } from "../domain/FileRecord.js"
import type { FileRepository } from "../ports/FileRepository.js"
import type { ObjectStore } from "../ports/ObjectStore.js"

/** Object keys checked against the database per query. */
const BATCH = 500

/** One batch of the listing: how many keys it held, and those no record names. */
export interface OrphanBatch {
  readonly listed: number
  readonly orphans: ReadonlyArray<ObjectKey>
}

/**
 * Every object under `prefix` but `skip` (the binding's marker), checked against the
 * database in batches, as the listing goes: a record is written before its object
 * and removed after it, so an object that no record names is an orphan whatever its
 * age, unless the store belongs to another database (see StoreBinding).
 */
export const orphanBatches = (
  store: ObjectStore["Type"],
  repository: FileRepository["Type"],
  prefix: string,
  skip: ObjectKey
) =>
  store.list(prefix).pipe(
    Stream.filter((key) => key !== skip),
    Stream.grouped(BATCH),
    Stream.mapEffect((chunk) => {
      const keys = Chunk.toReadonlyArray(chunk)
      return Effect.map(repository.unknownKeys(keys), (orphans): OrphanBatch => ({ listed: keys.length, orphans }))
    })
  )
