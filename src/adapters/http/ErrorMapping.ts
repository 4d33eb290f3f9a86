import type { FileNotFound, ObjectMissing, StorageError } from "../../domain/StorageErrors.js"
import type {
  ContentTypeNotAllowed,
  ExtensionNotAllowed,
  FileTooSmall,
  InvalidFileName,
  NotUtf8,
  UploadRejected
} from "../../domain/UploadErrors.js"
import type { FileTooLarge } from "../../domain/UploadErrors.js"
import {
  BadRequest,
  InternalError,
  NotFound,
  PayloadTooLarge,
  ServiceUnavailable,
  Unprocessable,
  UnsupportedMediaType
} from "./ApiErrors.js"
import type { RequestError } from "./RequestErrors.js"

export type ApiError =
  | BadRequest
  | NotFound
  | PayloadTooLarge
  | UnsupportedMediaType
  | Unprocessable
  | InternalError
  | ServiceUnavailable

export type TandemError = UploadRejected | StorageError | FileNotFound | RequestError

/** The response body each error gets, so an endpoint's declared errors are checked by the compiler. */
export type ApiErrorFor<E> = E extends RequestError ? BadRequest
  : E extends FileNotFound ? NotFound
  : E extends FileTooLarge ? PayloadTooLarge
  : E extends ContentTypeNotAllowed ? UnsupportedMediaType
  : E extends FileTooSmall | ExtensionNotAllowed | NotUtf8 | InvalidFileName ? Unprocessable
  : E extends ObjectMissing ? InternalError
  : ServiceUnavailable

/** The one place where a tandem error gets its HTTP status. */
export const toApiError = <E extends TandemError>(error: E): ApiErrorFor<E> =>
  // The switch below and ApiErrorFor say the same thing; TypeScript cannot relate them.
  toApiErrorBody(error) as ApiErrorFor<E>

const toApiErrorBody = (error: TandemError): ApiError => {
  const body = { message: error.message }
  switch (error._tag) {
    case "NotMultipart":
    case "MissingFilePart":
    case "TooManyFiles":
    case "MalformedMultipart":
    case "InvalidQuery":
      return new BadRequest({ error: error._tag, ...body })
    case "FileNotFound":
      return new NotFound({ error: error._tag, ...body })
    case "FileTooLarge":
      return new PayloadTooLarge({ error: error._tag, ...body })
    case "ContentTypeNotAllowed":
      return new UnsupportedMediaType({ error: error._tag, ...body })
    case "FileTooSmall":
    case "ExtensionNotAllowed":
    case "NotUtf8":
    case "InvalidFileName":
      return new Unprocessable({ error: error._tag, ...body })
    case "ObjectMissing":
      return new InternalError({ error: error._tag, ...body })
    case "ObjectStoreUnavailable":
    case "DatabaseUnavailable":
    case "CommitOutcomeUnknown":
    case "CleanupFailed":
    case "UploadExpired":
      return new ServiceUnavailable({ error: error._tag, ...body })
  }
}
