import { Context, Duration, Layer } from "effect"
import type { KeyPrefix } from "../domain/ObjectKey.js"
import type { UploadPolicy } from "../domain/UploadPolicy.js"
import { noQuota, type Quota } from "../ports/FileRepository.js"

/**
 * What the workflow needs to know of its configuration: what it accepts, where its
 * objects go, how much an owner may keep, how long an Idempotency-Key is kept.
 */
export class UploadSettings extends Context.Tag("app/UploadSettings")<UploadSettings, {
  readonly policy: UploadPolicy
  readonly keyPrefix: KeyPrefix
  readonly quota: Quota
  readonly idempotencyTtl: Duration.Duration
}>() {}

/** IDEMPOTENCY_TTL_SECONDS's default: a day, as long as clients retry. */
export const DEFAULT_IDEMPOTENCY_TTL = Duration.days(1)

/** No quota and a day's keys unless given. */
export const layer = (settings: {
  readonly policy: UploadPolicy
  readonly keyPrefix: KeyPrefix
  readonly quota?: Quota
  readonly idempotencyTtl?: Duration.Duration
}) =>
  Layer.succeed(UploadSettings, {
    quota: noQuota,
    idempotencyTtl: DEFAULT_IDEMPOTENCY_TTL,
    ...settings
  })
