import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as NodeFs from "node:fs"
import * as Path from "node:path"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import * as LocalDiskObjectStore from "../../src/adapters/objects/LocalDiskObjectStore.js"
import { concatBytes } from "../../src/adapters/objects/ObjectBackend.js"
import { ObjectKey } from "../../src/domain/FileRecord.js"
import type { PutOptions } from "../../src/ports/ObjectStore.js"
import * as TempDirectory from "../support/TempDirectory.js"

/**
 * Reads from the local disk store open the object file once, in `get`: the body
 * streams from that handle, so a delete or a replace that lands between `get` and
 * the end of the body changes nothing it reads, and the handle is closed however
 * the body ends.
 */

const MiB = 1024 * 1024
const key = ObjectKey.make("files/big")
const binary: PutOptions = { contentType: "application/octet-stream", metadata: {} }
const csv: PutOptions = { contentType: "text/csv", metadata: { version: "2" } }

/** A store in a fresh directory, and the (real) path of the file that holds `key`. */
const setup = Effect.gen(function*() {
  const root = yield* TempDirectory.make("reads")
  const store = yield* LocalDiskObjectStore.makeBackend(root)
  const file = Path.join(NodeFs.realpathSync(root), LocalDiskObjectStore.fileNameOf(key))
  return { store, file }
})

/** How many of this process's file descriptors are open on `file`, also once it is unlinked or renamed over. */
const descriptorsOn = (file: string) =>
  Effect.sync(() =>
    NodeFs.readdirSync("/proc/self/fd").filter((fd) => {
      try {
        const target = NodeFs.readlinkSync(`/proc/self/fd/${fd}`)
        return target === file || target === `${file} (deleted)`
      } catch {
        return false // the directory's own descriptor, gone by now
      }
    }).length
  )

const chunksOf = <E>(body: Stream.Stream<Uint8Array, E>) => Effect.map(Stream.runCollect(body), Chunk.toReadonlyArray)

/** The body, running `act` once its first chunk has been read. */
const onFirstChunk = <E, E2>(body: Stream.Stream<Uint8Array, E>, act: Effect.Effect<void, E2>) =>
  body.pipe(
    Stream.zipWithIndex,
    Stream.tap(([, index]) => index === 0 ? act : Effect.void),
    Stream.map(([chunk]) => chunk)
  )

/** toEqual on large arrays is slow, so compare fast and only diff on a mismatch. */
const expectSameBytes = (actual: Uint8Array, expected: Uint8Array) => {
  if (!Buffer.from(actual).equals(Buffer.from(expected))) expect(actual).toEqual(expected)
  expect(actual.byteLength).toBe(expected.byteLength)
}

V8.setFlagsFromString("--expose-gc")
const collectGarbage: () => void = Vm.runInNewContext("gc")
const tick = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))

/** Collects garbage until `done` holds (finalizers run some time after a collection), for up to about 2 s. */
const collectUntil = (done: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 100; attempt++) {
      collectGarbage()
      yield* tick
      if (yield* done) return true
    }
    return false
  })

