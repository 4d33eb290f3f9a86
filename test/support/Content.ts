import { Effect, Either } from "effect"
import { createHash } from "node:crypto"
import type { FileService } from "../../src/app/FileService.js"
import { type CheckedContent, ContentCheck } from "../../src/domain/ContentCheck.js"
import { LOCAL_OWNER, type ObjectKey, type Owner } from "../../src/domain/FileRecord.js"
import type { FileTooLarge, FileTooSmall, NotUtf8 } from "../../src/domain/UploadErrors.js"
import type { DeclaredFile, UploadPolicy } from "../../src/domain/UploadPolicy.js"
import { validateDeclaration } from "../../src/domain/UploadPolicy.js"
import { type ContentReader, ofBytes } from "../../src/ports/ContentReader.js"
import type { ObjectStore } from "../../src/ports/ObjectStore.js"

/** Content already in memory, as one batch. */
export const fromBytes = ofBytes

/** Content in memory, handed over `chunkSize` bytes per chunk, however much a read asks for. */
export const fromChunks = (bytes: Uint8Array, chunkSize: number): ContentReader<never> => {
  let offset = 0
  return {
    read: (maxBytes) =>
      Effect.sync(() => {
        const chunks: Array<Uint8Array> = []
        let taken = 0
        while (offset < bytes.byteLength && taken < maxBytes) {
          const chunk = bytes.subarray(offset, Math.min(offset + chunkSize, bytes.byteLength))
          chunks.push(chunk)
          offset += chunk.byteLength
          taken += chunk.byteLength
        }
        return { chunks, ended: offset >= bytes.byteLength }
      })
  }
}

/** A file held in memory, through the whole workflow (as `local`, the owner when authentication is off, by default). */
export const uploadBytes = (
  files: FileService,
  declared: DeclaredFile,
  bytes: Uint8Array,
  owner: Owner = LOCAL_OWNER
) => files.upload(owner, declared, fromBytes(bytes))

/**
 * The content rules over a file held in memory, exactly as ContentCheck applies
 * them to a stream: not UTF-8 (within the first `maxBytes` bytes), too large,
 * too small.
 */
export const validateContent = (
  policy: UploadPolicy,
  bytes: Uint8Array
): Effect.Effect<CheckedContent, FileTooLarge | FileTooSmall | NotUtf8> => {
  const check = new ContentCheck(policy)
  return Either.flatMap(check.update(bytes), () => check.finish())
}

/** The whole policy over a file held in memory. */
export const validateUpload = (policy: UploadPolicy, declared: DeclaredFile, bytes: Uint8Array) =>
  Effect.gen(function*() {
    const accepted = yield* validateDeclaration(policy, declared)
    const content = yield* validateContent(policy, bytes)
    return { ...accepted, ...content, bytes }
  })

/** Writes `bytes` at `key` through the ObjectStore port, as a seeded object (no multipart upload to record). */
export const writeBytes = (store: ObjectStore["Type"], key: ObjectKey, bytes: Uint8Array) =>
  store.write(key, fromBytes(bytes), {
    contentType: "text/plain",
    metadata: {},
    onUploadStarted: () => Effect.void,
    ended: Effect.sync(() => ({ sha256: createHash("sha256").update(bytes).digest("hex"), metadata: {} }))
  })

/** Splits `bytes` at the given cut points (any of them may be out of range or repeated). */
export const split = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.byteLength + 1)))].sort((a, b) => a - b)
  const chunks: Array<Uint8Array> = []
  let start = 0
  for (const point of [...points, bytes.byteLength]) {
    chunks.push(bytes.subarray(start, point))
    start = point
  }
  return chunks
}
