import { Deferred, Effect, Fiber } from "effect"
import type { Scope } from "effect"
import { randomBytes, randomInt } from "node:crypto"
import { PART_SIZE } from "./CrashHarness.js"
import { field, kindOf, type Outcome, refused, send, sha256 } from "./Exchange.js"
import type { AcknowledgedUpload, Ledger } from "./Ledger.js"
import * as ResumableClient from "./ResumableClient.js"

export interface LoadOptions {
  /** Concurrent client loops that upload with POST /files. */
  readonly clients: number
  /** More of them that upload with tus (ResumableClient), in chunks across the server's part size. */
  readonly resumableClients?: number
  /** The servers' S3_PART_SIZE; CrashHarness.PART_SIZE unless given. */
  readonly partSize?: number
  /** The base URL for the next request: one server, or a pick among replicas. */
  readonly target: () => string
  readonly ledger: Ledger
}

export interface Load {
  /** Lets every loop finish its current request, then waits for all of them. */
  readonly stop: Effect.Effect<void>
}

const characters = [..."abcdefghijklmnopqrstuvwxyz      \n", "é", "ß", "ñ", "—", "日", "本", "語", "🙂", "€"]

/** Valid UTF-8 of 512..2048 bytes, starting with `label` so that every file is distinct. */
export const textFile = (label: string): Uint8Array => {
  const encoder = new TextEncoder()
  const size = randomInt(512, 2049)
  const out = new Uint8Array(size).fill(0x20)
  let offset = encoder.encodeInto(`${label}\n`, out).written
  for (;;) {
    const char = encoder.encode(characters[randomInt(characters.length)] ?? " ")
    if (offset + char.byteLength > size) break
    out.set(char, offset)
    offset += char.byteLength
  }
  return out
}

const pick = <A>(items: ReadonlyArray<A>): A | undefined => items[randomInt(Math.max(items.length, 1))]

/**
 * One client: uploads, deletes some of its own acknowledged files, reads some back,
 * checks that deleted ones stay gone. Its files are its own, so no two requests on
 * the same file are ever in flight together. A resumable client uploads with tus
 * (each upload step one request: ResumableClient), the others with POST /files.
 */
