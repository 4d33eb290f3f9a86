import { Effect } from "effect"

/** What one read of an upload's content returns. */
export interface ContentBatch {
  readonly chunks: ReadonlyArray<Uint8Array>
  /** True once the last byte has been read: no batch follows. */
  readonly ended: boolean
}

/**
 * The bytes of a file being uploaded, as the workflow pulls them: a batch at a
 * time, with backpressure in between. A batch holds at least `maxBytes` bytes
 * unless it is the last, or no more bytes will come (the HTTP reader's size cut,
 * which the content check refuses); it may hold more, since chunks are not split.
 * One read per batch rather than one per chunk keeps a small upload to one wait.
 */
export interface ContentReader<E> {
  readonly read: (maxBytes: number) => Effect.Effect<ContentBatch, E>
}

/** A file already in memory (tests, tools). */
export const fromBytes = (bytes: Uint8Array): ContentReader<never> => {
  let done = false
  return {
    read: () =>
      Effect.sync(() => {
        const batch = { chunks: done ? [] : [bytes], ended: true }
        done = true
        return batch
      })
  }
}

/** The most `cutParts` asks for in one read. */
const READ_SLICE_BYTES = 1024 * 1024

/** One part of a multipart upload: a view of the shared buffer, valid until the next part is read. */
export interface Part {
  readonly bytes: Uint8Array
  /** No part follows. */
  readonly last: boolean
}

/**
 * Cuts content into parts of exactly `partSize` bytes (the last may be shorter, or
 * empty), copied into one buffer that every part reuses: a file of any size holds
 * one part in memory, and every part but the last has the same size (which R2, for
 * one, requires). `pending` are chunks read already; each chunk read here passes
 * `check` first.
 */
export const cutParts = <E, E2>(
  content: ContentReader<E>,
  partSize: number,
  check: (chunk: Uint8Array) => Effect.Effect<void, E2>,
  pending: Array<Uint8Array>
): Effect.Effect<Part, E | E2> => {
  const buffer = new Uint8Array(partSize)
  let ended = false
  return Effect.gen(function*() {
    let length = 0
    for (;;) {
      while (pending.length > 0 && length < partSize) {
        const chunk = pending[0] as Uint8Array
        const taken = Math.min(chunk.byteLength, partSize - length)
        buffer.set(chunk.subarray(0, taken), length)
        length += taken
        if (taken === chunk.byteLength) pending.shift()
        else pending[0] = chunk.subarray(taken)
      }
      if (length === partSize || ended) return { bytes: buffer.subarray(0, length), last: ended && pending.length === 0 }
      // In slices, so that chunks are copied into the buffer soon after they arrive
      // rather than held until a whole part is in.
      const batch = yield* content.read(Math.min(partSize - length, READ_SLICE_BYTES))
      for (const chunk of batch.chunks) {
        yield* check(chunk)
        pending.push(chunk)
      }
      ended = batch.ended
    }
  })
}
