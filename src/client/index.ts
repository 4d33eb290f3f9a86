/**
 * `tandem/client`: a typed client of tandem's HTTP API (README, "Client").
 *
 * ```ts
 * import { FetchHttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 * import { TandemClient, uploadForm } from "tandem/client"
 *
 * const program = Effect.gen(function*() {
 *   const tandem = yield* TandemClient
 *   const file = yield* tandem.files.upload({ payload: uploadForm(new Blob(["…"], { type: "text/plain" }), "notes.txt"), headers: {} })
 *   return yield* tandem.files.get({ path: { id: file.id } })
 * }).pipe(Effect.provide(TandemClient.layer({ baseUrl: "http://127.0.0.1:3000", token })), Effect.provide(FetchHttpClient.layer))
 * ```
 */
export { FilePage, FileView, Link, TandemApi } from "../adapters/http/Api.js"
export { errorTable, type ErrorTag, type TagsOn } from "../adapters/http/ErrorTable.js"
export type { FileCursor } from "../domain/FileCursor.js"
export { FileId } from "../domain/FileRecord.js"
export { IdempotencyKey } from "../domain/IdempotencyKey.js"
export {
  config,
  type ContentError,
  type Download,
  isTandemError,
  make,
  parseCursor,
  statusOf,
  type TandemApiClient,
  TandemClient,
  type TandemClientOptions,
  type TandemClientService,
  type TandemError,
  type TransportError,
  uploadForm
} from "./TandemClient.js"
