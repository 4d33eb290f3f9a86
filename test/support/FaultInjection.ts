import { Context, Effect, Layer, Ref } from "effect"
import { DatabaseUnavailable, ObjectStoreUnavailable } from "../../src/domain/StorageErrors.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"

/** Every call the workflow can make through a port; "repo.commit" is the end of a transaction. */
export const portCalls = [
  "store.put",
  "store.get",
  "store.head",
  "store.delete",
  "store.list",
  "repo.insert",
  "repo.find",
  "repo.list",
  "repo.delete",
  "repo.commit"
] as const
export type PortCall = typeof portCalls[number]

/**
 * What happens at a call: it fails with the port's own error, or the calling fiber
 * is interrupted there (a crash as the workflow sees it). `times` limits how many
 * calls are hit (default: every one).
 */
export interface Fault {
  readonly call: PortCall
  readonly kind: "fail" | "interrupt"
  readonly times?: number
}

export class FaultPlan extends Context.Tag("test/FaultPlan")<FaultPlan, {
  readonly inject: (faults: ReadonlyArray<Fault>) => Effect.Effect<void>
  readonly clear: Effect.Effect<void>
  /** The calls made since the last inject/clear, in order. */
  readonly calls: Effect.Effect<ReadonlyArray<PortCall>>
  /** The object keys of store calls a fault hit since the last inject/clear. */
  readonly faultedKeys: (call: PortCall) => Effect.Effect<ReadonlyArray<string>>
}>() {}

const injected = (call: PortCall) => new Error(`fault injected at ${call}`)

/**
 * Wraps real port implementations so a test can make any call fail or interrupt.
 * The wrapped ports are what the workflow sees; with no faults they behave as the
 * inner ones.
 */
export const layer = <E>(inner: Layer.Layer<ObjectStore | FileRepository, E>) =>
  Layer.effectContext(Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const faults = yield* Ref.make<ReadonlyArray<Fault & { hits: number }>>([])
    const calls = yield* Ref.make<ReadonlyArray<PortCall>>([])
    const faulted = yield* Ref.make<ReadonlyArray<{ readonly call: PortCall; readonly key: string | undefined }>>([])

    /** Records the call and applies a matching fault, if any is left. */
    const at = <Err>(call: PortCall, key: string | undefined, toError: (cause: Error) => Err): Effect.Effect<void, Err> =>
      Effect.gen(function*() {
        yield* Ref.update(calls, (list) => [...list, call])
        const fault = yield* Ref.modify(faults, (list) => {
          const index = list.findIndex((f) => f.call === call && (f.times === undefined || f.hits < f.times))
          if (index === -1) return [undefined, list] as const
          const hit = list[index]
          if (hit === undefined) return [undefined, list] as const
          return [hit, list.map((f, i) => (i === index ? { ...f, hits: f.hits + 1 } : f))] as const
        })
        if (fault === undefined) return
        yield* Ref.update(faulted, (list) => [...list, { call, key }])
        if (fault.kind === "interrupt") return yield* Effect.interrupt
        return yield* Effect.fail(toError(injected(call)))
      })
    const storeFault = (call: PortCall, key?: string) =>
      at(call, key, (cause) => new ObjectStoreUnavailable({ operation: call, cause, ...(key === undefined ? {} : { key }) }))
    const repoFault = (call: PortCall) => at(call, undefined, (cause) => new DatabaseUnavailable({ operation: call, cause }))

    const wrappedStore: ObjectStore["Type"] = {
      put: (key, bytes, options) => Effect.zipRight(storeFault("store.put", key), store.put(key, bytes, options)),
      get: (key) => Effect.zipRight(storeFault("store.get", key), store.get(key)),
      head: (key) => Effect.zipRight(storeFault("store.head", key), store.head(key)),
      delete: (key) => Effect.zipRight(storeFault("store.delete", key), store.delete(key)),
      list: (prefix) => store.list(prefix),
      ping: store.ping
    }
    const wrappedRepository: FileRepository["Type"] = {
      insert: (record) => Effect.zipRight(repoFault("repo.insert"), repository.insert(record)),
      find: (id) => Effect.zipRight(repoFault("repo.find"), repository.find(id)),
      list: (options) => Effect.zipRight(repoFault("repo.list"), repository.list(options)),
      delete: (id) => Effect.zipRight(repoFault("repo.delete"), repository.delete(id)),
      // A fault at the end of the body makes the transaction roll back, as a failed COMMIT does.
      withTransaction: (self) => repository.withTransaction(Effect.zipLeft(self, repoFault("repo.commit"))),
      ping: repository.ping
    }
    const reset = Effect.zipRight(Ref.set(calls, []), Ref.set(faulted, []))
    const plan: FaultPlan["Type"] = {
      inject: (list) => Effect.zipRight(reset, Ref.set(faults, list.map((f) => ({ ...f, hits: 0 })))),
      clear: Effect.zipRight(reset, Ref.set(faults, [])),
      calls: Ref.get(calls),
      faultedKeys: (call) =>
        Effect.map(Ref.get(faulted), (list) => list.flatMap((f) => (f.call === call && f.key !== undefined ? [f.key] : [])))
    }
    return Context.make(ObjectStore, wrappedStore).pipe(
      Context.add(FileRepository, wrappedRepository),
      Context.add(FaultPlan, plan)
    )
  })).pipe(Layer.provide(inner))
