import { Schema } from "effect"

/** A file's identity: a random UUID chosen by tandem, never by the client. */
export const FileId = Schema.UUID.pipe(Schema.brand("FileId"))
export type FileId = typeof FileId.Type

/**
 * Who a file belongs to: the authenticated caller (a token's `sub`), or `local`
 * when authentication is off. Every read and write of a file is scoped to it.
 */
export const Owner = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(255), Schema.brand("Owner"))
export type Owner = typeof Owner.Type

/** The owner of every file when authentication is off (AUTH_MODE=none), and of files from before owners. */
export const LOCAL_OWNER = Owner.make("local")

/** A client's file name that passed the upload policy (see UploadPolicy.validateName). */
export const FileName = Schema.String.pipe(Schema.brand("FileName"))
export type FileName = typeof FileName.Type

/** A lowercase media type without parameters, allowed by the upload policy. */
export const MediaType = Schema.String.pipe(Schema.brand("MediaType"))
export type MediaType = typeof MediaType.Type

/** Lowercase hex SHA-256 of a file's bytes. */
export const Sha256Hex = Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/), Schema.brand("Sha256Hex"))
export type Sha256Hex = typeof Sha256Hex.Type

/** Where a file's bytes live in the object store; derived from its id (see ObjectKey.ts). */
export const ObjectKey = Schema.String.pipe(Schema.minLength(1), Schema.brand("ObjectKey"))
export type ObjectKey = typeof ObjectKey.Type

/** The database's account of one stored file. */
export class FileRecord extends Schema.Class<FileRecord>("FileRecord")({
  id: FileId,
  owner: Owner,
  name: FileName,
  size: Schema.NonNegativeInt,
  contentType: MediaType,
  sha256: Sha256Hex,
  objectKey: ObjectKey,
  createdAt: Schema.DateTimeUtc
}) {}

/**
 * A record from fields checked already (the upload policy, the content check, a
 * key under the configured prefix): built without validating them again, a cost
 * on every upload, and from the named fields only, so nothing else the caller's
 * object holds (an upload's bytes, say) rides along.
 */
export const checkedRecord = (fields: ConstructorParameters<typeof FileRecord>[0]): FileRecord =>
  new FileRecord({
    id: fields.id,
    owner: fields.owner,
    name: fields.name,
    size: fields.size,
    contentType: fields.contentType,
    sha256: fields.sha256,
    objectKey: fields.objectKey,
    createdAt: fields.createdAt
  }, true)
