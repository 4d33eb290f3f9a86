import { Context, Effect, Layer, Ref } from "effect"
import { CommitOutcomeUnknown, DatabaseUnavailable, ObjectStoreUnavailable } from "../../src/domain/StorageErrors.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"

/** Every call a workflow or the reconciler makes through a port; "repo.commit" is a transaction's COMMIT. */
export const portCalls = [
  "store.put",
  "store.createMultipart",
  "store.uploadPart",
  "store.completeMultipart",
  "store.abortMultipart",
  "store.get",
  "store.head",
  "store.delete",
  "repo.insertPending",
  "repo.recordMultipart",
  "repo.commitPending",
  "repo.markDeleting",
  "repo.remove",
  "repo.find",
  "repo.list",
  "repo.staleIntents",
  "repo.unknownKeys",
  "repo.recordRepair",
  "repo.commit"
] as const
export type PortCall = typeof portCalls[number]

/**
 * What happens at a call:
 * - fail: it fails with the port's own error, having done nothing;
 * - ambiguous: it does its work, then reports failure (a lost answer; for
 *   "repo.commit", a COMMIT that succeeded but failed with CommitOutcomeUnknown);
 * - interrupt: the calling fiber is interrupted there (a crash, as the workflow sees it);
 * - hang: it never answers (the caller must time out or be interrupted);
 * - slow: it answers, 300 ms late.
 * `times` limits how many calls are hit (default: every one).
 */
export interface Fault {
  readonly call: PortCall
  readonly kind: "fail" | "ambiguous" | "interrupt" | "hang" | "slow"
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
 * Wraps real port implementations so a test can make any call fail, lie, hang or
 * interrupt. With no faults the wrapped ports behave as the inner ones.
 */
export const layer = <E>(inner: Layer.Layer<ObjectStore | FileRepository, E>) =>
  Layer.effectContext(Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const faults = yield* Ref.make<ReadonlyArray<Fault & { hits: number }>>([])
    const calls = yield* Ref.make<ReadonlyArray<PortCall>>([])
    const faulted = yield* Ref.make<ReadonlyArray<{ readonly call: PortCall; readonly key: string | undefined }>>([])

    /** Records the call and takes a matching fault, if any is left. */
    const take = (call: PortCall, key: string | undefined) =>
      Effect.gen(function*() {
        yield* Ref.update(calls, (list) => [...list, call])
        const fault = yield* Ref.modify(faults, (list) => {
          const index = list.findIndex((f) => f.call === call && (f.times === undefined || f.hits < f.times))
          const hit = list[index]
          if (hit === undefined) return [undefined, list] as const
          return [hit, list.map((f, i) => (i === index ? { ...f, hits: f.hits + 1 } : f))] as const
        })
        if (fault !== undefined) yield* Ref.update(faulted, (list) => [...list, { call, key }])
        return fault?.kind
      })

    /** Runs `self` under whatever fault the plan holds for `call`. */
    const at = <Err>(call: PortCall, key: string | undefined, toError: (cause: Error) => Err) =>
    <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | Err, R> =>
      Effect.flatMap(take(call, key), (kind): Effect.Effect<A, E | Err, R> => {
        switch (kind) {
          case undefined:
            return self
          case "fail":
            return Effect.fail(toError(injected(call)))
          case "ambiguous":
            return Effect.zipRight(self, Effect.fail(toError(injected(call))))
          case "interrupt":
            return Effect.interrupt
          case "hang":
            return Effect.never
          case "slow":
            return Effect.delay(self, "300 millis")
        }
      })
    const storeFault = (call: PortCall, key: string) =>
      at(call, key, (cause) => new ObjectStoreUnavailable({ operation: call, key, cause }))
    const repoFault = (call: PortCall) => at(call, undefined, (cause) => new DatabaseUnavailable({ operation: call, cause }))

    const wrappedStore: ObjectStore["Type"] = {
      put: (key, bytes, options) => storeFault("store.put", key)(store.put(key, bytes, options)),
      createMultipart: (key, options) => storeFault("store.createMultipart", key)(store.createMultipart(key, options)),
      uploadPart: (upload, partNumber, bytes) =>
        storeFault("store.uploadPart", upload.key)(store.uploadPart(upload, partNumber, bytes)),
      completeMultipart: (upload, parts) =>
        storeFault("store.completeMultipart", upload.key)(store.completeMultipart(upload, parts)),
      abortMultipart: (upload) => storeFault("store.abortMultipart", upload.key)(store.abortMultipart(upload)),
      get: (key, range) => storeFault("store.get", key)(store.get(key, range)),
      head: (key) => storeFault("store.head", key)(store.head(key)),
      delete: (key) => storeFault("store.delete", key)(store.delete(key)),
      list: (prefix) => store.list(prefix),
      ping: store.ping
    }

    const wrappedRepository: FileRepository["Type"] = {
      insertPending: (record) => repoFault("repo.insertPending")(repository.insertPending(record)),
      recordMultipart: (id, uploadId) => repoFault("repo.recordMultipart")(repository.recordMultipart(id, uploadId)),
      commitPending: (id, content) => repoFault("repo.commitPending")(repository.commitPending(id, content)),
      markDeleting: (id) => repoFault("repo.markDeleting")(repository.markDeleting(id)),
      remove: (id) => repoFault("repo.remove")(repository.remove(id)),
      find: (id) => repoFault("repo.find")(repository.find(id)),
      list: (options) => repoFault("repo.list")(repository.list(options)),
      staleIntents: (options) => repoFault("repo.staleIntents")(repository.staleIntents(options)),
      unknownKeys: (keys) => repoFault("repo.unknownKeys")(repository.unknownKeys(keys)),
      recordRepair: (repair) => repoFault("repo.recordRepair")(repository.recordRepair(repair)),
      repairs: (limit) => repository.repairs(limit),
      // The COMMIT's fault is taken when the body is done. fail, interrupt and hang
      // happen inside the transaction (it rolls back); ambiguous commits, then
      // reports CommitOutcomeUnknown.
      withTransaction: (self) => {
        const body = Effect.flatMap(self, (value) =>
          Effect.flatMap(take("repo.commit", undefined), (kind) => {
            switch (kind) {
              case "fail":
                return Effect.fail(new DatabaseUnavailable({ operation: "repo.commit", cause: injected("repo.commit") }))
              case "interrupt":
                return Effect.interrupt
              case "hang":
                return Effect.never
              case "slow":
                return Effect.as(Effect.sleep("300 millis"), { value, ambiguous: false })
              default:
                return Effect.succeed({ value, ambiguous: kind === "ambiguous" })
            }
          }))
        return Effect.flatMap(repository.withTransaction(body), ({ ambiguous, value }) =>
          ambiguous ? Effect.fail(new CommitOutcomeUnknown({ cause: injected("repo.commit") })) : Effect.succeed(value))
      },
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
