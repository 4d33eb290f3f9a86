import { Schema } from "effect"
import { FileId, ObjectKey } from "./FileRecord.js"

/** What the reconciler found wrong with an object key. */
export const RepairProblem = Schema.Literal(
  /** An upload's intent outlived the grace period without committing. */
  "abandoned-upload",
  /** A delete was decided (tombstone) but never finished. */
  "unfinished-delete",
  /** An object under the prefix that no record names. */
  "orphan-object"
)
export type RepairProblem = typeof RepairProblem.Type

/** One entry of the repair log: what was wrong with a key, what was done, when. */
export class Repair extends Schema.Class<Repair>("Repair")({
  objectKey: ObjectKey,
  fileId: Schema.OptionFromNullOr(FileId),
  problem: RepairProblem,
  action: Schema.String,
  repairedAt: Schema.DateTimeUtc
}) {}
