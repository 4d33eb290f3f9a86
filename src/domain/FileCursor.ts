import { DateTime, Either, Encoding, Option, Schema } from "effect"
import { FileId } from "./FileRecord.js"

/**
 * Position in the newest-first listing: the (createdAt, id) of the last item seen.
 * Keyset pagination, so files inserted while a client pages never shift its pages.
 * Clients see it as an opaque base64url string.
 */
export interface FileCursor {
  readonly createdAt: DateTime.Utc
  readonly id: FileId
}

const CursorFields = Schema.Tuple(Schema.NonNegativeInt, FileId)
const decodeFields = Schema.decodeUnknownOption(Schema.parseJson(CursorFields))

export const encodeCursor = (cursor: FileCursor): string =>
  Encoding.encodeBase64Url(JSON.stringify([DateTime.toEpochMillis(cursor.createdAt), cursor.id]))

export const decodeCursor = (text: string): Option.Option<FileCursor> =>
  /^[A-Za-z0-9_-]{1,200}$/.test(text)
    ? Either.getRight(Encoding.decodeBase64UrlString(text)).pipe(
      Option.flatMap(decodeFields),
      Option.flatMap(([millis, id]) =>
        Option.map(DateTime.make(millis), (createdAt) => ({ createdAt: DateTime.toUtc(createdAt), id }))
      )
    )
    : Option.none()
