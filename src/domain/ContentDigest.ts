import { createHash } from "node:crypto"
import { Sha256Hex } from "./FileRecord.js"

/** Lowercase hex SHA-256, the checksum clients get back and the ETag of the content. */
export const sha256Hex = (bytes: Uint8Array): Sha256Hex => Sha256Hex.make(createHash("sha256").update(bytes).digest("hex"))
