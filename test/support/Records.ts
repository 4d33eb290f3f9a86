import type { DateTime } from "effect"
import {
  FileId,
  FileName,
  FileRecord,
  LOCAL_OWNER,
  MediaType,
  ObjectKey,
  Sha256Hex
} from "../../src/domain/FileRecord.js"
import { testPrefix } from "./TestServer.js"

/** A record as a test seeds it straight into a repository (an intent, a stray), keyed under the test prefix. */
export const recordFor = (name: string, createdAt: DateTime.Utc) => {
  const id = FileId.make(crypto.randomUUID())
  return new FileRecord({
    id,
    owner: LOCAL_OWNER,
    name: FileName.make(name),
    size: 600,
    contentType: MediaType.make("text/plain"),
    sha256: Sha256Hex.make("0".repeat(64)),
    objectKey: ObjectKey.make(`${testPrefix}${id}`),
    createdAt
  })
}
