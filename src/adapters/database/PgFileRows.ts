import { Schema } from "effect"
import { FileRecord } from "../../domain/FileRecord.js"

/** The columns of a `files` row as the pg driver returns them: bigint as a string, timestamptz as a Date. */
export const fileColumns = {
  id: Schema.String,
  owner: Schema.String,
  name: Schema.String,
  size: Schema.NumberFromString,
  content_type: Schema.String,
  sha256: Schema.String,
  object_key: Schema.String,
  created_at: Schema.ValidDateFromSelf
}
export const FileRow = Schema.Struct(fileColumns)

export const recordFromRow = (row: typeof FileRow.Type): typeof FileRecord.Encoded => ({
  id: row.id,
  owner: row.owner,
  name: row.name,
  size: row.size,
  contentType: row.content_type,
  sha256: row.sha256,
  objectKey: row.object_key,
  createdAt: row.created_at.toISOString()
})

export const rowFromRecord = (record: typeof FileRecord.Encoded): typeof FileRow.Type => ({
  id: record.id,
  owner: record.owner,
  name: record.name,
  size: record.size,
  content_type: record.contentType,
  sha256: record.sha256,
  object_key: record.objectKey,
  created_at: new Date(record.createdAt)
})

export const FileRecordFromRow = Schema.transform(FileRow, FileRecord, {
  strict: true,
  decode: recordFromRow,
  encode: rowFromRecord
})
