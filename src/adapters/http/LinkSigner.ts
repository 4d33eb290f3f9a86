import { Context, DateTime, Effect, Layer, Redacted } from "effect"
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import type { FileRecord, Owner } from "../../domain/FileRecord.js"
import { BadSignature, LinkExpired } from "./RequestErrors.js"

/**
 * Links to a file's content that work without a token until they expire:
 * `/files/{id}/content?expires=<unix seconds>&signature=<hex>`, the signature an
 * HMAC-SHA256 over the id, the expiry and the owner, keyed with LINK_SIGNING_SECRET.
 * The owner is in the signature but not the URL: a link verifies only for the file's
 * owner, and deleting the file ends it (its id then names nothing).
 */
export class LinkSigner extends Context.Tag("http/LinkSigner")<LinkSigner, {
  /** The link's path and query, valid until `expiresAt`. */
  readonly sign: (record: FileRecord, expiresAt: DateTime.Utc) => string
  /** The owner a link stands for, if its signature is the file's and it has not expired. */
  readonly verify: (
    record: FileRecord,
    expires: string,
    signature: string
  ) => Effect.Effect<Owner, LinkExpired | BadSignature>
}>() {}

const signatureOf = (secret: Uint8Array, id: string, expires: string, owner: string) =>
  createHmac("sha256", secret).update(`${id}\n${expires}\n${owner}`).digest()

export const make = (secret: Uint8Array): LinkSigner["Type"] => ({
  sign: (record, expiresAt) => {
    const expires = String(Math.floor(DateTime.toEpochMillis(expiresAt) / 1000))
    const signature = signatureOf(secret, record.id, expires, record.owner).toString("hex")
    return `/files/${record.id}/content?expires=${expires}&signature=${signature}`
  },
  verify: (record, expires, signature) =>
    Effect.gen(function*() {
      const expected = signatureOf(secret, record.id, expires, record.owner)
      const given = /^[0-9a-f]{64}$/.test(signature) ? Buffer.from(signature, "hex") : Buffer.alloc(0)
      if (given.byteLength !== expected.byteLength || !timingSafeEqual(given, expected)) {
        return yield* new BadSignature()
      }
      // Signed, so the expiry is the one issued; past it, the link is over.
      if (Number(expires) * 1000 <= DateTime.toEpochMillis(yield* DateTime.now)) return yield* new LinkExpired()
      return record.owner
    })
})

/** With LINK_SIGNING_SECRET, or a secret made up now (links then end with the process, and differ between replicas). */
export const layer = (secret: Redacted.Redacted | undefined) =>
  Layer.succeed(LinkSigner, make(secret === undefined ? randomBytes(32) : Buffer.from(Redacted.value(secret), "utf8")))