const client = (
  index: number,
  run: string,
  options: LoadOptions,
  stopping: Deferred.Deferred<void>,
  resumable: boolean
) =>
  Effect.gen(function*() {
    const { ledger } = options
    let own: Array<AcknowledgedUpload> = []
    const recentlyDeleted: Array<AcknowledgedUpload> = []
    let sequence = 0

    const pause = Effect.suspend(() => Effect.sleep(`${randomInt(20, 80)} millis`))
    const failed = (outcome: Outcome) => Effect.zipRight(Effect.sync(() => ledger.error(kindOf(outcome))), pause)

    const upload = Effect.gen(function*() {
      const bytes = textFile(`tandem crash run ${run}, client ${index}, file ${sequence}`)
      const name = `crash-${index}-${sequence++}.txt`
      const form = new FormData()
      form.append("file", new Blob([bytes], { type: "text/plain" }), name)
      const { outcome, summary } = yield* send(`${options.target()}/files`, { method: "POST", body: form })
      if (outcome._tag !== "Response" || outcome.status !== 201) return yield* failed(outcome)
      const id = String(field(outcome.json, "id"))
      const expected = sha256(bytes)
      if (field(outcome.json, "sha256") !== expected || field(outcome.json, "size") !== bytes.byteLength) {
        ledger.violation("G3", id, `201 for other bytes: ${JSON.stringify(outcome.json)}, sent ${expected}`)
      }
      own.push(ledger.acknowledgeUpload(id, expected, bytes.byteLength, summary))
    })

    const remove = (file: AcknowledgedUpload) =>
      Effect.gen(function*() {
        const { outcome, summary } = yield* send(`${options.target()}/files/${file.id}`, { method: "DELETE" })
        file.history.push(summary)
        if (outcome._tag === "Response" && outcome.status === 204) {
          ledger.acknowledgeDelete(file, "204")
        } else if (outcome._tag === "Response" && outcome.status === 404) {
          if (file.state === "doubt") ledger.acknowledgeDelete(file, "404-after-doubt")
          else {
            ledger.violation("G3", file.id, "DELETE of an acknowledged, never deleted file answered 404")
            file.state = "doubt"
          }
        } else {
          // A refused connection never reached a server; anything else may have.
          if (!refused(outcome)) file.state = "doubt"
          return yield* failed(outcome)
        }
        recentlyDeleted.push(file)
        if (recentlyDeleted.length > 50) recentlyDeleted.shift()
      })

    const readLive = (file: AcknowledgedUpload) =>
      Effect.gen(function*() {
        const { outcome, summary } = yield* send(`${options.target()}/files/${file.id}/content`)
        file.history.push(summary)
        if (outcome._tag === "Response" && outcome.status === 200) {
          const actual = sha256(outcome.bytes)
          if (actual === file.sha256) ledger.readsVerified++
          else ledger.violation("G1", file.id, `content read back hashes to ${actual}, acknowledged ${file.sha256}`)
        } else if (outcome._tag === "Response" && outcome.status === 404) {
          ledger.violation("G3", file.id, "acknowledged, never deleted file answered 404")
        } else if (outcome._tag === "Response" && field(outcome.json, "error") === "ObjectMissing") {
          ledger.violation("G1", file.id, "listed file whose object is missing (500 ObjectMissing)")
        } else return yield* failed(outcome)
      })

    const readDeleted = (file: AcknowledgedUpload) =>
      Effect.gen(function*() {
        const { outcome, summary } = yield* send(`${options.target()}/files/${file.id}`)
        file.history.push(summary)
        if (outcome._tag === "Response" && outcome.status === 404) ledger.readsVerified++
        else if (outcome._tag === "Response" && outcome.status === 200) {
          ledger.violation("G4", file.id, `deleted file (${file.deletedBy ?? "?"}) is visible again`)
        } else return yield* failed(outcome)
      })

    /** The newest page of the listing must not show a file deleted before it was asked for. */
    const list = Effect.gen(function*() {
      const askedAt = performance.now()
      const { outcome } = yield* send(`${options.target()}/files?limit=100`)
      if (outcome._tag !== "Response" || outcome.status !== 200) return yield* failed(outcome)
      const items = field(outcome.json, "items")
      for (const item of Array.isArray(items) ? items : []) {
        const known = ledger.uploads.get(String(field(item, "id")))
        if (known?.state === "deleted" && (known.deletedAt ?? Infinity) < askedAt) {
          ledger.violation("G4", known.id, "deleted file listed again")
        }
      }
      ledger.readsVerified++
    })

    const tus = ResumableClient.make({
      index,
      run,
      target: options.target,
      ledger,
      partSize: options.partSize ?? PART_SIZE,
      onFinished: (file) => own.push(file)
    })
    const uploadStep = resumable ? tus.step : upload

    while (!(yield* Deferred.isDone(stopping))) {
      const live = own.filter((file) => file.state === "live")
      const doubt = own.filter((file) => file.state === "doubt")
      const roll = Math.random()
      const toDelete = roll < 0.08 ? pick(doubt) : roll < 0.33 ? pick(live) : undefined
      const toRead = roll >= 0.33 && roll < 0.45 ? pick(live) : undefined
      const toRecheck = roll >= 0.45 && roll < 0.5 ? pick(recentlyDeleted) : undefined
      if (toDelete !== undefined) yield* remove(toDelete)
      else if (toRead !== undefined) yield* readLive(toRead)
      else if (toRecheck !== undefined) yield* readDeleted(toRecheck)
      else if (roll >= 0.5 && roll < 0.52) yield* list
      else yield* uploadStep
      own = own.filter((file) => file.state !== "deleted")
    }
  })

/** Starts `clients` (and `resumableClients`) loops in the background; they run until `stop` (or the scope closes). */
export const start = (options: LoadOptions): Effect.Effect<Load, never, Scope.Scope> =>
  Effect.gen(function*() {
    const stopping = yield* Deferred.make<void>()
    const run = randomBytes(4).toString("hex")
    const resumable = options.resumableClients ?? 0
    const fibers = yield* Effect.forEach(
      Array.from({ length: options.clients + resumable }, (_, index) => index),
      (index) => Effect.forkScoped(client(index, run, options, stopping, index >= options.clients))
    )
    return { stop: Effect.zipRight(Deferred.succeed(stopping, undefined), Fiber.joinAll(fibers)) }
  })
