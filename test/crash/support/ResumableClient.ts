import { Duration, Effect } from "effect"
import { createHash, randomInt } from "node:crypto"
import { mulberry32 } from "../../support/Random.js"
import { errorOf, kindOf, type Outcome, refused, send, sha256 } from "./Exchange.js"
import type { AcknowledgedUpload, Ledger, ResumableEntry } from "./Ledger.js"

/**
 * tus 1.0.0 clients for the crash runs (/uploads, src/app/ResumableUploads.ts): each
 * creates uploads of up to two parts and a bit (S3_PART_SIZE, CrashHarness.PART_SIZE)
 * and PATCHes them in chunks of 16 KiB to 2 MiB, cut anywhere (inside multibyte
 * characters, on and beside the part boundaries), some with an Upload-Checksum; after
 * any failure it asks HEAD where the upload stands and goes on from there. Every
 * 204's Upload-Offset and every finished upload goes to the ledger. Some uploads are
 * left unfinished on purpose, some terminated; the bytes sent are paced.
 */

const TUS = { "tus-resumable": "1.0.0" }
const OFFSET_OCTET_STREAM = "application/offset+octet-stream"
const MiB = 1024 * 1024

/** Uploads a client keeps going at once: while one waits out a lease (UploadBusy), the others move. */
const MAX_ACTIVE = 3

/**
 * Bytes a client sends per second, at most: enough for every kill to find PATCHes in
 * flight, little enough to leave the machine's two cores to the rest of the load.
 */
const BYTES_PER_SECOND = 3 * MiB / 4

const base64 = (text: string) => Buffer.from(text, "utf8").toString("base64")

const characters = [..."abcdefghijklmnopqrstuvwxyz      \n", "é", "ß", "ñ", "—", "日", "本", "語", "🙂", "€"]
const encoder = new TextEncoder()
const encodedCharacters = characters.map((char) => encoder.encode(char))
const SPACE = encoder.encode(" ")

const randomFrom = mulberry32

/** Valid UTF-8 of exactly `length` bytes, distinct for each seed: a 64 KiB block of random characters, repeated. */
export const resumableText = (seed: number, length: number): Uint8Array => {
  const random = randomFrom(seed)
  const block = new Uint8Array(64 * 1024)
  let fill = 0
  for (;;) {
    const char = encodedCharacters[Math.floor(random() * encodedCharacters.length)] ?? SPACE
    if (fill + char.byteLength > block.byteLength) break
    block.set(char, fill)
    fill += char.byteLength
  }
  const whole = block.subarray(0, fill)
  const out = new Uint8Array(length).fill(0x20)
  let offset = encoder.encodeInto(`tandem crash run, resumable upload ${seed}\n`, out).written
  while (offset < length) {
    let take = Math.min(whole.byteLength, length - offset)
    // Never half a character at the end.
    while (take > 0 && take < whole.byteLength && ((whole[take] ?? 0) & 0xc0) === 0x80) take--
    if (take === 0) break
    out.set(whole.subarray(0, take), offset)
    offset += take
  }
  return out
}

/** Lengths around the part size: within one part, just short of it, exactly one or two parts, and past them. */
const lengthFor = (partSize: number): number => {
  const roll = randomInt(100)
  if (roll < 30) return randomInt(512, 64 * 1024)
  if (roll < 40) return partSize - randomInt(1, 4096)
  if (roll < 45) return partSize
  if (roll < 85) return partSize + randomInt(1, 300 * 1024)
  if (roll < 90) return 2 * partSize
  return 2 * partSize + randomInt(1, 300 * 1024)
}

/**
 * Where the next PATCH from `offset` ends: one time in four on (or a byte beside) the
 * next part boundary, else 16 KiB to 2 MiB on.
 */
const nextEnd = (offset: number, length: number, partSize: number): number => {
  if (offset >= length) return length
  const boundary = (Math.floor(offset / partSize) + 1) * partSize
  if (randomInt(4) === 0 && boundary - offset <= 3 * MiB) {
    const end = boundary + randomInt(-1, 2)
    if (end > offset && end <= length) return end
  }
  return Math.min(length, offset + (randomInt(2) === 0 ? randomInt(16 * 1024, MiB / 4) : randomInt(MiB / 4, 2 * MiB)))
}

