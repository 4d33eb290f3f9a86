import { Effect } from "effect"

/** What one read of an upload's content returns. */
export interface ContentBatch {
  readonly chunks: ReadonlyArray<Uint8Array>
  /** True once the last byte has been read and the source is complete: no batch follows. */
  readonly ended: boolean
}

/**
 * The inbound port: the bytes of a file being uploaded, as the workflow (and the
 * store it hands them to) pulls them, a batch at a time, with backpressure in
 * between. A batch holds at least `maxBytes` bytes unless it is the last, or no
 * more bytes will come (a source cut at its size limit, which the content check
 * refuses); it may hold more, since chunks are not split. One read per batch
 * rather than one per chunk keeps a small upload to one wait.
 *
 * `ended` is only reported once the source knows the upload is whole: an HTTP form
 * reports it after the rest of the form was read and holds no second file, and
 * fails the read otherwise.
 */
export interface ContentReader<E> {
  readonly read: (maxBytes: number) => Effect.Effect<ContentBatch, E>
}

/** Content already in memory, handed over in one batch. */
export const ofBytes = (bytes: Uint8Array): ContentReader<never> => {
  let done = false
  return {
    read: () =>
      Effect.sync(() => {
        const batch: ContentBatch = { chunks: done ? [] : [bytes], ended: true }
        done = true
        return batch
      })
  }
}
