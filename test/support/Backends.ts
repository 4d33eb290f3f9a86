import { Context, Effect, Layer } from "effect"
import * as LocalDiskObjectStore from "../../src/adapters/objects/LocalDiskObjectStore.js"
import * as MemoryObjectStore from "../../src/adapters/objects/MemoryObjectStore.js"
import type { ObjectBackend } from "../../src/adapters/objects/ObjectBackend.js"
import { toObjectStore } from "../../src/adapters/objects/ObjectBackend.js"
import * as S3ObjectStore from "../../src/adapters/objects/S3ObjectStore.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import * as FauxqsTestServer from "./FauxqsTestServer.js"
import * as S3TestServer from "./S3TestServer.js"
import * as TempDirectory from "./TempDirectory.js"

/** An object store's backend as a service: what tests reach for beneath the ObjectStore port. */
export class Backend extends Context.Tag("test/ObjectBackend")<Backend, ObjectBackend>() {}

export const memory: Layer.Layer<Backend> = Layer.effect(Backend, MemoryObjectStore.makeBackend)

/** A local-disk backend in a fresh temp directory, removed afterwards. */
export const localDisk: Layer.Layer<Backend> = Layer.scoped(
  Backend,
  Effect.flatMap(
    TempDirectory.make("objects"),
    (directory) => Effect.orDie(LocalDiskObjectStore.makeBackend(directory))
  )
)

export const s3rver: Layer.Layer<Backend> = Layer.scoped(
  Backend,
  Effect.flatMap(S3TestServer.settings, S3ObjectStore.makeBackend)
)

export const fauxqs: Layer.Layer<Backend> = Layer.scoped(
  Backend,
  Effect.flatMap(FauxqsTestServer.settings, S3ObjectStore.makeBackend)
)

/** The ObjectStore port over the provided backend, writing in parts of `partSize`. */
export const objectStore = (partSize: number): Layer.Layer<ObjectStore, never, Backend> =>
  Layer.effect(ObjectStore, Effect.map(Backend, (backend) => toObjectStore(backend, { partSize })))
