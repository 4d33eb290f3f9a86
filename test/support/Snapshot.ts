import { DateTime, Effect, Stream } from "effect"
import { markerKeyFor } from "../../src/app/StoreBinding.js"
import { ObjectKey } from "../../src/domain/FileRecord.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import { testPrefix } from "./TestServer.js"

/** Far enough ahead that every intent is older. */
const FAR_FUTURE = DateTime.unsafeMake(Date.UTC(9999, 0, 1))

export interface StoreSnapshot {
  /** Every object key under the test prefix. */
  readonly objects: ReadonlyArray<string>
  /** The object keys of committed files, whoever owns them. */
  readonly files: ReadonlyArray<string>
  /** Unfinished intents, uploads and deletes, as `kind key`. */
  readonly intents: ReadonlyArray<string>
}

/** Everything the stores hold, read behind the API's back: what "nothing left behind" is checked against. */
export const snapshot: Effect.Effect<StoreSnapshot, never, ObjectStore | FileRepository> = Effect.gen(function*() {
  const store = yield* ObjectStore
  const repository = yield* FileRepository
  // The binding's marker is the store's, not a file's.
  const objects = Array.from(yield* Stream.runCollect(store.list(testPrefix)))
    .filter((key) => key !== markerKeyFor(testPrefix))
    .sort()
  const intents = yield* repository.staleIntents({
    before: FAR_FUTURE,
    limit: 1_000_000,
    includeLiveResumable: true
  })
  // Whoever owns them: an object some record names, and no intent does, is a committed file's.
  const unknown = new Set<string>(yield* repository.unknownKeys(objects.map((key) => ObjectKey.make(key))))
  const intentKeys = new Set<string>(intents.map((intent) => intent.record.objectKey))
  return {
    objects,
    files: objects.filter((key) => !unknown.has(key) && !intentKeys.has(key)),
    intents: intents.map((intent) => `${intent.kind} ${intent.record.objectKey}`).sort()
  }
}).pipe(Effect.orDie)

/** No intent, and every object belongs to a listed file: the stores agree and nothing is left over. */
export const expectSettled = (found: StoreSnapshot) => ({
  intents: found.intents,
  strayObjects: found.objects.filter((key) => !found.files.includes(key))
})