describe("LocalDiskObjectStore reads", () => {
  it.scoped("a delete between get and reading the body: the body still yields every byte", () =>
    Effect.gen(function*() {
      const { file, store } = yield* setup
      const bytes = randomBytes(8 * MiB)
      yield* store.put(key, bytes, binary)
      const object = yield* store.get(key)
      yield* store.delete(key)
      expect(yield* store.head(key)).toMatchObject({ _tag: "None" })
      const chunks = yield* chunksOf(object.body)
      expect(chunks.length).toBeGreaterThan(1)
      expectSameBytes(concatBytes(chunks), bytes)
      expect(object.size).toBe(bytes.byteLength)
      expect(yield* descriptorsOn(file)).toBe(0)
    }))

  it.scoped("a delete after the first chunk was read: the body still yields every byte", () =>
    Effect.gen(function*() {
      const { file, store } = yield* setup
      const bytes = randomBytes(8 * MiB)
      yield* store.put(key, bytes, binary)
      const object = yield* store.get(key)
      const chunks = yield* chunksOf(onFirstChunk(object.body, store.delete(key)))
      expect(chunks.length).toBeGreaterThan(1)
      expectSameBytes(concatBytes(chunks), bytes)
      expect(NodeFs.existsSync(file)).toBe(false)
      expect(yield* descriptorsOn(file)).toBe(0)
    }))

  it.scoped("a put over the key between get and reading: the body is the old bytes, whole", () =>
    Effect.gen(function*() {
      const { store } = yield* setup
      const old = randomBytes(8 * MiB)
      const replacement = randomBytes(3 * MiB)
      yield* store.put(key, old, binary)
      const object = yield* store.get(key)
      yield* store.put(key, replacement, csv)
      expect({ size: object.size, contentType: object.contentType, metadata: object.metadata }).toEqual({
        size: old.byteLength,
        contentType: binary.contentType,
        metadata: {}
      })
      expectSameBytes(concatBytes(yield* chunksOf(object.body)), old)
      // A new get sees the new object.
      expectSameBytes(concatBytes(yield* chunksOf((yield* store.get(key)).body)), replacement)
    }))

  it.scoped("a put over the key after the first chunk was read: the body is the old bytes, whole", () =>
    Effect.gen(function*() {
      const { store } = yield* setup
      const old = randomBytes(8 * MiB)
      yield* store.put(key, old, binary)
      const object = yield* store.get(key)
      const chunks = yield* chunksOf(onFirstChunk(object.body, store.put(key, randomBytes(8 * MiB), csv)))
      expect(chunks.length).toBeGreaterThan(1)
      expectSameBytes(concatBytes(chunks), old)
    }))

  it.scoped("a ranged get with a delete in between: the range's exact bytes", () =>
    Effect.gen(function*() {
      const { store } = yield* setup
      const bytes = randomBytes(8 * MiB)
      yield* store.put(key, bytes, binary)
      const middle = { start: MiB + 3, end: 5 * MiB + 7 }
      const tail = { start: 7 * MiB + 11, end: 100 * MiB } // an end past the object reads to its last byte
      const ranged = [yield* store.get(key, middle), yield* store.get(key, tail)]
      yield* store.delete(key)
      const [first, second] = ranged
      if (first === undefined || second === undefined) return yield* Effect.dieMessage("no objects")
      expectSameBytes(concatBytes(yield* chunksOf(first.body)), bytes.subarray(middle.start, middle.end + 1))
      expectSameBytes(concatBytes(yield* chunksOf(second.body)), bytes.subarray(tail.start))
      expect(first.size).toBe(bytes.byteLength)
    }))

  it.scoped("the handle is open from get until the body has been read, then closed", () =>
    Effect.gen(function*() {
      const { file, store } = yield* setup
      yield* store.put(key, randomBytes(4 * MiB), binary)
      const object = yield* store.get(key)
      expect(yield* descriptorsOn(file)).toBe(1)
      yield* Stream.runDrain(object.body)
      expect(yield* descriptorsOn(file)).toBe(0)
      // An empty range of an empty object opens and closes too.
      yield* store.put(key, new Uint8Array(0), binary)
      const empty = yield* store.get(key)
      expect(yield* chunksOf(empty.body)).toEqual([])
      expect(yield* descriptorsOn(file)).toBe(0)
      // head opens and closes at once.
      yield* store.head(key)
      expect(yield* descriptorsOn(file)).toBe(0)
    }))

  it.scoped("the handle is closed when the body stream is interrupted midway", () =>
    Effect.gen(function*() {
      const { file, store } = yield* setup
      yield* store.put(key, randomBytes(8 * MiB), binary)
      const object = yield* store.get(key)
      const started = yield* Deferred.make<void>()
      const reader = yield* Effect.fork(
        Stream.runDrain(onFirstChunk(object.body, Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)))
      )
      yield* Deferred.await(started)
      expect(yield* descriptorsOn(file)).toBe(1)
      yield* Fiber.interrupt(reader)
      expect(yield* descriptorsOn(file)).toBe(0)
    }))

  it.scoped("the handle is closed when the reader fails midway, or stops early", () =>
    Effect.gen(function*() {
      const { file, store } = yield* setup
      yield* store.put(key, randomBytes(8 * MiB), binary)
      const failed = yield* store.get(key)
      expect(yield* Effect.flip(Stream.runDrain(onFirstChunk(failed.body, Effect.fail("stop"))))).toBe("stop")
      expect(yield* descriptorsOn(file)).toBe(0)
      const stopped = yield* store.get(key)
      expect(yield* Effect.map(chunksOf(Stream.take(stopped.body, 1)), (chunks) => chunks.length)).toBe(1)
      expect(yield* descriptorsOn(file)).toBe(0)
    }))

  it.scoped("a body is read once: a second run fails and opens nothing", () =>
    Effect.gen(function*() {
      const { file, store } = yield* setup
      const bytes = randomBytes(MiB)
      yield* store.put(key, bytes, binary)
      const object = yield* store.get(key)
      expectSameBytes(concatBytes(yield* chunksOf(object.body)), bytes)
      const error = yield* Effect.flip(Stream.runDrain(object.body))
      expect(error._tag).toBe("ObjectStoreUnavailable")
      expect(yield* descriptorsOn(file)).toBe(0)
    }))

  it.scoped("a get that fails (a range outside the object) leaves no handle open", () =>
    Effect.gen(function*() {
      const { file, store } = yield* setup
      yield* store.put(key, Uint8Array.of(1, 2, 3), binary)
      const error = yield* Effect.flip(store.get(key, { start: 3, end: 5 }))
      expect(error._tag).toBe("ObjectStoreUnavailable")
      expect(yield* descriptorsOn(file)).toBe(0)
    }))

  it.scopedLive("a body never run (as for a HEAD request) is closed once nothing can run it any more", () =>
    Effect.gen(function*() {
      const { file, store } = yield* setup
      // Node closes a FileHandle left to the collector itself, but warns (DEP0137: it may throw one day).
      const warnings: Array<string> = []
      const onWarning = (warning: Error) => warnings.push(warning.message)
      yield* Effect.acquireRelease(
        Effect.sync(() => process.on("warning", onWarning)),
        () => Effect.sync(() => process.off("warning", onWarning))
      )
      yield* store.put(key, randomBytes(MiB), binary)
      yield* Effect.asVoid(store.get(key))
      expect(yield* descriptorsOn(file)).toBe(1)
      expect(yield* collectUntil(Effect.map(descriptorsOn(file), (open) => open === 0))).toBe(true)
      yield* tick
      expect(warnings.filter((message) => /garbage collection/i.test(message))).toEqual([])
    }))

  it.scopedLive("a body kept only inside another stream stays open through collections, and reads whole", () =>
    Effect.gen(function*() {
      const { file, store } = yield* setup
      const bytes = randomBytes(4 * MiB)
      yield* store.put(key, bytes, binary)
      // Only the wrapper is kept: the object and its body stream object are garbage.
      const wrapped = yield* Effect.map(store.get(key), (object) => Stream.map(object.body, (chunk) => chunk))
      yield* store.delete(key)
      for (let collection = 0; collection < 10; collection++) {
        collectGarbage()
        yield* tick
      }
      expect(yield* descriptorsOn(file)).toBe(1)
      expectSameBytes(concatBytes(yield* chunksOf(wrapped)), bytes)
      expect(yield* descriptorsOn(file)).toBe(0)
    }))
})
