import { PgClient } from "@effect/sql-pg"
import { Chunk, Effect, Stream } from "effect"
import type { Redacted } from "effect"
import { createHash } from "node:crypto"
import * as S3ObjectStore from "../../../src/adapters/objects/S3ObjectStore.js"
import { ObjectKey } from "../../../src/domain/FileRecord.js"
import type { ObjectStore } from "../../../src/ports/ObjectStore.js"
import { readAll } from "../../support/ReadAll.js"
import * as CrashS3 from "./CrashS3.js"
import type { Ledger, Violation } from "./Ledger.js"

interface FileRow {
  readonly id: string
  readonly name: string
  readonly size: string
  readonly sha256: string
  readonly object_key: string
  readonly status: string
  readonly multipart_upload_id: string | null
}

/** A resumable upload's state (migration 0008), with its tail's size. */
interface ResumableRow {
  readonly id: string
  readonly upload_offset: string
  readonly upload_length: string
  readonly part_size: string
  readonly parts: number
  readonly live: boolean
  readonly tail_bytes: string
}

export interface RepairRow {
  readonly object_key: string
  readonly file_id: string | null
  readonly problem: string
}

export interface FinalState {
  readonly committedFiles: number
  readonly objects: number
  /** Intents left (pending, reclaiming, deleting), live resumable uploads included. */
  readonly intents: number
  /** Rows of resumable_uploads and resumable_tail. */
  readonly resumableRows: number
  readonly tailRows: number
  /** Unfinished multipart uploads in the store. */
  readonly multipartUploads: number
  /**
   * Of those, the ones no record ever named: a kill between starting a multipart upload
   * and recording its id (README, "S3 operations tandem relies on": the lifecycle rule's case).
   */
  readonly unrecordedMultipart: ReadonlyArray<string>
  /** Live resumable uploads no client knew: their creation's answer was lost. */
  readonly unknownResumable: ReadonlyArray<{ readonly id: string; readonly name: string }>
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
 * adapter, and s3rver's directory for its multipart uploads) after a final
 * reconciliation, and lists every way they break G1–G4 against what the clients
 * were told, and the resumable uploads' guarantees: `live`, while unfinished uploads
 * are still open (each is a pending intent the reconciler must leave alone, with its
 * acknowledged offset and the parts behind it); `settled`, once every one of them was
 * finished or terminated: nothing of them may be left (intents, resumable state,
 * multipart uploads, objects).
 */
export const check = (options: {
  readonly databaseUrl: Redacted.Redacted
  readonly s3: CrashS3.CrashS3
  readonly prefix: string
  readonly ledger: Ledger
  readonly phase: "live" | "settled"
}): Effect.Effect<FinalState, unknown> =>
  Effect.gen(function*() {
    const { ledger, prefix } = options
    const violations: Array<Violation> = []
    const violation = (guarantee: Violation["guarantee"], subject: string, detail: string) =>
      violations.push({ guarantee, subject, detail })

    const sql = yield* PgClient.PgClient
    const rows = yield* sql<FileRow>`SELECT id::text AS id, name, size::text AS size, sha256, object_key, status,
                                            multipart_upload_id FROM files`
    const repairs = yield* sql<RepairRow>`SELECT object_key, file_id::text AS file_id, problem FROM repairs`
    const resumableRows = yield* sql<ResumableRow>`
      SELECT r.file_id::text AS id, r.upload_offset::text AS upload_offset, r.upload_length::text AS upload_length,
             r.part_size::text AS part_size, cardinality(r.parts) AS parts, r.expires_at > now() AS live,
             (SELECT COALESCE(sum(octet_length(t.bytes)), 0) FROM resumable_tail t WHERE t.file_id = r.file_id)::text
               AS tail_bytes
      FROM resumable_uploads r`
    const [tails] = yield* sql<{ readonly rows: number }>`SELECT count(*)::int AS rows FROM resumable_tail`
    const multipart = yield* CrashS3.multipartUploads(options.s3)
    const store = yield* S3ObjectStore.makeBackend(options.s3.settings)
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
    // Every object is read and hashed once everything settled; while uploads are open, its presence is enough.
    const contents = new Map(
      yield* Effect.forEach(
        committed,
        (row) =>
          Effect.map(
            options.phase === "settled"
              ? contentOf(store, row.object_key)
              : Effect.succeed(
                keys.has(row.object_key)
                  ? { _tag: "Found" as const, size: Number(row.size), sha256: row.sha256 }
                  : { _tag: "Missing" as const }
              ),
            (content) => [row.id, content] as const
          ),
        { concurrency: 8 }
      )
    )
    const resumableById = new Map(resumableRows.map((row) => [row.id, row]))
    /** A pending upload the reconciler must leave alone: a live resumable one, while uploads may still go on. */
    const isLiveResumable = (row: FileRow | undefined) =>
      options.phase === "live" && row?.status === "pending" && resumableById.get(row.id)?.live === true
    for (const row of rows) {
      if (row.status !== "committed") {
        if (!isLiveResumable(row)) {
          violation(
            options.phase === "live" ? "reconcile" : "leftover",
            row.id,
            `record still '${row.status}' after reconcile with a grace of 0${
              resumableById.has(row.id) ? " (a resumable upload's)" : ""
            }`
          )
        }
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
      } else if (!committedKeys.has(key) && !isLiveResumable(byId.get(key.slice(prefix.length)))) {
        // (A live upload's object, when its last PATCH wrote it and was killed before committing.)
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

    // Resumable uploads. Their state must add up: the offset is the parts sent and the tail kept.
    const multipartById = new Map(multipart.map((upload) => [upload.uploadId, upload]))
    for (const resumable of resumableRows) {
      const row = byId.get(resumable.id)
      if (row?.status === "pending" && row.multipart_upload_id !== null) {
        ledger.multipartIdsRecorded.add(row.multipart_upload_id)
      }
      if (row?.status === "committed") {
        violation("leftover", resumable.id, "a committed file kept its resumable state")
      }
      const offset = Number(resumable.upload_offset)
      const partSize = Number(resumable.part_size)
      if (offset !== resumable.parts * partSize + Number(resumable.tail_bytes)) {
        violation(
          "offsets",
          resumable.id,
          `offset ${offset} is not ${resumable.parts} part(s) of ${partSize} + a tail of ${resumable.tail_bytes} bytes`
        )
      }
      if (resumable.parts > 0) {
        // The parts acknowledged must be in the store, under the multipart upload the record names.
        const upload = row?.multipart_upload_id === null || row === undefined
          ? undefined
          : multipartById.get(row.multipart_upload_id)
        const missing = Array.from({ length: resumable.parts }, (_, i) => i + 1).filter((n) =>
          !(upload?.parts.includes(n) ?? false)
        )
        if (upload === undefined || upload.key !== row?.object_key || missing.length > 0) {
          violation(
            "offsets",
            resumable.id,
            `${resumable.parts} acknowledged part(s), but the store has ${
              upload === undefined
                ? `no multipart upload ${row?.multipart_upload_id ?? "(none recorded)"}`
                : `parts [${upload.parts.join(", ")}] for ${upload.key}`
            }`
          )
        }
      }
    }
    // Every open upload a client knew is still there, at least at the offset acknowledged last
    // (or finished already, when its last PATCH's answer was lost).
    for (const entry of ledger.resumableIn("open")) {
      const row = byId.get(entry.id)
      const resumable = resumableById.get(entry.id)
      if (row?.status === "committed" && row.sha256 === entry.sha256 && Number(row.size) === entry.length) continue
      if (row === undefined && entry.terminateInDoubt) continue
      if (options.phase === "settled") {
        violation("offsets", entry.id, "open upload neither finished nor terminated by the final checks")
      } else if (row?.status !== "pending" || resumable === undefined || !resumable.live) {
        violation(
          "offsets",
          entry.id,
          `open upload (${entry.acknowledged} of ${entry.length} bytes acknowledged) is ${
            row === undefined
              ? "gone"
              : `'${row.status}'${resumable === undefined ? " without its resumable state" : ""}`
          }`
        )
      } else if (Number(resumable.upload_offset) < entry.acknowledged) {
        violation(
          "offsets",
          entry.id,
          `offset ${resumable.upload_offset} in the database, ${entry.acknowledged} acknowledged`
        )
      }
    }
    // A terminated upload left nothing: no record, no object.
    for (const entry of ledger.resumableIn("terminated")) {
      const row = byId.get(entry.id)
      if (row !== undefined) violation("leftover", entry.id, `terminated upload has a '${row.status}' record`)
      if (keys.has(keyOf(entry.id))) violation("leftover", entry.id, `terminated upload has an object`)
    }
    // Uploads no client knew (a creation whose answer was lost): never past what that creation carried.
    const knownIds = new Set(ledger.resumable.keys())
    const unknownResumable: Array<{ readonly id: string; readonly name: string }> = []
    for (const resumable of resumableRows) {
      const row = byId.get(resumable.id)
      if (knownIds.has(resumable.id) || row === undefined) continue
      const carried = ledger.resumableCreations.get(row.name)
      if (carried === undefined) {
        violation("leftover", resumable.id, `resumable upload of ${row.name}, which no client created`)
      } else if (Number(resumable.upload_offset) > carried) {
        violation(
          "offsets",
          resumable.id,
          `upload ${row.name}, whose creation's answer was lost, is at ${resumable.upload_offset}; it carried ${carried}`
        )
      }
      if (row.status === "pending") unknownResumable.push({ id: resumable.id, name: row.name })
    }
    // Multipart uploads: while uploads are open, those the records name; once settled, none
    // but what a kill left before its id was recorded (counted, not a violation).
    const liveMultipartIds = new Set(
      rows.filter((row) => isLiveResumable(row) && row.multipart_upload_id !== null).map((row) =>
        row.multipart_upload_id ?? ""
      )
    )
    const unrecordedMultipart: Array<string> = []
    for (const upload of multipart) {
      if (liveMultipartIds.has(upload.uploadId)) continue
      if (ledger.multipartIdsRecorded.has(upload.uploadId)) {
        violation(
          "leftover",
          upload.key,
          `multipart upload ${upload.uploadId} (parts [${upload.parts.join(", ")}]) left behind by its ${
            byId.get(upload.key.slice(prefix.length))?.status ?? "removed"
          } record`
        )
      } else unrecordedMultipart.push(`${upload.key} (${upload.uploadId}, parts [${upload.parts.join(", ")}])`)
    }
    if (options.phase === "settled" && (resumableRows.length > 0 || (tails?.rows ?? 0) > 0)) {
      violation(
        "leftover",
        "resumable_uploads",
        `${resumableRows.length} resumable upload row(s) and ${tails?.rows ?? 0} tail row(s) left`
      )
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
      const resumable = repair.file_id === null ? undefined : ledger.resumable.get(repair.file_id)
      if (resumable?.state === "open") {
        violation(
          "offsets",
          resumable.id,
          `the reconciler removed a live resumable upload (${resumable.acknowledged} of ${resumable.length} bytes acknowledged): ${repair.problem}`
        )
      }
    }

    return {
      committedFiles: committed.length,
      objects: keys.size,
      intents: rows.length - committed.length,
      resumableRows: resumableRows.length,
      tailRows: tails?.rows ?? 0,
      multipartUploads: multipart.length,
      unrecordedMultipart,
      unknownResumable,
      repairs,
      violations
    }
  }).pipe(
    Effect.scoped,
    Effect.provide(PgClient.layer({ url: options.databaseUrl, maxConnections: 2 }))
  )
