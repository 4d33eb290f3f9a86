import { Context, Layer } from "effect"
import type { KeyPrefix } from "../domain/ObjectKey.js"
import type { UploadPolicy } from "../domain/UploadPolicy.js"

/** What the workflow needs to know of its configuration: what it accepts, and where its objects go. */
export class UploadSettings extends Context.Tag("app/UploadSettings")<UploadSettings, {
  readonly policy: UploadPolicy
  readonly keyPrefix: KeyPrefix
}>() {}

export const layer = (settings: UploadSettings["Type"]) => Layer.succeed(UploadSettings, settings)
