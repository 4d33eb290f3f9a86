import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { FileService } from "../../app/FileService.js"
import { UploadSettings } from "../../app/UploadSettings.js"
import { PolicyView, TandemApi } from "./Api.js"
import type { AuthSettings } from "./Authentication.js"

/**
 * GET /policy: the upload policy the server enforces, whether its files routes need
 * a token, and the part size (S3_PART_SIZE) above which the upload page uses tus.
 */
export const layer = (auth: AuthSettings) =>
  HttpApiBuilder.group(TandemApi, "policy", (handlers) =>
    Effect.gen(function*() {
      const { policy } = yield* FileService
      const { resumable } = yield* UploadSettings
      const view = new PolicyView({
        minBytes: policy.minBytes,
        maxBytes: policy.maxBytes,
        contentTypes: policy.contentTypes,
        extensions: policy.extensions,
        authentication: auth._tag === "Jwt" ? "bearer" : "none",
        resumableAbove: resumable.partSize
      })
      return handlers.handle("policy", () => Effect.succeed(view))
    }))
