import { Context, Deferred, Effect, Layer, Ref } from "effect"
import type { MultipartUpload, ObjectBackend } from "../../src/adapters/objects/ObjectBackend.js"
import { toObjectStore } from "../../src/adapters/objects/ObjectBackend.js"
import { CommitOutcomeUnknown, DatabaseUnavailable, ObjectStoreUnavailable } from "../../src/domain/StorageErrors.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import { Backend } from "./Backends.js"

/**
 * Every call a workflow or the reconciler makes through a port, and every call the
 * object store makes of its backend to serve them ("store.*"); "repo.commit" is a
 * transaction's COMMIT.
 */
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
  "repo.claimStaleIntents",
  "repo.unknownKeys",
  "repo.recordRepair",
  "repo.insertResumable",
  "repo.findResumable",
  "repo.resumableTail",
  "repo.advanceResumable",
  "repo.lockResumable",
  "repo.dropResumable",
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
 * - slow: it answers, 300 ms late;
 * - pause: it does its work, then waits for `resume` before it answers (a
 *   deterministic window after the call, for the test to act in).
 * `after` lets that many matching calls pass first (the 3rd part: `after: 2`);
 * `times` limits how many calls are hit then (default: every one).
 */
export interface Fault {
  readonly call: PortCall
  readonly kind: "fail" | "ambiguous" | "interrupt" | "hang" | "slow" | "pause"
  readonly after?: number
  readonly times?: number
  /** Only calls on these object keys (store calls); every key when absent. */
  readonly keys?: ReadonlyArray<string>
}

export class FaultPlan extends Context.Tag("test/FaultPlan")<FaultPlan, {
  readonly inject: (faults: ReadonlyArray<Fault>) => Effect.Effect<void>
  readonly clear: Effect.Effect<void>
  /** The calls made since the last inject/clear, in order. */
  readonly calls: Effect.Effect<ReadonlyArray<PortCall>>
  /** The object keys of store calls a fault hit since the last inject/clear. */
  readonly faultedKeys: (call: PortCall) => Effect.Effect<ReadonlyArray<string>>
  /**
   * Multipart uploads the backend started and that were neither completed nor aborted
   * since the layer was built: what "nothing left behind" counts beside intents,
   * records and objects.
   */
  readonly openUploads: Effect.Effect<ReadonlyArray<string>>
  /**
   * Uploads an ambiguous CreateMultipartUpload started whose id never reached the
   * caller, and that are still open: beyond tandem's reach (a lifecycle rule's job).
   */
  readonly lostUploads: Effect.Effect<ReadonlyArray<string>>
  /** Lets every paused call answer. */
  readonly resume: Effect.Effect<void>
  /** Waits until `call` has been made since the last inject/clear (a deterministic hook instead of a sleep). */
  readonly reached: (call: PortCall) => Effect.Effect<void>
}>() {}

const injected = (call: PortCall) => new Error(`fault injected at ${call}`)

/**
 * Wraps a real backend and repository so a test can make any call fail, lie, hang
 * or interrupt; the ObjectStore port is built over the wrapped backend, writing in
 * parts of `partSize`. With no faults everything behaves as the inner layers.
 */
