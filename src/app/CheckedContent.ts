import { Effect, Either } from "effect"
import { type CheckedContent, ContentCheck } from "../domain/ContentCheck.js"
import type { FileTooLarge, FileTooSmall, NotUtf8 } from "../domain/UploadErrors.js"
import type { UploadPolicy } from "../domain/UploadPolicy.js"
import type { ContentBatch, ContentReader } from "../ports/ContentReader.js"

export type ContentRejected = NotUtf8 | FileTooLarge | FileTooSmall

/**
 * Content read through the upload policy's content rules: every chunk is checked
 * as it is read, and the last batch is handed on only once the whole content
 * passed (so a store that writes a small file in one request never writes a file
 * that breaks a rule). `result` gives the size and sha256 once the content ended.
 */
export const checkContent = <E>(policy: UploadPolicy, content: ContentReader<E>) => {
  const check = new ContentCheck(policy)
  let checked: CheckedContent | undefined
  const reader: ContentReader<E | ContentRejected> = {
    read: (maxBytes) =>
      Effect.flatMap(content.read(maxBytes), (batch): Effect.Effect<ContentBatch, ContentRejected> => {
        for (const chunk of batch.chunks) {
          const verdict = check.update(chunk)
          if (Either.isLeft(verdict)) return Effect.fail(verdict.left)
        }
        if (!batch.ended) return Effect.succeed(batch)
        return Either.match(check.finish(), {
          onLeft: Effect.fail,
          onRight: (content) => {
            checked = content
            return Effect.succeed(batch)
          }
        })
      })
  }
  const result = Effect.suspend(() =>
    checked === undefined ? Effect.dieMessage("the content was not read to its end") : Effect.succeed(checked)
  )
  return { reader, result } as const
}
