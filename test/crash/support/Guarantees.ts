import { PgClient } from "@effect/sql-pg"
import { Chunk, Effect, Stream } from "effect"
import type { Redacted } from "effect"
import { createHash } from "node:crypto"
import * as S3ObjectStore from "../../../src/adapters/objects/S3ObjectStore.js"
import type { S3Settings } from "../../../src/adapters/objects/S3ObjectStore.js"
import { ObjectKey } from "../../../src/domain/FileRecord.js"
import type { ObjectStore } from "../../../src/ports/ObjectStore.js"
import { readAll } from "../../support/ReadAll.js"
import type { Ledger, Violation } from "./Ledger.js"

interface FileRow {
  readonly id: string
  readonly size: string
  readonly sha256: string
  readonly object_key: string
  readonly status: string
}

export interface RepairRow {
  readonly object_key: string
  readonly file_id: string | null
  readonly problem: string
}

export interface FinalState {
  readonly committedFiles: number
  readonly objects: number
  readonly repairs: ReadonlyArray<RepairRow>
  readonly violations: ReadonlyArray<Violation>
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** What an object holds, or why it could not be read. */
const contentOf = (store: Pick<ObjectStore["Type"], "get">, key: string) =>
  readAll(store, ObjectKey.make(key)).pipe(
    Effect.map((object) => ({ _tag: "Found" as const, size: object.bytes.byteLength, sha256: sha256(object.bytes) })),
    Effect.catchTag("ObjectNotFound", () => Effect.succeed({ _tag: "Missing" as const }))
  )

/**
 * Reads the database and the bucket directly (no tandem code path but the S3
 * adapter) after the final reconciliation, and lists every way they break G1–G4
 * against what the clients were told.
 */
export const check = (options: {
  readonly databaseUrl: Redacted.Redacted
  readonly s3: S3Settings
  readonly prefix: string
  readonly ledger: Ledger
}): Effect.Effect<FinalState, unknown> =>
  Effect.gen(function*() {
    const { ledger, prefix } = options
    const violations: Array<Violation> = []
    const violation = (guarantee: Violation["guarantee"], subject: string, detail: string) =>
      violations.push({ guarantee, subject, detail })

    const sql = yield* PgClient.PgClient
    const rows = yield* sql<FileRow>`SELECT id::text AS id, size::text AS size, sha256, object_key, status FROM files`
    const repairs = yield* sql<RepairRow>`SELECT object_key, file_id::text AS file_id, problem FROM repairs`
    const store = yield* S3ObjectStore.makeBackend(options.s3)
    // The binding's marker (README, "The reconciler") is the store's, not a file's.
    const keys = new Set<string>(
      Chunk.toReadonlyArray(yield* Stream.runCollect(store.list(""))).filter((key) =>
        key !== `${prefix}.tandem-binding`
      )
    )

    // As tandem names objects (README): the prefix, then the file's id.
    const keyOf = (id: string) => `${prefix}${id}`
    const byId = new Map(rows.map((row) => [row.id, row]))
    const committedKeys = new Set(rows.filter((row) => row.status === "committed").map((row) => row.object_key))

    // G1: every committed record's object exists, with the recorded size and sha256.
    const committed = rows.filter((row) => row.status === "committed")
    const contents = new Map(
      yield* Effect.forEach(
        committed,
        (row) => Effect.map(contentOf(store, row.object_key), (content) => [row.id, content] as const),
        { concurrency: 8 }
      )
    )
    for (const row of rows) {
      if (row.status !== "committed") {
        violation("reconcile", row.id, `record still '${row.status}' after reconcile with a grace of 0`)
        continue
      }
      const content = contents.get(row.id)
      if (content === undefined || content._tag === "Missing") {
        violation("G1", row.id, `committed record, no object at ${row.object_key}`)
      } else if (content.size !== Number(row.size) || content.sha256 !== row.sha256) {
        violation(
          "G1",
          row.id,
          `object has ${content.size} bytes / ${content.sha256}, record says ${row.size} / ${row.sha256}`
        )
      }
    }

    // G2: every object belongs to a committed record (and sits under the prefix).
    for (const key of keys) {
      if (!key.startsWith(prefix)) {
        violation("G2", key, `object outside the prefix ${prefix}`)
      } else if (!committedKeys.has(key)) {
        violation(
          "G2",
          key,
          `object with no committed record (${byId.get(key.slice(prefix.length))?.status ?? "no record"})`
        )
      }
    }

    // G3: every acknowledged upload never deleted is committed, with the acknowledged bytes.
    for (const upload of ledger.inState("live")) {
      const row = byId.get(upload.id)
      const content = contents.get(upload.id)
      if (row === undefined) {
        violation("G3", upload.id, "acknowledged upload has no record")
      } else if (row.status !== "committed") {
        violation("G3", upload.id, `acknowledged upload is '${row.status}'`)
      } else if (row.sha256 !== upload.sha256) {
        violation("G3", upload.id, `record sha256 ${row.sha256}, acknowledged ${upload.sha256}`)
      } else if (content === undefined || content._tag === "Missing") {
        violation("G3", upload.id, "acknowledged upload lost its object")
      } else if (content.sha256 !== upload.sha256) {
        violation("G3", upload.id, `object hashes to ${content.sha256}, acknowledged ${upload.sha256}`)
      }
    }

    // G4: every acknowledged delete left no record and no object.
    for (const upload of ledger.inState("deleted")) {
      const row = byId.get(upload.id)
      const key = keyOf(upload.id)
      if (row !== undefined) {
        violation("G4", upload.id, `deleted (${upload.deletedBy ?? "?"}) file has a '${row.status}' record`)
      }
      if (keys.has(key)) {
        violation("G4", upload.id, `deleted (${upload.deletedBy ?? "?"}) file still has its object ${key}`)
      }
    }

    // The repair log: one repair per key, and never one of an acknowledged, live upload.
    const repairsPerKey = new Map<string, number>()
    for (const repair of repairs) {
      repairsPerKey.set(repair.object_key, (repairsPerKey.get(repair.object_key) ?? 0) + 1)
    }
    for (const [key, count] of repairsPerKey) {
      if (count > 1) {
        violation("reconcile", key, `${count} repairs of one key`)
      }
    }
    const live = new Map(ledger.inState("live").map((upload) => [keyOf(upload.id), upload]))
    for (const repair of repairs) {
      const upload = live.get(repair.object_key) ??
        (repair.file_id === null ? undefined : ledger.uploads.get(repair.file_id))
      if (upload?.state === "live") {
        violation("G3", upload.id, `the reconciler repaired an acknowledged upload: ${repair.problem}`)
      }
    }

    return { committedFiles: committed.length, objects: keys.size, repairs, violations }
  }).pipe(
    Effect.scoped,
    Effect.provide(PgClient.layer({ url: options.databaseUrl, maxConnections: 2 }))
  )
