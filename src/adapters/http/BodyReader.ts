import { Chunk, Effect, Option, Stream } from "effect"
import type { ContentBatch, ContentReader } from "../../ports/ContentReader.js"

/**
 * A request body as the ContentReader port: pulled from the stream a batch at a
 * time, so the socket is read only as fast as the workflow stores its bytes. The
 * body's failure (the client went away) becomes `onError`'s error. Scoped: the
 * stream is released with the scope.
 */
export const readerOf = <E, E2>(body: Stream.Stream<Uint8Array, E>, onError: (error: E) => E2) =>
  Effect.map(Stream.toPull(body), (pull): ContentReader<E2> => ({
    read: (maxBytes) =>
      Effect.gen(function*() {
        const chunks: Array<Uint8Array> = []
        let size = 0
        while (size < maxBytes) {
          const next = yield* Effect.either(pull)
          if (next._tag === "Left") {
            if (Option.isNone(next.left)) return { chunks, ended: true } satisfies ContentBatch
            return yield* Effect.fail(onError(next.left.value))
          }
          for (const chunk of Chunk.toReadonlyArray(next.right)) {
            chunks.push(chunk)
            size += chunk.byteLength
          }
        }
        return { chunks, ended: false } satisfies ContentBatch
      })
  }))
