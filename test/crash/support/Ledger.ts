/**
 * What the clients of a crash run were told, and what they saw that breaks a
 * guarantee. Shared by every client loop (one JS thread, so plain mutation is safe).
 */

export type Guarantee = "G1" | "G2" | "G3" | "G4" | "reconcile"

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

export class Ledger {
  readonly uploads = new Map<string, AcknowledgedUpload>()
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

  acknowledgeUpload(id: string, sha256: string, size: number, history: string): AcknowledgedUpload {
    const upload: AcknowledgedUpload = { id, sha256, size, state: "live", history: [history] }
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
