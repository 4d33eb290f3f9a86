import { Effect, Option, Stream } from "effect"
import { createHash } from "node:crypto"
import { markerKeyFor } from "../../src/app/StoreBinding.js"
import { LOCAL_OWNER } from "../../src/domain/FileRecord.js"
import { FileRepository } from "../../src/ports/FileRepository.js"
import { ObjectStore } from "../../src/ports/ObjectStore.js"
import { readAll } from "./ReadAll.js"
import { testPrefix } from "./TestServer.js"

/**
 * What clients were told: acknowledged uploads (id → sha256) and acknowledged
 * deletes; `deleteRequested` names files a DELETE was sent for, answered or not
 * (such a file may be gone without a 204).
 */
export interface Acknowledged {
  readonly uploads: ReadonlyMap<string, string>
  readonly deletes: ReadonlySet<string>
  readonly deleteRequested?: ReadonlySet<string>
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/**
 * The guarantees, read behind the API's back (README, "Consistency"). G1, G3 and
 * G4's first half hold at every moment; G2 and G4's second half after a
 * reconciliation pass (`afterReconcile`). Returns the violations, described.
 */
export const violations = (acknowledged: Acknowledged, options: { readonly afterReconcile: boolean }) =>
  Effect.gen(function*() {
    const store = yield* ObjectStore
    const repository = yield* FileRepository
    const found: Array<string> = []
    const page = yield* repository.list(LOCAL_OWNER, { limit: 1_000_000, after: Option.none() })
    const listed = new Map(page.items.map((record) => [record.id as string, record]))
    // G1: every listed file has its object, with the recorded size and sha256.
    for (const record of page.items) {
      const object = yield* Effect.either(readAll(store, record.objectKey))
      if (object._tag === "Left") found.push(`G1: ${record.id} is listed but its object is missing`)
      else if (object.right.bytes.byteLength !== record.size || sha256(object.right.bytes) !== record.sha256) {
        found.push(`G1: ${record.id}'s object does not match its record`)
      }
    }
    // G3: every acknowledged upload not deleted is listed, with the acknowledged sha256.
    for (const [id, hash] of acknowledged.uploads) {
      if (acknowledged.deletes.has(id) || acknowledged.deleteRequested?.has(id) === true) continue
      const record = listed.get(id)
      if (record === undefined) found.push(`G3: acknowledged upload ${id} is not listed`)
      else if (record.sha256 !== hash) found.push(`G3: ${id} is listed with another sha256`)
    }
    // G4: an acknowledged delete never reappears.
    for (const id of acknowledged.deletes) {
      if (listed.has(id)) found.push(`G4: deleted file ${id} is listed`)
    }
    if (options.afterReconcile) {
      const keys = Array.from(yield* Stream.runCollect(store.list(testPrefix))).filter((key) =>
        key !== markerKeyFor(testPrefix)
      )
      const committedKeys = new Set(page.items.map((record) => record.objectKey as string))
      // G2 (and G4's second half): every object belongs to a listed file.
      for (const key of keys) if (!committedKeys.has(key)) found.push(`G2: object ${key} belongs to no listed file`)
    }
    return found
  }).pipe(Effect.orDie)