const checksumHeader = (bytes: Uint8Array): Record<string, string> => {
  if (randomInt(4) !== 0) return {}
  const algorithm = randomInt(2) === 0 ? "sha1" : "sha256"
  return { "upload-checksum": `${algorithm} ${createHash(algorithm).update(bytes).digest("base64")}` }
}

const patchHeaders = (offset: number, extra: Record<string, string> = {}) => ({
  ...TUS,
  "content-type": OFFSET_OCTET_STREAM,
  "upload-offset": String(offset),
  ...extra
})

/** A non-negative integer header, or undefined. */
const integerHeader = (outcome: Outcome, name: string): number | undefined => {
  const value = outcome._tag === "Response" ? outcome.headers.get(name) : null
  return value !== null && /^\d+$/.test(value) ? Number(value) : undefined
}

const is = (outcome: Outcome, status: number, error?: string) =>
  outcome._tag === "Response" && outcome.status === status && (error === undefined || errorOf(outcome) === error)

/** An upload a client is working on. */
interface Active {
  readonly entry: ResumableEntry
  readonly bytes: Uint8Array
  /** Where to PATCH from; undefined: HEAD first. */
  offset: number | undefined
  /** Not before this (performance.now()): the lease of a PATCH the server may still hold. */
  notBefore: number
  /** DELETE it rather than finish it. */
  terminating: boolean
  /** The replica of the last PATCH. */
  lastTarget: string | undefined
}

export interface ResumableClientOptions {
  readonly index: number
  readonly run: string
  readonly target: () => string
  readonly ledger: Ledger
  readonly partSize: number
  /** A finished upload is a file of the client's, like its other uploads. */
  readonly onFinished: (file: AcknowledgedUpload) => void
}

