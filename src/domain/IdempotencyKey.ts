import { Schema } from "effect"

/**
 * The `Idempotency-Key` a client sends with an upload, so that a retry of it makes
 * no second file: 1 to 255 visible ASCII characters (a UUID is the usual choice).
 * Scoped to its owner: two owners may use the same key.
 */
export const IdempotencyKey = Schema.String.pipe(
  Schema.pattern(/^[\x21-\x7e]{1,255}$/),
  Schema.brand("IdempotencyKey")
).annotations({
  message: () => "must be 1 to 255 visible ASCII characters",
  description: "Makes a retried upload return the file the first attempt made (1 to 255 visible ASCII characters)"
})
export type IdempotencyKey = typeof IdempotencyKey.Type