export const layer = <E>(inner: Layer.Layer<Backend | FileRepository, E>, options: { readonly partSize: number }) =>
  Layer.effectContext(Effect.gen(function*() {
    const store = yield* Backend
    const repository = yield* FileRepository
    const waiting = yield* Ref.make<ReadonlyArray<{ readonly call: PortCall; readonly done: Deferred.Deferred<void> }>>(
      []
    )
    const faults = yield* Ref.make<ReadonlyArray<Fault & { seen: number; hits: number }>>([])
    const paused = yield* Ref.make(yield* Deferred.make<void>())
    const calls = yield* Ref.make<ReadonlyArray<PortCall>>([])
    const faulted = yield* Ref.make<ReadonlyArray<{ readonly call: PortCall; readonly key: string | undefined }>>([])

    /** Records the call and takes a matching fault, if any is left. */
    const take = (call: PortCall, key: string | undefined) =>
      Effect.gen(function*() {
        yield* Ref.update(calls, (list) => [...list, call])
        const woken = yield* Ref.modify(waiting, (list) => [
          list.filter((w) => w.call === call),
          list.filter((w) => w.call !== call)
        ])
        for (const waiter of woken) yield* Deferred.succeed(waiter.done, undefined)
        const fault = yield* Ref.modify(faults, (list) => {
          const index = list.findIndex((f) =>
            f.call === call && (f.times === undefined || f.hits < f.times) &&
            (f.keys === undefined || (key !== undefined && f.keys.includes(key)))
          )
          const hit = list[index]
          if (hit === undefined) return [undefined, list] as const
          const passes = hit.seen < (hit.after ?? 0)
          const next = list.map((
            f,
            i
          ) => (i === index ? { ...f, seen: f.seen + 1, hits: f.hits + (passes ? 0 : 1) } : f))
          return [passes ? undefined : hit, next] as const
        })
        if (fault !== undefined) yield* Ref.update(faulted, (list) => [...list, { call, key }])
        return fault?.kind
      })

    /** Runs `self` under whatever fault the plan holds for `call`. */
    const at = <Err, A0 = unknown>(
      call: PortCall,
      key: string | undefined,
      toError: (cause: Error) => Err,
      onLostAnswer: (value: A0) => Effect.Effect<void> = () => Effect.void
    ) =>
    <A extends A0, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | Err, R> =>
      Effect.flatMap(take(call, key), (kind): Effect.Effect<A, E | Err, R> => {
        switch (kind) {
          case undefined:
            return self
          case "fail":
            return Effect.fail(toError(injected(call)))
          case "ambiguous":
            return Effect.flatMap(
              self,
              (value) => Effect.zipRight(onLostAnswer(value), Effect.fail(toError(injected(call))))
            )
          case "interrupt":
            return Effect.interrupt
          case "hang":
            return Effect.never
          case "slow":
            return Effect.delay(self, "300 millis")
          case "pause":
            return Effect.tap(self, () => Effect.flatMap(Ref.get(paused), Deferred.await))
        }
      })
    const storeFault = (call: PortCall, key: string) =>
      at(call, key, (cause) => new ObjectStoreUnavailable({ operation: call, key, cause }))
    const repoFault = (call: PortCall) =>
      at(call, undefined, (cause) => new DatabaseUnavailable({ operation: call, cause }))

    const open = yield* Ref.make<ReadonlyMap<string, "known" | "lost">>(new Map())
    const closed = (uploadId: string) => Ref.update(open, (map) => new Map([...map].filter(([id]) => id !== uploadId)))
    const openOf = (state: "known" | "lost") =>
      Effect.map(Ref.get(open), (map) => [...map].flatMap(([id, s]) => (s === state ? [id] : [])))

    const wrappedStore: ObjectBackend = {
      put: (key, bytes, options) => storeFault("store.put", key)(store.put(key, bytes, options)),
      createMultipart: (key, options) =>
        at(
          "store.createMultipart",
          key,
          (cause) => new ObjectStoreUnavailable({ operation: "store.createMultipart", key, cause }),
          // The upload exists, but its id is lost with the answer.
          (upload: MultipartUpload) => Ref.update(open, (map) => new Map([...map, [upload.uploadId, "lost"]]))
        )(
          Effect.tap(store.createMultipart(key, options), (upload) =>
            Ref.update(open, (map) => new Map([...map, [upload.uploadId, "known"]])))
        ),
      uploadPart: (upload, partNumber, bytes) =>
        storeFault("store.uploadPart", upload.key)(store.uploadPart(upload, partNumber, bytes)),
      // A resumable upload's part and completion are faulted as any multipart upload's.
      uploadPartAt: (upload, part) => storeFault("store.uploadPart", upload.key)(store.uploadPartAt(upload, part)),
      completeWith: (upload, receipts, options) =>
        storeFault("store.completeMultipart", upload.key)(
          Effect.zipLeft(store.completeWith(upload, receipts, options), closed(upload.uploadId))
        ),
      completeMultipart: (upload, parts, options) =>
        storeFault("store.completeMultipart", upload.key)(
          Effect.zipLeft(store.completeMultipart(upload, parts, options), closed(upload.uploadId))
        ),
      abortMultipart: (upload) =>
        storeFault("store.abortMultipart", upload.key)(
          Effect.zipLeft(store.abortMultipart(upload), closed(upload.uploadId))
        ),
      get: (key, range) => storeFault("store.get", key)(store.get(key, range)),
      head: (key) => storeFault("store.head", key)(store.head(key)),
      delete: (key) => storeFault("store.delete", key)(store.delete(key)),
      list: (prefix) => store.list(prefix),
      ping: store.ping
    }

    const wrappedRepository: FileRepository["Type"] = {
      insertPending: (record) => repoFault("repo.insertPending")(repository.insertPending(record)),
      insertPendingWithKey: (record, key, ttl) =>
        repoFault("repo.insertPending")(repository.insertPendingWithKey(record, key, ttl)),
      purgeIdempotencyKeys: (ttl) => repository.purgeIdempotencyKeys(ttl),
      recordMultipart: (id, uploadId) => repoFault("repo.recordMultipart")(repository.recordMultipart(id, uploadId)),
      commitPending: (id, content, quota) =>
        repoFault("repo.commitPending")(repository.commitPending(id, content, quota)),
      markDeleting: (owner, id) => repoFault("repo.markDeleting")(repository.markDeleting(owner, id)),
      remove: (id) => repoFault("repo.remove")(repository.remove(id)),
      find: (owner, id) => repoFault("repo.find")(repository.find(owner, id)),
      findAny: (id) => repoFault("repo.find")(repository.findAny(id)),
      list: (owner, options) => repoFault("repo.list")(repository.list(owner, options)),
      cutoff: (olderThan) => repository.cutoff(olderThan),
      staleIntents: (options) => repoFault("repo.staleIntents")(repository.staleIntents(options)),
      claimStaleIntents: (options) => repoFault("repo.claimStaleIntents")(repository.claimStaleIntents(options)),
      unknownKeys: (keys) => repoFault("repo.unknownKeys")(repository.unknownKeys(keys)),
      recordRepair: (repair) => repoFault("repo.recordRepair")(repository.recordRepair(repair)),
      repairs: (limit) => repository.repairs(limit),
      insertCommitted: (record) => repository.insertCommitted(record),
      binding: repository.binding,
      bind: (id) => repository.bind(id),
      insertResumable: (record, upload) =>
        repoFault("repo.insertResumable")(repository.insertResumable(record, upload)),
      findResumable: (owner, id) => repoFault("repo.findResumable")(repository.findResumable(owner, id)),
      resumableTail: (id) => repoFault("repo.resumableTail")(repository.resumableTail(id)),
      advanceResumable: (id, progress) => repoFault("repo.advanceResumable")(repository.advanceResumable(id, progress)),
      lockResumable: (id) => repoFault("repo.lockResumable")(repository.lockResumable(id)),
      dropResumable: (id) => repoFault("repo.dropResumable")(repository.dropResumable(id)),
      // The COMMIT's fault is taken when the body is done. fail, interrupt and hang
      // happen inside the transaction (it rolls back); ambiguous commits, then
      // reports CommitOutcomeUnknown; pause commits, then waits for `resume`.
      withTransaction: (self) => {
        const body = Effect.flatMap(self, (value) =>
          Effect.flatMap(take("repo.commit", undefined), (kind) => {
            switch (kind) {
              case "fail":
                return Effect.fail(
                  new DatabaseUnavailable({ operation: "repo.commit", cause: injected("repo.commit") })
                )
              case "interrupt":
                return Effect.interrupt
              case "hang":
                return Effect.never
              case "slow":
                return Effect.as(Effect.sleep("300 millis"), { value, ambiguous: false, pause: false })
              default:
                return Effect.succeed({ value, ambiguous: kind === "ambiguous", pause: kind === "pause" })
            }
          }))
        return Effect.flatMap(repository.withTransaction(body), ({ ambiguous, pause, value }) =>
          ambiguous
            ? Effect.fail(new CommitOutcomeUnknown({ cause: injected("repo.commit") }))
            : pause
            ? Effect.as(Effect.flatMap(Ref.get(paused), Deferred.await), value)
            : Effect.succeed(value))
      },
      ping: repository.ping
    }
    const reset = Effect.zipRight(Ref.set(calls, []), Ref.set(faulted, []))
    const plan: FaultPlan["Type"] = {
      inject: (list) => Effect.zipRight(reset, Ref.set(faults, list.map((f) => ({ ...f, seen: 0, hits: 0 })))),
      clear: Effect.zipRight(reset, Ref.set(faults, [])),
      calls: Ref.get(calls),
      faultedKeys: (call) =>
        Effect.map(
          Ref.get(faulted),
          (list) => list.flatMap((f) => (f.call === call && f.key !== undefined ? [f.key] : []))
        ),
      openUploads: openOf("known"),
      lostUploads: openOf("lost"),
      resume: Deferred.make<void>().pipe(
        Effect.flatMap((next) => Ref.getAndSet(paused, next)),
        Effect.flatMap((gate) => Deferred.succeed(gate, undefined))
      ),
      reached: (call) =>
        Effect.gen(function*() {
          const done = yield* Deferred.make<void>()
          const already = yield* Ref.modify(calls, (list) => [list.includes(call), list])
          if (already) return
          yield* Ref.update(waiting, (list) => [...list, { call, done }])
          // A call made between the check and the registration above.
          if ((yield* Ref.get(calls)).includes(call)) return
          yield* Deferred.await(done)
        })
    }
    return Context.make(ObjectStore, toObjectStore(wrappedStore, options)).pipe(
      Context.add(Backend, wrappedStore),
      Context.add(FileRepository, wrappedRepository),
      Context.add(FaultPlan, plan)
    )
  })).pipe(Layer.provide(inner))