/** One client's tus side: `step` sends one request for one of its uploads (or starts one). */
export const make = (options: ResumableClientOptions) => {
  const { ledger, partSize } = options
  const active: Array<Active> = []
  let sequence = 0
  /** No bytes sent before this (performance.now()). */
  let quietUntil = 0
  const throttle = (bytes: number) => {
    quietUntil = Math.max(quietUntil, performance.now()) + (bytes / BYTES_PER_SECOND) * 1000
  }

  /** A short pause after a failure; longer while no server listens (every try would copy and hash its bytes again). */
  const failed = (outcome: Outcome) =>
    Effect.zipRight(
      Effect.sync(() => ledger.error(kindOf(outcome))),
      Effect.suspend(() => Effect.sleep(`${refused(outcome) ? randomInt(150, 300) : randomInt(20, 80)} millis`))
    )
  const drop = (upload: Active) => {
    const at = active.indexOf(upload)
    if (at >= 0) active.splice(at, 1)
  }
  const lost = (upload: Active, detail: string) => {
    const { entry } = upload
    ledger.violation(
      "offsets",
      entry.id,
      `${detail}; ${entry.acknowledged} of ${entry.length} bytes had been acknowledged`
    )
    entry.state = "lost"
    drop(upload)
  }
  const finish = (upload: Active) => {
    options.onFinished(ledger.finishResumable(upload.entry))
    drop(upload)
  }
  const busy = (upload: Active, outcome: Outcome) => {
    ledger.error(kindOf(outcome))
    upload.offset = undefined
    upload.notBefore = performance.now() + randomInt(1_000, 3_000)
  }

  /** The next creation, kept until one reaches a server: its bytes are made once, not at every refused attempt. */
  let planned:
    | { readonly seed: number; readonly name: string; readonly bytes: Uint8Array; readonly carried: number }
    | undefined
  const plan = () => {
    const seed = randomInt(2 ** 31)
    const length = lengthFor(partSize)
    // One creation in five carries the first bytes (creation-with-upload).
    const carried = randomInt(5) === 0 ? nextEnd(0, length, partSize) : 0
    const name = `tus-${options.run}-${options.index}-${sequence++}.txt`
    return { seed, name, bytes: resumableText(seed, length), carried }
  }

  const create = Effect.gen(function*() {
    const { bytes, carried, name, seed } = planned ?? plan()
    const length = bytes.byteLength
    ledger.resumableCreations.set(name, carried)
    const base = options.target()
    const { outcome, summary } = yield* send(
      `${base}/uploads`,
      {
        method: "POST",
        headers: {
          ...TUS,
          "upload-length": String(length),
          "upload-metadata": `filename ${base64(name)},filetype ${base64("text/plain")}`,
          ...(carried > 0 ? { "content-type": OFFSET_OCTET_STREAM } : {})
        },
        ...(carried > 0 ? { body: bytes.slice(0, carried) } : {})
      },
      `${name}, length ${length}${carried > 0 ? `, bytes 0-${carried}` : ""}`
    )
    // A creation that reached no server created nothing: the same one goes again.
    if (refused(outcome)) {
      ledger.resumableCreations.delete(name)
      planned = { seed, name, bytes, carried }
    } else {
      planned = undefined
      throttle(carried)
    }
    if (outcome._tag !== "Response" || outcome.status !== 201) return yield* failed(outcome)
    const location = outcome.headers.get("location") ?? ""
    const id = /^\/(?:uploads|files)\/([0-9a-f-]{36})$/.exec(location)?.[1]
    const offset = integerHeader(outcome, "upload-offset")
    if (id === undefined || offset === undefined) {
      return ledger.violation("offsets", name, `201 with Location "${location}", Upload-Offset ${offset}`)
    }
    const entry = ledger.createResumable({ id, name, length, seed, sha256: sha256(bytes), history: [summary] })
    const upload: Active = { entry, bytes, offset, notBefore: 0, terminating: false, lastTarget: base }
    active.push(upload)
    if (carried === 0 && offset === 0) return
    ledger.acknowledgeOffset(entry, offset)
    if (offset !== carried) {
      ledger.violation("offsets", id, `creation with bytes 0-${carried}: 201 with Upload-Offset ${offset}`)
    }
    if (location === `/files/${id}` && offset === length) finish(upload)
  })

  const head = (upload: Active) =>
    Effect.gen(function*() {
      const { entry } = upload
      const { outcome, summary } = yield* send(`${options.target()}/uploads/${entry.id}`, {
        method: "HEAD",
        headers: TUS
      })
      entry.history.push(summary)
      const offset = integerHeader(outcome, "upload-offset")
      if (is(outcome, 200) && offset !== undefined) {
        if (integerHeader(outcome, "upload-length") !== entry.length) {
          ledger.violation("offsets", entry.id, `HEAD: Upload-Length is not the ${entry.length} declared`)
        }
        if (offset < entry.acknowledged) {
          ledger.violation("offsets", entry.id, `HEAD: Upload-Offset ${offset}, ${entry.acknowledged} acknowledged`)
        }
        // As any tus client would: on from where the server stands (past the end: the last PATCH again).
        upload.offset = offset
      } else if (is(outcome, 404)) lost(upload, "HEAD of an open upload answered 404")
      else yield* failed(outcome)
    })

  const patch = (upload: Active, from: number) =>
    Effect.gen(function*() {
      const { entry } = upload
      const base = options.target()
      if (upload.lastTarget !== undefined && upload.lastTarget !== base) ledger.replicaSwitches++
      upload.lastTarget = base
      const end = nextEnd(from, entry.length, partSize)
      const chunk = upload.bytes.slice(from, end)
      const extra = checksumHeader(chunk)
      const { outcome, summary } = yield* send(
        `${base}/uploads/${entry.id}`,
        { method: "PATCH", headers: patchHeaders(from, extra), body: chunk },
        `bytes ${from}-${end}${"upload-checksum" in extra ? ` (${extra["upload-checksum"]?.split(" ")[0]})` : ""}`
      )
      entry.history.push(summary)
      if (!refused(outcome)) throttle(chunk.byteLength)
      if (is(outcome, 204)) {
        const offset = integerHeader(outcome, "upload-offset")
        if (offset === undefined) {
          upload.offset = undefined
          return ledger.violation("offsets", entry.id, `PATCH of bytes ${from}-${end}: 204 without an Upload-Offset`)
        }
        ledger.acknowledgeOffset(entry, offset)
        if (offset !== end) {
          ledger.violation("offsets", entry.id, `PATCH of bytes ${from}-${end}: 204 with Upload-Offset ${offset}`)
        }
        upload.offset = offset
        const location = outcome._tag === "Response" ? outcome.headers.get("location") : null
        if (location === `/files/${entry.id}` && offset === entry.length) return finish(upload)
        if (location !== null || offset === entry.length) {
          return ledger.violation("offsets", entry.id, `204 at ${offset} of ${entry.length} with Location ${location}`)
        }
        // Now and then the client goes away for good (the final checks take it over), or terminates it.
        const roll = randomInt(100)
        if (roll < 8) {
          entry.abandoned = true
          drop(upload)
        } else if (roll < 12) upload.terminating = true
      } else if (is(outcome, 409, "UploadBusy")) busy(upload, outcome)
      else if (is(outcome, 409, "OffsetMismatch")) {
        ledger.error(kindOf(outcome))
        upload.offset = undefined
      } else if (is(outcome, 404)) lost(upload, `PATCH of bytes ${from}-${end} answered 404`)
      else if (outcome._tag === "Response" && outcome.status >= 400 && outcome.status < 500) {
        // Valid bytes at the right offset: nothing but a lease or a wrong offset may refuse them.
        lost(upload, `PATCH of bytes ${from}-${end} refused: ${kindOf(outcome)}`)
      } else {
        upload.offset = undefined
        yield* failed(outcome)
      }
    })

  const terminate = (upload: Active) =>
    Effect.gen(function*() {
      const { entry } = upload
      const { outcome, summary } = yield* send(`${options.target()}/uploads/${entry.id}`, {
        method: "DELETE",
        headers: TUS
      })
      entry.history.push(summary)
      if (is(outcome, 204) || (is(outcome, 404) && entry.terminateInDoubt)) {
        ledger.terminateResumable(entry)
        drop(upload)
      } else if (is(outcome, 404)) lost(upload, "DELETE of an open upload answered 404")
      else if (is(outcome, 409, "UploadBusy")) busy(upload, outcome)
      else {
        if (!refused(outcome)) entry.terminateInDoubt = true
        yield* failed(outcome)
      }
    })

  const step: Effect.Effect<void> = Effect.suspend(() => {
    const now = performance.now()
    if (now < quietUntil) return Effect.sleep(Duration.millis(Math.min(quietUntil - now, 250)))
    const ready = active.filter((upload) => upload.notBefore <= now)
    const upload = ready[randomInt(Math.max(ready.length, 1))]
    if (upload === undefined) {
      if (active.length < MAX_ACTIVE) return create
      const wait = Math.min(...active.map((upload) => upload.notBefore)) - now
      return Effect.sleep(Duration.millis(Math.min(Math.max(wait, 10), 250)))
    }
    if (upload.terminating) return terminate(upload)
    return upload.offset === undefined ? head(upload) : patch(upload, upload.offset)
  })

  return { step }
}

