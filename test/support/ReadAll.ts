import { Effect, Stream } from "effect"
import { concatBytes } from "../../src/adapters/objects/ObjectBackend.js"
import type { ObjectKey } from "../../src/domain/FileRecord.js"
import type { ObjectStore } from "../../src/ports/ObjectStore.js"

/** Reads a whole object into memory, to compare it with what was stored. */
export const readAll = (store: Pick<ObjectStore["Type"], "get">, key: ObjectKey) =>
  Effect.flatMap(
    store.get(key),
    (object) => Effect.map(Stream.runCollect(object.body), (chunks) => ({ ...object, bytes: concatBytes(chunks) }))
  )
