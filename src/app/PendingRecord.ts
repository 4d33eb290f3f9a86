import { DateTime, Effect } from "effect"
import { checkedRecord, FileId, type FileRecord, type Owner, Sha256Hex } from "../domain/FileRecord.js"
import { type KeyPrefix, objectKeyFor } from "../domain/ObjectKey.js"
import type { AcceptedDeclaration } from "../domain/UploadPolicy.js"

/** The size and sha256 columns of an intent whose bytes are still arriving. */
const UNKNOWN_CONTENT = { size: 0, sha256: Sha256Hex.make("0".repeat(64)) }

/**
 * The record of a new upload, before any of its bytes: a random id, its object key
 * under the prefix (never the client's name), created now; size and sha256 come at
 * its commit.
 */
export const newPendingRecord =
  (keyPrefix: KeyPrefix) => (owner: Owner, accepted: AcceptedDeclaration): Effect.Effect<FileRecord> =>
    Effect.map(DateTime.now, (createdAt) => {
      const id = FileId.make(crypto.randomUUID(), true)
      return checkedRecord({
        id,
        owner,
        name: accepted.name,
        contentType: accepted.contentType,
        objectKey: objectKeyFor(keyPrefix, id),
        createdAt,
        ...UNKNOWN_CONTENT
      })
    })
