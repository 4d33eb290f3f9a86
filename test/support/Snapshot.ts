import { DateTime, Effect, Option, Stream } from "effect"
import { markerKeyFor } from "../../src/app/StoreBinding.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import { testPrefix } from "./TestServer.js"

/** Far enough ahead that every intent is older. */
const FAR_FUTURE = DateTime.unsafeMake(Date.UTC(9999, 0, 1))

export interface StoreSnapshot {
  /** Every object key under the test prefix. */
  readonly objects: ReadonlyArray<string>
  /** The object keys of committed (listed) files. */
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
  const page = yield* repository.list({ limit: 1_000_000, after: Option.none() })
  const intents = yield* repository.staleIntents({ before: FAR_FUTURE, limit: 1_000_000 })
  return {
    objects,
    files: page.items.map((record) => record.objectKey as string).sort(),
    intents: intents.map((intent) => `${intent.kind} ${intent.record.objectKey}`).sort()
  }
}).pipe(Effect.orDie)

/** No intent, and every object belongs to a listed file: the stores agree and nothing is left over. */
export const expectSettled = (found: StoreSnapshot) => ({
  intents: found.intents,
  strayObjects: found.objects.filter((key) => !found.files.includes(key))
})