/** What the final restart found of the resumable uploads. */
export interface ProbeReport {
  readonly open: number
  /** Bytes HEAD reported beyond the acknowledged offsets (parts that reached the store before an answer was lost). */
  readonly aheadBytes: number
  readonly finished: number
  readonly terminated: number
}

/** An answer from the server within `attempts` tries: lost connections and 5xx are tried again. */
const answered = (
  request: (base: string) => Effect.Effect<{ readonly outcome: Outcome; readonly summary: string }>,
  targets: ReadonlyArray<string>,
  history: Array<string>,
  attempts = 10
) =>
  Effect.gen(function*() {
    let last: Outcome = { _tag: "NoResponse", reason: "not sent" }
    for (let attempt = 0; attempt < attempts; attempt++) {
      const { outcome, summary } = yield* request(targets[attempt % targets.length] ?? "")
      history.push(summary)
      last = outcome
      if (outcome._tag === "Response" && outcome.status < 500) return outcome
      yield* Effect.sleep("300 millis")
    }
    return last
  })

const headOf = (id: string) => (base: string) => send(`${base}/uploads/${id}`, { method: "HEAD", headers: TUS })

/**
 * After the final restart: HEAD of every resumable upload the clients knew. An open
 * one must report at least the offset acknowledged last; a finished one, its whole
 * length (404 once its file was deleted); a terminated one must be gone.
 */
