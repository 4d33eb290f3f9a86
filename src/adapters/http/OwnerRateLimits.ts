import { Clock, Effect, Option } from "effect"
import type { Owner } from "../../domain/FileRecord.js"
import { RateLimited } from "./RequestErrors.js"

export interface OwnerRateLimitSettings {
  /** Uploads an owner may start per minute (RATE_LIMIT_UPLOADS_PER_MINUTE): a bucket refilled evenly. */
  readonly uploadsPerMinute: Option.Option<number>
  /** Uploads of one owner in flight at once (RATE_LIMIT_CONCURRENT_UPLOADS). */
  readonly concurrentUploads: Option.Option<number>
}

/**
 * Each owner's upload rate, in this process (with N replicas behind a balancer, an
 * owner gets up to N times these: size them per replica). An upload takes a token
 * from its owner's bucket (refilled at `uploadsPerMinute` a minute, holding at most
 * that many) and a slot among its owner's uploads in flight, given back when it
 * ends; without either, it is refused at once with 429 RateLimited and when to retry.
 */
/** Past this many owners' buckets, full ones (the same as none) are dropped, so memory stays bounded. */
const MAX_BUCKETS = 10_000

export const make = (settings: OwnerRateLimitSettings) => {
  const buckets = new Map<Owner, { tokens: number; at: number }>()
  const inFlight = new Map<Owner, number>()

  const refilled = (bucket: { tokens: number; at: number }, perMinute: number, now: number) =>
    Math.min(perMinute, bucket.tokens + (now - bucket.at) * (perMinute / 60_000))

  const takeToken = (owner: Owner, perMinute: number, now: number): Option.Option<number> => {
    const perMilli = perMinute / 60_000
    if (buckets.size > MAX_BUCKETS) {
      for (const [other, bucket] of buckets) if (refilled(bucket, perMinute, now) >= perMinute) buckets.delete(other)
    }
    const tokens = refilled(buckets.get(owner) ?? { tokens: perMinute, at: now }, perMinute, now)
    if (tokens >= 1) {
      buckets.set(owner, { tokens: tokens - 1, at: now })
      return Option.none()
    }
    buckets.set(owner, { tokens, at: now })
    return Option.some(Math.max(1, Math.ceil((1 - tokens) / perMilli / 1000)))
  }

  /** Without either limit, an upload is never refused and nothing is counted. */
  const unlimited = Option.isNone(settings.concurrentUploads) && Option.isNone(settings.uploadsPerMinute)

  /** Runs `upload` as one of `owner`'s, or refuses it. */
  const limit = <A, E, R>(owner: Owner, upload: Effect.Effect<A, E, R>): Effect.Effect<A, E | RateLimited, R> =>
    unlimited ? upload : Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<A, E | RateLimited, R> => {
      const concurrent = settings.concurrentUploads
      if (Option.isSome(concurrent) && (inFlight.get(owner) ?? 0) >= concurrent.value) {
        return Effect.fail(new RateLimited({ limit: `${concurrent.value} uploads at once`, retryAfterSeconds: 1 }))
      }
      if (Option.isSome(settings.uploadsPerMinute)) {
        const wait = takeToken(owner, settings.uploadsPerMinute.value, now)
        if (Option.isSome(wait)) {
          return Effect.fail(
            new RateLimited({
              limit: `${settings.uploadsPerMinute.value} uploads a minute`,
              retryAfterSeconds: wait.value
            })
          )
        }
      }
      inFlight.set(owner, (inFlight.get(owner) ?? 0) + 1)
      return Effect.ensuring(
        upload,
        Effect.sync(() => {
          const left = (inFlight.get(owner) ?? 1) - 1
          if (left === 0) inFlight.delete(owner)
          else inFlight.set(owner, left)
        })
      )
    })

  return { limit } as const
}
