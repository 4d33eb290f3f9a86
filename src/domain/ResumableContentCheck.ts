import { Either } from "effect"
import { ContentCheck, type ContentHash } from "./ContentCheck.js"
import type { FileTooLarge, NotUtf8 } from "./UploadErrors.js"
import type { UploadPolicy } from "./UploadPolicy.js"

/**
 * A SHA-256 whose state can be saved and loaded again (hash-wasm's, say), so a
 * digest can go on in another process from where the last one stopped.
 */
export interface ResumableHash extends ContentHash {
  save(): Uint8Array
  load(state: Uint8Array): unknown
}

const STATE_VERSION = 1
/** Version (1), size (8, big-endian), pending UTF-8 bytes (1 + up to 3), then the hash's own state. */
const HEADER_BYTES = 1 + 8 + 1 + 3

/**
 * The bytes at the end of `tail` that begin a UTF-8 sequence not yet complete (0 to
 * 3 bytes), for content a strict decoder has accepted so far: what a decoder that
 * starts afresh must be given again to go on where the last one stopped.
 */
export const incompleteSequence = (tail: Uint8Array): Uint8Array => {
  for (let i = tail.byteLength - 1; i >= Math.max(0, tail.byteLength - 3); i--) {
    const byte = tail[i] ?? 0
    if ((byte & 0xc0) === 0x80) continue
    const needed = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1
    return needed > tail.byteLength - i ? tail.slice(i) : new Uint8Array(0)
  }
  return new Uint8Array(0)
}

/**
 * The content rules (ContentCheck's: strict UTF-8, size, SHA-256) over content that
 * arrives across many requests and processes: `save` gives the whole state after
 * the bytes so far (the decoder's unfinished sequence and the digest's state), and
 * `ResumableContentCheck.restore` goes on from it. The verdict is the same as one
 * ContentCheck over the same bytes; `length` is the declared length, which the
 * content may not pass.
 */
export class ResumableContentCheck extends ContentCheck {
  private last: Uint8Array = new Uint8Array(0)

  private constructor(
    policy: UploadPolicy,
    length: number,
    private readonly resumable: ResumableHash,
    size: number
  ) {
    super(policy, resumable, Math.min(policy.maxBytes, length), size)
  }

  /** A check of new content; `hash` must be fresh. */
  static start(policy: UploadPolicy, length: number, hash: ResumableHash): ResumableContentCheck {
    return new ResumableContentCheck(policy, length, hash, 0)
  }

  /** A check that goes on from `saved` (`save`'s output); undefined if it is not one. */
  static restore(
    policy: UploadPolicy,
    length: number,
    hash: ResumableHash,
    saved: Uint8Array
  ): ResumableContentCheck | undefined {
    if (saved.byteLength < HEADER_BYTES || saved[0] !== STATE_VERSION) return undefined
    const view = new DataView(saved.buffer, saved.byteOffset, saved.byteLength)
    const size = Number(view.getBigUint64(1))
    const pendingLength = saved[9] ?? 0
    if (pendingLength > 3) return undefined
    const check = new ResumableContentCheck(policy, length, hash, size)
    try {
      hash.load(saved.subarray(HEADER_BYTES))
      const pending = saved.slice(10, 10 + pendingLength)
      check.decoder.decode(pending, { stream: true })
      check.last = pending
    } catch {
      return undefined
    }
    return check
  }

  override update(chunk: Uint8Array): Either.Either<void, NotUtf8 | FileTooLarge> {
    const verdict = super.update(chunk)
    if (Either.isRight(verdict)) this.last = lastBytes(this.last, chunk)
    return verdict
  }

  /** The state after the bytes so far. */
  save(): Uint8Array {
    const pending = incompleteSequence(this.last)
    const hash = this.resumable.save()
    const out = new Uint8Array(HEADER_BYTES + hash.byteLength)
    const view = new DataView(out.buffer)
    out[0] = STATE_VERSION
    view.setBigUint64(1, BigInt(this.size))
    out[9] = pending.byteLength
    out.set(pending, 10)
    out.set(hash, HEADER_BYTES)
    return out
  }
}

/** The last 3 bytes of `previous` followed by `chunk`. */
const lastBytes = (previous: Uint8Array, chunk: Uint8Array): Uint8Array => {
  if (chunk.byteLength >= 3) return chunk.slice(chunk.byteLength - 3)
  const joined = new Uint8Array(previous.byteLength + chunk.byteLength)
  joined.set(previous)
  joined.set(chunk, previous.byteLength)
  return joined.slice(Math.max(0, joined.byteLength - 3))
}
