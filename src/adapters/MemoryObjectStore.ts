import { Effect, HashMap, Layer, Option, Ref, Stream } from "effect"
import type { ObjectKey } from "../domain/FileRecord.js"
import type { ObjectInfo, PutOptions } from "../ports/ObjectStore.js"
import { ObjectNotFound, ObjectStore } from "../ports/ObjectStore.js"

interface Entry {
  readonly bytes: Uint8Array
  readonly contentType: string
  readonly metadata: Readonly<Record<string, string>>
}

/** S3 orders keys by their UTF-8 bytes, which differs from JS string order for some characters. */
const byUtf8 = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))

const infoOf = (key: ObjectKey, entry: Entry): ObjectInfo => ({
  key,
  size: entry.bytes.byteLength,
  contentType: entry.contentType,
  metadata: { ...entry.metadata }
})

/** An object store in a Ref: for tests and local runs. Bytes are copied in and out. */
export const make = Effect.gen(function*() {
  const objects = yield* Ref.make(HashMap.empty<ObjectKey, Entry>())

  const put = (key: ObjectKey, bytes: Uint8Array, options: PutOptions) =>
    Ref.update(objects, (map) => {
      const entry: Entry = { bytes: bytes.slice(), contentType: options.contentType, metadata: { ...options.metadata } }
      return HashMap.set(map, key, entry)
    })

  const get = (key: ObjectKey) =>
    Effect.flatMap(Ref.get(objects), (map) =>
      Option.match(HashMap.get(map, key), {
        onNone: () => Effect.fail(new ObjectNotFound({ key })),
        onSome: (entry) =>
          Effect.succeed({
            ...infoOf(key, entry),
            body: entry.bytes.byteLength === 0 ? Stream.empty : Stream.sync(() => entry.bytes.slice())
          })
      }))

  const head = (key: ObjectKey) =>
    Effect.map(Ref.get(objects), (map) => Option.map(HashMap.get(map, key), (entry) => infoOf(key, entry)))

  const remove = (key: ObjectKey) => Ref.update(objects, HashMap.remove(key))

  const list = (prefix: string) =>
    Stream.unwrap(Effect.map(Ref.get(objects), (map) =>
      Stream.fromIterable(
        Array.from(HashMap.keys(map))
          .filter((key) => key.startsWith(prefix))
          .sort(byUtf8)
      )))

  return ObjectStore.of({ put, get, head, delete: remove, list, ping: Effect.void })
})

export const layer: Layer.Layer<ObjectStore> = Layer.effect(ObjectStore, make)
