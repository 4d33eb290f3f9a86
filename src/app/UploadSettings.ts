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
  /** Resumable (tus) uploads: how long one may sit idle, and the size of its object's parts (S3_PART_SIZE). */
  readonly resumable: ResumableSettings
}>() {}

export interface ResumableSettings {
  readonly expiry: Duration.Duration
  readonly partSize: number
}

/** TUS_EXPIRY_SECONDS's default: a day; S3_PART_SIZE's: 8 MiB. */
export const DEFAULT_RESUMABLE: ResumableSettings = { expiry: Duration.days(1), partSize: 8 * 1024 ** 2 }

/** IDEMPOTENCY_TTL_SECONDS's default: a day, as long as clients retry. */
export const DEFAULT_IDEMPOTENCY_TTL = Duration.days(1)

/** No quota and a day's keys unless given. */
export const layer = (settings: {
  readonly policy: UploadPolicy
  readonly keyPrefix: KeyPrefix
  readonly quota?: Quota
  readonly idempotencyTtl?: Duration.Duration
  readonly resumable?: ResumableSettings
}) =>
  Layer.succeed(UploadSettings, {
    quota: noQuota,
    idempotencyTtl: DEFAULT_IDEMPOTENCY_TTL,
    resumable: DEFAULT_RESUMABLE,
    ...settings
  })
