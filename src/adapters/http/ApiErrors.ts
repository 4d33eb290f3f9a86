import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/**
 * The JSON bodies of error responses, one class per HTTP status:
 * `{"error": "<Tag>", "message": "..."}`. The domain's tagged errors are mapped
 * to these at the HTTP edge (see ErrorMapping.ts), so the domain knows no HTTP.
 */
const body = <const Tags extends ReadonlyArray<string>>(...tags: Tags) => ({
  error: Schema.Literal(...tags),
  message: Schema.String
})

export class BadRequest extends Schema.Class<BadRequest>("BadRequest")(
  body("NotMultipart", "MissingFilePart", "TooManyFiles", "MalformedMultipart", "InvalidQuery"),
  HttpApiSchema.annotations({ status: 400, description: "The request is malformed." })
) {}

export class NotFound extends Schema.Class<NotFound>("NotFound")(
  body("FileNotFound"),
  HttpApiSchema.annotations({ status: 404, description: "No such file." })
) {}

export class PayloadTooLarge extends Schema.Class<PayloadTooLarge>("PayloadTooLarge")(
  body("FileTooLarge"),
  HttpApiSchema.annotations({ status: 413, description: "The file is larger than the maximum." })
) {}

export class UnsupportedMediaType extends Schema.Class<UnsupportedMediaType>("UnsupportedMediaType")(
  body("ContentTypeNotAllowed"),
  HttpApiSchema.annotations({ status: 415, description: "The file's declared content type is not allowed." })
) {}

export class RangeNotSatisfiable extends Schema.Class<RangeNotSatisfiable>("RangeNotSatisfiable")(
  body("RangeNotSatisfiable"),
  HttpApiSchema.annotations({ status: 416, description: "The Range asked for lies outside the file." })
) {}

export class Unprocessable extends Schema.Class<Unprocessable>("Unprocessable")(
  body("FileTooSmall", "ExtensionNotAllowed", "NotUtf8", "InvalidFileName"),
  HttpApiSchema.annotations({ status: 422, description: "The file breaks the upload policy." })
) {}

export class InternalError extends Schema.Class<InternalError>("InternalError")(
  body("ObjectMissing"),
  HttpApiSchema.annotations({ status: 500, description: "The stores disagree; the reconciler will repair it." })
) {}

export class ServiceUnavailable extends Schema.Class<ServiceUnavailable>("ServiceUnavailable")(
  body(
    "ObjectStoreUnavailable",
    "DatabaseUnavailable",
    "CommitOutcomeUnknown",
    "CleanupFailed",
    "UploadExpired",
    "NotReady"
  ),
  HttpApiSchema.annotations({ status: 503, description: "Object storage or the database failed; retry later." })
) {}
