/**
 * What the clients of a crash run were told, and what they saw that breaks a
 * guarantee. Shared by every client loop (one JS thread, so plain mutation is safe).
 */

/**
 * G1–G4 (README, "Consistency"); `reconcile`: an intent the final reconcile left;
 * `offsets`: a resumable upload that lost an acknowledged offset, or could not go on
 * from it; `leftover`: something of a finished or terminated resumable upload left
 * behind (a record, its resumable state, a multipart upload in the store).
 */
export type Guarantee = "G1" | "G2" | "G3" | "G4" | "reconcile" | "offsets" | "leftover"

export interface Violation {
  readonly guarantee: Guarantee
  /** The file id or object key concerned. */
  readonly subject: string
  readonly detail: string
}

/**
 * An upload that got a 201. `live`: no delete sent yet, so it must stay readable
 * (G3). `doubt`: a delete was sent and its answer lost; the file may or may not be
 * gone. `deleted`: a delete got a 204 (or a 404 after a lost answer); it must never
 * come back (G4).
 */
export interface AcknowledgedUpload {
  readonly id: string
  readonly sha256: string
  readonly size: number
  state: "live" | "doubt" | "deleted"
  /** How the delete was confirmed, when it was. */
  deletedBy?: "204" | "404-after-doubt"
  /** performance.now() when the delete was confirmed. */
  deletedAt?: number
  /** What the client sent and heard about this file, with times, for diagnosis. */
  readonly history: Array<string>
}

/**
 * A resumable (tus) upload that got its 201. `open`: not finished; every offset a
 * PATCH's 204 acknowledged must stay (HEAD reports at least `acknowledged`), and the
 * upload must still be able to go on from it. `finished`: a 204 with the file's
 * Location (the file is then an acknowledged upload like any other, in `uploads`).
 * `terminated`: a DELETE got a 204 (or a 404 after a lost answer); nothing of it may
 * remain. `lost`: the server forgot it (a violation, already recorded).
 */
export interface ResumableEntry {
  readonly id: string
  /** Its file name, unique to the run. */
  readonly name: string
  readonly length: number
  /** The content is `resumableText(seed, length)`. */
  readonly seed: number
  readonly sha256: string
  /** The largest Upload-Offset a 204 acknowledged (0 from the creation). */
  acknowledged: number
  /** Every Upload-Offset a 204 acknowledged, in order. */
  readonly offsets: Array<number>
  state: "open" | "finished" | "terminated" | "lost"
  /** Left unfinished on purpose by its client (the final checks finish or terminate it). */
  abandoned: boolean
  /** A DELETE was sent and its answer lost: a 404 then confirms it. */
  terminateInDoubt: boolean
  /** What the client sent and heard about this upload, with times, for diagnosis. */
  readonly history: Array<string>
}

export class Ledger {
  readonly uploads = new Map<string, AcknowledgedUpload>()
  /** Resumable uploads, by id. */
  readonly resumable = new Map<string, ResumableEntry>()
  /**
   * Every creation sent, by file name: the bytes it carried (creation-with-upload).
   * One whose answer was lost left an upload no client knows, at most that far.
   */
  readonly resumableCreations = new Map<string, number>()
  /** Multipart upload ids the database named at some point (so the final check knows them from strays). */
  readonly multipartIdsRecorded = new Set<string>()
  resumableCreated = 0
  offsetsAcknowledged = 0
  bytesAcknowledged = 0
  resumableFinished = 0
  resumableTerminated = 0
  /** PATCHes of an upload sent to another replica than its PATCH before. */
  replicaSwitches = 0
  uploadsAcknowledged = 0
  deletesAcknowledged = 0
  deletesConfirmedBy404 = 0
  readsVerified = 0
  /** Everything that was neither an acknowledgement nor a violation, by kind. */
  readonly errors = new Map<string, number>()
  readonly violations: Array<Violation> = []

  get clientErrors(): number {
    let total = 0
    for (const count of this.errors.values()) total += count
    return total
  }

  acknowledgeUpload(
    id: string,
    sha256: string,
    size: number,
    history: string | ReadonlyArray<string>
  ): AcknowledgedUpload {
    const upload: AcknowledgedUpload = { id, sha256, size, state: "live", history: [history].flat() }
    this.uploads.set(id, upload)
    this.uploadsAcknowledged++
    return upload
  }

  acknowledgeDelete(upload: AcknowledgedUpload, by: "204" | "404-after-doubt") {
    upload.state = "deleted"
    upload.deletedBy = by
    upload.deletedAt = performance.now()
    if (by === "204") this.deletesAcknowledged++
    else this.deletesConfirmedBy404++
  }

  createResumable(
    entry: Omit<ResumableEntry, "acknowledged" | "offsets" | "state" | "abandoned" | "terminateInDoubt">
  ) {
    const created: ResumableEntry = {
      ...entry,
      acknowledged: 0,
      offsets: [],
      state: "open",
      abandoned: false,
      terminateInDoubt: false
    }
    this.resumable.set(created.id, created)
    this.resumableCreated++
    return created
  }

  /** A 204's Upload-Offset (or a creation's, with bytes): it may never be lost. */
  acknowledgeOffset(entry: ResumableEntry, offset: number) {
    if (offset < entry.acknowledged) {
      this.violation(
        "offsets",
        entry.id,
        `204 with Upload-Offset ${offset}, below the ${entry.acknowledged} acknowledged`
      )
    }
    if (offset > entry.acknowledged) this.bytesAcknowledged += offset - entry.acknowledged
    entry.acknowledged = Math.max(entry.acknowledged, offset)
    entry.offsets.push(offset)
    this.offsetsAcknowledged++
  }

  /** The last PATCH's 204 with the file's Location: from now on the upload is an acknowledged file. */
  finishResumable(entry: ResumableEntry): AcknowledgedUpload {
    entry.state = "finished"
    this.resumableFinished++
    return this.acknowledgeUpload(entry.id, entry.sha256, entry.length, entry.history)
  }

  terminateResumable(entry: ResumableEntry) {
    entry.state = "terminated"
    this.resumableTerminated++
  }

  /** Resumable uploads in one state. */
  resumableIn(state: ResumableEntry["state"]): ReadonlyArray<ResumableEntry> {
    return Array.from(this.resumable.values()).filter((entry) => entry.state === state)
  }

  error(kind: string) {
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1)
  }

  violation(guarantee: Guarantee, subject: string, detail: string) {
    this.violations.push({ guarantee, subject, detail })
  }

  /** Uploads in one state. */
  inState(state: AcknowledgedUpload["state"]): ReadonlyArray<AcknowledgedUpload> {
    return Array.from(this.uploads.values()).filter((upload) => upload.state === state)
  }
}