export const probe = (targets: ReadonlyArray<string>, ledger: Ledger): Effect.Effect<ProbeReport> =>
  Effect.gen(function*() {
    let aheadBytes = 0
    yield* Effect.forEach(Array.from(ledger.resumable.values()), (entry) =>
      Effect.gen(function*() {
        if (entry.state === "lost") return
        const file = ledger.uploads.get(entry.id)
        if (file?.state === "doubt") return
        const outcome = yield* answered(headOf(entry.id), targets, entry.history)
        const offset = integerHeader(outcome, "upload-offset")
        const length = integerHeader(outcome, "upload-length")
        if (entry.state === "open") {
          // A DELETE whose answer was lost may have terminated it.
          if (entry.terminateInDoubt && is(outcome, 404)) return
          if (!is(outcome, 200) || offset === undefined) {
            ledger.violation(
              "offsets",
              entry.id,
              `after the final restart HEAD answered ${
                kindOf(outcome)
              }; ${entry.acknowledged} of ${entry.length} bytes had been acknowledged`
            )
          } else if (offset < entry.acknowledged || length !== entry.length) {
            ledger.violation(
              "offsets",
              entry.id,
              `after the final restart HEAD reports ${offset} of ${length}; ${entry.acknowledged} of ${entry.length} were acknowledged`
            )
          } else aheadBytes += offset - entry.acknowledged
        } else if (entry.state === "finished" && file?.state === "live") {
          if (!is(outcome, 200) || offset !== entry.length || length !== entry.length) {
            ledger.violation(
              "offsets",
              entry.id,
              `finished upload: HEAD answered ${kindOf(outcome)} with Upload-Offset ${offset} of ${length}`
            )
          }
        } else if (!is(outcome, 404)) {
          ledger.violation(
            entry.state === "terminated" ? "leftover" : "G4",
            entry.id,
            `${entry.state === "terminated" ? "terminated upload" : "upload of a deleted file"}: HEAD answered ${
              kindOf(outcome)
            }`
          )
        }
      }), { concurrency: 8, discard: true })
    return {
      open: ledger.resumableIn("open").length,
      aheadBytes,
      finished: ledger.resumableIn("finished").length,
      terminated: ledger.resumableIn("terminated").length
    }
  })

/** How long the final checks try to finish or terminate one upload: past any lease a killed PATCH left. */
const SETTLE_DEADLINE_MILLIS = 30_000

/** What the final checks send at once: the rest of an upload in one or two PATCHes, across its part boundaries. */
const FINAL_PATCH_BYTES = 6 * MiB

/**
 * Resumes an open upload after the final restart from where HEAD says it stands
 * (`from`, when known), to its end: it must become its file.
 */
const finishOpen = (targets: ReadonlyArray<string>, ledger: Ledger, entry: ResumableEntry, known?: number) =>
  Effect.gen(function*() {
    const bytes = resumableText(entry.seed, entry.length)
    const deadline = performance.now() + SETTLE_DEADLINE_MILLIS
    let from = known
    let last = "nothing sent"
    for (let attempt = 0; performance.now() < deadline; attempt++) {
      const base = targets[attempt % targets.length] ?? ""
      if (from === undefined) {
        const { outcome, summary } = yield* headOf(entry.id)(base)
        entry.history.push(summary)
        last = kindOf(outcome)
        from = is(outcome, 200) ? integerHeader(outcome, "upload-offset") : undefined
        if (from === undefined) yield* Effect.sleep("500 millis")
        continue
      }
      const end = Math.min(entry.length, from + FINAL_PATCH_BYTES)
      const { outcome, summary } = yield* send(
        `${base}/uploads/${entry.id}`,
        { method: "PATCH", headers: patchHeaders(from), body: bytes.slice(from, end) },
        `bytes ${from}-${end}`
      )
      entry.history.push(summary)
      last = kindOf(outcome)
      const offset = integerHeader(outcome, "upload-offset")
      if (is(outcome, 204) && offset !== undefined) {
        ledger.acknowledgeOffset(entry, offset)
        if (outcome._tag === "Response" && outcome.headers.get("location") === `/files/${entry.id}`) {
          ledger.finishResumable(entry)
          return true
        }
        from = offset
      } else {
        from = undefined
        yield* Effect.sleep(is(outcome, 409, "UploadBusy") ? "1 second" : "300 millis")
      }
    }
    ledger.violation(
      "offsets",
      entry.id,
      `could not be finished after the final restart (last answer: ${last}); ${entry.acknowledged} of ${entry.length} bytes had been acknowledged`
    )
    return false
  })

