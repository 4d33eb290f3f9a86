import { Either } from "effect"
import { createHash, type Hash } from "node:crypto"
import type { Sha256Hex } from "./FileRecord.js"
import { FileTooLarge, FileTooSmall, NotUtf8 } from "./UploadErrors.js"
import type { UploadPolicy } from "./UploadPolicy.js"

/** What is known of a file's content once all of it passed the checks. */
export interface CheckedContent {
  readonly size: number
  readonly sha256: Sha256Hex
}

/**
 * The content rules of the upload policy, applied as the bytes arrive, in one pass
 * that also counts them and computes their SHA-256, so a file of any size is
 * checked in constant memory. The verdict does not depend on how the bytes are
 * split into chunks:
 * - NotUtf8 as soon as an invalid sequence shows within the first `maxBytes`
 *   bytes (strict: overlongs, surrogates and bytes F5-FF are invalid);
 * - FileTooLarge as soon as the count passes `maxBytes`;
 * - at the end: NotUtf8 for a file that stops inside a sequence, then FileTooSmall.
 */
export class ContentCheck {
  private size = 0
  private readonly hash: Hash = createHash("sha256")
  private readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

  constructor(private readonly policy: UploadPolicy) {}

  /** Takes the next chunk; a failure is final. */
  update(chunk: Uint8Array): Either.Either<void, NotUtf8 | FileTooLarge> {
    const room = this.policy.maxBytes - this.size
    const within = chunk.byteLength > room ? chunk.subarray(0, Math.max(0, room)) : chunk
    try {
      this.decoder.decode(within, { stream: true })
    } catch {
      return Either.left(new NotUtf8())
    }
    this.size += chunk.byteLength
    if (this.size > this.policy.maxBytes) return Either.left(new FileTooLarge({ maxBytes: this.policy.maxBytes }))
    this.hash.update(chunk)
    return Either.right(undefined)
  }

  /** After the last chunk: the remaining rules, and the size and digest. */
  finish(): Either.Either<CheckedContent, NotUtf8 | FileTooSmall> {
    try {
      this.decoder.decode()
    } catch {
      return Either.left(new NotUtf8())
    }
    if (this.size < this.policy.minBytes) {
      return Either.left(new FileTooSmall({ size: this.size, minBytes: this.policy.minBytes }))
    }
    return Either.right({ size: this.size, sha256: this.hash.digest("hex") as Sha256Hex })
  }
}
