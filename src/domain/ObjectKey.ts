import { Schema } from "effect"
import type { FileId } from "./FileRecord.js"
import { ObjectKey } from "./FileRecord.js"

/**
 * A prefix under which tandem owns every object: `files/`, `tenant-a/uploads/`.
 * Printable ASCII without `..` segments or a leading slash, ending with `/`.
 */
export const KeyPrefix = Schema.String.pipe(
  Schema.pattern(/^(?:[A-Za-z0-9!_.*'()-]+\/)+$/),
  Schema.filter((prefix) =>
    !prefix.split("/").some((segment) => segment === "." || segment === "..") || "no . or .. segments"
  ),
  Schema.brand("KeyPrefix")
)
export type KeyPrefix = typeof KeyPrefix.Type

/**
 * A file's object key is its generated id under the prefix. The client's file name
 * never takes part, so it can neither traverse paths nor collide with another file.
 */
export const objectKeyFor = (prefix: KeyPrefix, id: FileId): ObjectKey => ObjectKey.make(`${prefix}${id}`)
