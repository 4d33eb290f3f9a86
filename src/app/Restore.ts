import { Effect, Option, Schema, Stream } from "effect"
import { createHash } from "node:crypto"
import { checkedRecord, FileId, type ObjectKey, Owner, Sha256Hex } from "../domain/FileRecord.js"
import { MediaType } from "../domain/FileRecord.js"
import { objectKeyFor } from "../domain/ObjectKey.js"
import { describedFile } from "../domain/ObjectMetadata.js"
import { mediaTypeOf, validateName } from "../domain/UploadPolicy.js"
import { FileRepository } from "../ports/FileRepository.js"
import { ObjectStore } from "../ports/ObjectStore.js"
import { orphanBatches } from "./Orphans.js"
import { describeUnbound, isBound, StoreBinding } from "./StoreBinding.js"
import { UploadSettings } from "./UploadSettings.js"

export interface RestoreReport {
  /** Files re-created from their objects: committed, with their recorded id, name and sha256. */
  readonly restored: ReadonlyArray<{ readonly key: ObjectKey; readonly id: string; readonly name: string }>
  /** Orphans left as they were, and why. */
  readonly refused: ReadonlyArray<{ readonly key: ObjectKey; readonly reason: string }>
  /** None when the store and the database are not bound to each other: nothing was restored. */
  readonly unbound: Option.Option<string>
}

const decodeFileId = Schema.decodeUnknownOption(FileId)
const decodeSha256 = Schema.decodeUnknownOption(Sha256Hex)
const decodeOwner = Schema.decodeUnknownOption(Owner)

/**
 * Re-creates the records of orphan objects from what the objects say of themselves
 * (their metadata: id, original name, created-at, size, sha256, and their content
 * type): how an operator recovers after the database was restored from a backup
 * older than the bucket. Each object's bytes are read and checked against the size
 * and sha256 it recorded before its record is written; one that fails, or that does
 * not describe a file, stays an orphan and is reported. Runs only when the store
 * and the database are bound to each other (bind them first).
 */
export class Restore extends Effect.Service<Restore>()("app/Restore", {
  dependencies: [StoreBinding.Default],
  effect: Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const { keyPrefix } = yield* UploadSettings
    const binding = yield* StoreBinding

    /** The object's bytes, hashed and counted as they stream. */
    const digest = (key: ObjectKey) =>
      Effect.flatMap(store.get(key), (object) => {
        const hash = createHash("sha256")
        return Stream.runFold(object.body, 0, (size, chunk) => {
          hash.update(chunk)
          return size + chunk.byteLength
        }).pipe(Effect.map((size) => ({ size, sha256: hash.digest("hex") })))
      })

    /** One orphan: the record it describes, written once its bytes are checked; or why not. */
    const restoreOne = (key: ObjectKey) =>
      Effect.gen(function*() {
        const refuse = (reason: string) => ({ _tag: "Refused", key, reason } as const)
        const info = yield* store.head(key)
        if (Option.isNone(info)) return refuse("it is gone")
        const described = describedFile(info.value.metadata)
        if (Option.isNone(described)) {
          return refuse("its metadata does not describe a file (id, name, created-at, size, sha256)")
        }
        const file = described.value
        const id = decodeFileId(file.id)
        const owner = decodeOwner(file.owner)
        const sha256 = decodeSha256(file.sha256)
        if (Option.isNone(id) || Option.isNone(sha256) || Option.isNone(owner)) {
          return refuse("its metadata names no valid id, owner or sha256")
        }
        if (objectKeyFor(keyPrefix, id.value) !== key) {
          return refuse(`its metadata names file ${file.id}, whose key is another`)
        }
        const name = yield* Effect.either(validateName(file.name))
        if (name._tag === "Left") return refuse(`its recorded name is not acceptable: ${name.left.reason}`)
        const actual = yield* digest(key).pipe(Effect.catchTag("ObjectNotFound", () => Effect.succeed(undefined)))
        if (actual === undefined) return refuse("it is gone")
        if (actual.size !== file.size || actual.sha256 !== sha256.value) {
          return refuse(
            `its bytes (${actual.size}, sha256 ${actual.sha256}) do not match what it recorded (${file.size}, ${file.sha256})`
          )
        }
        const record = checkedRecord({
          id: id.value,
          owner: owner.value,
          name: name.right,
          size: file.size,
          contentType: MediaType.make(mediaTypeOf(info.value.contentType)),
          sha256: sha256.value,
          objectKey: key,
          createdAt: file.createdAt
        })
        if (!(yield* repository.insertCommitted(record))) return refuse(`a record with id ${file.id} or its key exists`)
        return { _tag: "Restored", key, id: record.id, name: record.name } as const
      })

    const run = Effect.fn("Restore.run")(function*() {
      const bound = yield* binding.check
      if (!isBound(bound)) {
        return {
          restored: [],
          refused: [],
          unbound: Option.some(describeUnbound(bound, binding.markerKey))
        } satisfies RestoreReport
      }
      const outcomes = yield* orphanBatches(store, repository, keyPrefix, binding.markerKey).pipe(
        Stream.mapConcat((batch) => batch.orphans),
        Stream.mapEffect(restoreOne, { concurrency: 4 }),
        Stream.runCollect
      )
      const all = Array.from(outcomes)
      const report: RestoreReport = {
        restored: all.flatMap((o) => o._tag === "Restored" ? [{ key: o.key, id: o.id, name: o.name }] : []),
        refused: all.flatMap((o) => o._tag === "Refused" ? [{ key: o.key, reason: o.reason }] : []),
        unbound: Option.none()
      }
      yield* Effect.logWarning("restored files from their objects").pipe(
        Effect.annotateLogs({ restored: report.restored.length, refused: report.refused.length })
      )
      return report
    })

    return { run } as const
  })
}) {}
