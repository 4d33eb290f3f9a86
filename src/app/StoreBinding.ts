import { Chunk, Effect, Option, Stream } from "effect"
import { createHash } from "node:crypto"
import { ObjectKey } from "../domain/FileRecord.js"
import { ofBytes } from "../ports/ContentReader.js"
import { FileRepository } from "../ports/FileRepository.js"
import { ObjectStore } from "../ports/ObjectStore.js"
import { UploadSettings } from "./UploadSettings.js"

/** Where the store keeps its half of the binding: under the prefix, where no file's key can be. */
export const markerKeyFor = (prefix: string): ObjectKey => ObjectKey.make(`${prefix}.tandem-binding`)

const sha256Hex = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/** The two halves of a binding, as found. */
export interface Binding {
  readonly database: Option.Option<string>
  readonly store: Option.Option<string>
}

export const isBound = (binding: Binding): boolean =>
  Option.isSome(binding.database) &&
  Option.getEquivalence((a: string, b: string) => a === b)(binding.database, binding.store)

/** One line naming both halves and the way out. */
export const describeUnbound = (binding: Binding, markerKey: ObjectKey): string => {
  const id = (half: Option.Option<string>) => Option.getOrElse(half, () => "none")
  return `the object store (binding ${id(binding.store)} in ${markerKey}) and the database (binding ${
    id(binding.database)
  }) are not bound to each other, so no object is taken for an orphan: if this database is that store's, ` +
    "run `npm run reconcile -- --bind` (then `npm run reconcile -- --restore` to recover files from their objects)"
}

/**
 * The store and the database, bound to each other: the store holds an id in a
 * marker object, the database holds the same id. An object that no record names is
 * an orphan only if the two agree; when they do not (a fresh database beside a
 * bucket full of files, a database restored from a backup older than the bucket,
 * two deployments sharing a bucket and prefix), deleting orphans would delete
 * files, so the reconciler refuses to. A fresh pair (no binding, and no object under
 * the prefix) is bound on first use (as the service starts, so before any upload);
 * anything else is bound only deliberately (`npm run reconcile -- --bind`).
 */
export class StoreBinding extends Effect.Service<StoreBinding>()("app/StoreBinding", {
  effect: Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const { keyPrefix } = yield* UploadSettings
    const markerKey = markerKeyFor(keyPrefix)

    const storeHalf = store.get(markerKey).pipe(
      Effect.flatMap((object) => Stream.runCollect(object.body)),
      Effect.map((chunks) => {
        const text = Buffer.concat(Chunk.toReadonlyArray(chunks)).toString("utf8")
        try {
          const parsed: unknown = JSON.parse(text)
          return typeof parsed === "object" && parsed !== null && "binding" in parsed &&
              typeof parsed.binding === "string"
            ? Option.some(parsed.binding)
            : Option.some(`unreadable marker: ${text.slice(0, 80)}`)
        } catch {
          return Option.some(`unreadable marker: ${text.slice(0, 80)}`)
        }
      }),
      Effect.catchTag("ObjectNotFound", () => Effect.succeedNone)
    )

    const found = Effect.all({ database: repository.binding, store: storeHalf })

    /** Binds this database and this store anew, whatever they held: the operator's decision. */
    const bind = Effect.gen(function*() {
      const id = crypto.randomUUID()
      const marker = new TextEncoder().encode(JSON.stringify({ binding: id, boundAt: new Date().toISOString() }))
      // The store first: a crash in between leaves the two disagreeing, which refuses the audit.
      yield* store.write(markerKey, ofBytes(marker), {
        contentType: "application/json",
        metadata: {},
        onUploadStarted: () => Effect.void,
        ended: Effect.sync(() => ({ sha256: sha256Hex(marker), metadata: {} }))
      })
      yield* repository.bind(id)
      yield* Effect.logInfo("bound the object store and the database").pipe(Effect.annotateLogs({ binding: id }))
      return id
    })

    const isEmpty = store.list(keyPrefix).pipe(
      Stream.filter((key) => key !== markerKey),
      Stream.take(1),
      Stream.runCount,
      Effect.map((count) => count === 0)
    )

    /** The binding as it stands; a fresh pair, never bound and with no object, is bound now. */
    const check = Effect.gen(function*() {
      const binding = yield* found
      if (Option.isNone(binding.database) && Option.isNone(binding.store) && (yield* isEmpty)) {
        const id = yield* bind
        return { database: Option.some(id), store: Option.some(id) } satisfies Binding
      }
      return binding
    })

    // First use: a fresh pair is bound as the service starts, before any upload. A
    // store that cannot be reached now is no reason not to start; the next check binds.
    yield* check.pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not check the store's binding", cause)))

    return { markerKey, check, bind, found } as const
  })
}) {}
