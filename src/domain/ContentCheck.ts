import { Either } from "effect"
import { createHash } from "node:crypto"
import type { Sha256Hex } from "./FileRecord.js"
import { FileTooLarge, FileTooSmall, NotUtf8 } from "./UploadErrors.js"
import type { UploadPolicy } from "./UploadPolicy.js"

/** A SHA-256 as the check feeds it: node's, or one whose state can be saved (ResumableContentCheck). */
export interface ContentHash {
  update(bytes: Uint8Array): unknown
  digest(encoding: "hex"): string
}

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
  protected size: number
  protected readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

  /**
   * `hash` is SHA-256 (node's by default), `maxBytes` the most the content may hold
   * (the policy's by default), `size` how many bytes were checked before (a check that
   * goes on; see ResumableContentCheck).
   */
  constructor(
    protected readonly policy: UploadPolicy,
    protected readonly hash: ContentHash = createHash("sha256"),
    protected readonly maxBytes: number = policy.maxBytes,
    size = 0
  ) {
    this.size = size
  }

  /** Takes the next chunk; a failure is final. */
  update(chunk: Uint8Array): Either.Either<void, NotUtf8 | FileTooLarge> {
    const room = this.maxBytes - this.size
    const within = chunk.byteLength > room ? chunk.subarray(0, Math.max(0, room)) : chunk
    try {
      this.decoder.decode(within, { stream: true })
    } catch {
      return Either.left(new NotUtf8())
    }
    this.size += chunk.byteLength
    if (this.size > this.maxBytes) return Either.left(new FileTooLarge({ maxBytes: this.maxBytes }))
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