/** DELETE /uploads/{id} until it is gone (204, or 404 after a lost answer), past any lease left. */
const terminateUpload = (targets: ReadonlyArray<string>, id: string, history: Array<string>, inDoubt: boolean) =>
  Effect.gen(function*() {
    const deadline = performance.now() + SETTLE_DEADLINE_MILLIS
    let doubt = inDoubt
    let last = "nothing sent"
    for (let attempt = 0; performance.now() < deadline; attempt++) {
      const { outcome, summary } = yield* send(`${targets[attempt % targets.length] ?? ""}/uploads/${id}`, {
        method: "DELETE",
        headers: TUS
      })
      history.push(summary)
      last = kindOf(outcome)
      if (is(outcome, 204) || (is(outcome, 404) && doubt)) return undefined
      if (is(outcome, 404)) return "DELETE answered 404"
      if (!refused(outcome)) doubt = true
      yield* Effect.sleep(is(outcome, 409, "UploadBusy") ? "1 second" : "300 millis")
    }
    return `could not be terminated (last answer: ${last})`
  })

export interface SettleReport {
  readonly finished: number
  readonly terminated: number
  /** Uploads whose creation's answer was lost: no client knew them. */
  readonly unknownTerminated: number
}

/** Open uploads the final checks finish (the nearest to their end); the others are terminated. */
const FINISH_AT_MOST = 3

/**
 * The end of a run, on the servers of the final restart: the open uploads nearest
 * to their end (and any a lost answer left finished) are finished from where HEAD
 * says they stand, and each must become its file; the others are terminated, and
 * so are the uploads no client knew (their creation's answer was lost), so that
 * nothing of any of them may be left.
 */
export const settle = (
  targets: ReadonlyArray<string>,
  ledger: Ledger,
  unknown: ReadonlyArray<{ readonly id: string; readonly name: string }>
): Effect.Effect<SettleReport> =>
  Effect.gen(function*() {
    const open = yield* Effect.forEach(ledger.resumableIn("open"), (entry) =>
      Effect.map(answered(headOf(entry.id), targets, entry.history), (status) => ({
        entry,
        offset: is(status, 200) ? integerHeader(status, "upload-offset") : undefined
      })), { concurrency: 8 })
    const toFinish = new Set([
      // One whose last PATCH's answer was lost may be a file already: it is finished then, not terminated.
      ...open.filter(({ entry, offset }) =>
        offset === entry.length
      ),
      ...open.filter(({ entry, offset }) =>
        offset !== undefined && !entry.terminateInDoubt
      )
        .sort((a, b) => (a.entry.length - (a.offset ?? 0)) - (b.entry.length - (b.offset ?? 0)))
        .slice(0, FINISH_AT_MOST)
    ])
    let finished = 0
    let terminated = 0
    let unknownTerminated = 0
    yield* Effect.all([
      Effect.forEach(open, (upload) =>
        Effect.gen(function*() {
          const { entry, offset } = upload
          if (toFinish.has(upload)) {
            if (yield* finishOpen(targets, ledger, entry, offset)) finished++
            return
          }
          const failure = yield* terminateUpload(targets, entry.id, entry.history, entry.terminateInDoubt)
          if (failure === undefined) {
            ledger.terminateResumable(entry)
            terminated++
          } else ledger.violation("leftover", entry.id, `open upload ${failure}`)
        }), { concurrency: 8, discard: true }),
      Effect.forEach(unknown, ({ id, name }) =>
        Effect.gen(function*() {
          const failure = yield* terminateUpload(targets, id, [], false)
          if (failure === undefined) unknownTerminated++
          else ledger.violation("leftover", id, `upload ${name}, whose creation's answer was lost, ${failure}`)
        }), { concurrency: 8, discard: true })
    ], { concurrency: 2, discard: true })
    return { finished, terminated, unknownTerminated }
  })
