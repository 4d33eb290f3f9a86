import type { Effect, Option } from "effect"
import { Context } from "effect"
import type { FileCursor } from "../domain/FileCursor.js"
import type { FileId, FileRecord } from "../domain/FileRecord.js"
import type { DatabaseUnavailable } from "../domain/StorageErrors.js"

export interface ListOptions {
  /** 1 or more; adapters do not cap it, callers do. */
  readonly limit: number
  /** Start after this position (exclusive); none for the first page. */
  readonly after: Option.Option<FileCursor>
}

export interface FilePage {
  /** Newest first: by createdAt descending, then id descending. */
  readonly items: ReadonlyArray<FileRecord>
  /** Where the next page starts; none when this page is the last. */
  readonly nextCursor: Option.Option<FileCursor>
}

/**
 * The database's side of tandem: file records and a transaction boundary. Calls
 * made inside `withTransaction` commit together or not at all; calls outside it
 * commit on their own.
 */
export class FileRepository extends Context.Tag("ports/FileRepository")<FileRepository, {
  readonly insert: (record: FileRecord) => Effect.Effect<void, DatabaseUnavailable>
  readonly find: (id: FileId) => Effect.Effect<Option.Option<FileRecord>, DatabaseUnavailable>
  readonly list: (options: ListOptions) => Effect.Effect<FilePage, DatabaseUnavailable>
  /** Removes the record and returns it; none when there was no such record. */
  readonly delete: (id: FileId) => Effect.Effect<Option.Option<FileRecord>, DatabaseUnavailable>
  /** Runs `self` in one transaction: committed if it succeeds, rolled back if it fails or is interrupted. */
  readonly withTransaction: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | DatabaseUnavailable, R>
  /** Succeeds when the database can be reached (readiness). */
  readonly ping: Effect.Effect<void, DatabaseUnavailable>
}>() {}
