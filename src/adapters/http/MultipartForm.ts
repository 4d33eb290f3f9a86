import busboy from "busboy"
import { Effect, Option, Scope } from "effect"
import type { IncomingHttpHeaders } from "node:http"
import type { Readable } from "node:stream"
import type { ContentBatch, ContentReader } from "../../ports/ContentReader.js"
import { MalformedMultipart, NotMultipart, TooManyFiles } from "./RequestErrors.js"

/** The first file part of a multipart/form-data body, its bytes still arriving. */
export interface FilePart {
  readonly field: string
  /**
   * The client's file name, decoded as UTF-8 (as browsers send it); none when the
   * part names none (`filename=""`, or no filename: how a browser sends a file input
   * with no file chosen).
   */
  readonly filename: Option.Option<string>
  /** The part's Content-Type; `text/plain` when it has none (RFC 7578). */
  readonly contentType: string
  /**
   * The part's bytes. Its end is reported once the rest of the form was read too:
   * a form that holds another file part fails the read with TooManyFiles, one that
   * breaks after the part with MalformedMultipart. The part's own bytes are handed
   * over first, so they are checked whatever follows them.
   */
  readonly content: ContentReader<MalformedMultipart | TooManyFiles>
}

/** A form read for its first file part; fields before it are skipped. */
export interface Form {
  /** The first file part; none when the form ends without one. */
  readonly firstFile: Effect.Effect<Option.Option<FilePart>, MalformedMultipart>
}

export interface FormLimits {
  readonly maxParts: number
  readonly maxFieldBytes: number
  /**
   * Every byte of the body outside the first file part's content (the preamble,
   * part headers, fields, other parts, the epilogue): past it the form fails as
   * malformed, so a form's framing costs bounded time and memory.
   */
  readonly maxBytesBesideFile: number
  /**
   * The parser truncates a file part here (busboy's `fileSize`); set it above the
   * policy's maximum so the policy sees the excess and refuses the file.
   */
  readonly maxFileBytes: number
}

const ignore = () => {}

/** How much of an abandoned body is read and dropped before the connection is cut. */
const DRAIN_LIMIT_BYTES = 16 * 1024 * 1024

/**
 * A body left unread when its request is refused midway: read and drop a bounded
 * amount of it (a "lingering close"), so the client, still sending, gets to read
 * the refusal instead of a connection reset; past the limit the socket is cut.
 */
const drainBriefly = (request: Readable) => {
  if (request.readableEnded || request.destroyed) return
  let drained = 0
  request.on("data", (chunk: Uint8Array) => {
    drained += chunk.byteLength
    if (drained > DRAIN_LIMIT_BYTES) request.destroy()
  })
  request.on("error", ignore)
  request.resume()
}

const malformed = (reason: string) => new MalformedMultipart({ reason })

/** The first file part's bytes: buffered up to what the reader asked for, then paused (backpressure). */
class FileContent {
  chunks: Array<Uint8Array> = []
  bytes = 0
  /** Every byte handed over so far. */
  taken = 0
  ended = false
  /** The parser cut the part at `maxFileBytes`: no more bytes come, though the part goes on. */
  truncated = false
  /** How many bytes the pending read wants; the stream pauses once they are held. */
  wanted = 0

  constructor(readonly stream: Readable, wake: () => void) {
    stream.on("data", (chunk: Uint8Array) => {
      this.chunks.push(chunk)
      this.bytes += chunk.byteLength
      if (this.bytes >= this.wanted) stream.pause()
      wake()
    })
    stream.on("end", () => {
      this.ended = true
      wake()
    })
    stream.on("limit", () => {
      // The cut's last bytes may still sit in the paused stream's buffer: read them
      // out first ('data' collects them), so the reader sees every byte up to the
      // cut and its checks refuse the file as too large.
      while (stream.read() !== null);
      this.truncated = true
      wake()
    })
  }

  /** What has arrived; the end of the part is not the end of the upload, so it is never reported here. */
  take(): ContentBatch {
    const batch = { chunks: this.chunks, ended: false }
    this.taken += this.bytes
    this.chunks = []
    this.bytes = 0
    return batch
  }

  /** Every byte of the part the parser produced: handed over, held, or still in the paused stream. */
  get received(): number {
    return this.taken + this.bytes + this.stream.readableLength
  }
}

/**
 * Reads a form with busboy as it arrives, with callbacks rather than a stream of
 * streams: a small upload costs one wake-up per step, not one per chunk. Busboy
 * rather than the platform's parser because file names are UTF-8 in what browsers
 * send, and names outside Latin-1 (Cyrillic, CJK, emoji) must survive. A file's
 * bytes are not buffered beyond what its reader asked for and the socket's window.
 */
class BusboyForm {
  failure: MalformedMultipart | undefined = undefined
  closed = false
  file: { readonly part: Omit<FilePart, "content">; readonly content: FileContent } | undefined = undefined
  otherFiles = 0
  /** The pending wait's check, run whenever something arrives; the form has one reader, so one wait at a time. */
  private waiter: (() => void) | undefined = undefined

  constructor(readonly request: Readable, readonly parser: busboy.Busboy, limits: FormLimits) {
    const wake = () => this.waiter?.()
    const fail = (reason: string) => {
      this.failure ??= malformed(reason)
      wake()
    }
    // What the parser may hold back unconfirmed (a boundary's length, and then some).
    const slack = 1024
    let received = 0
    request.on("data", (chunk: Uint8Array) => {
      received += chunk.byteLength
      if (received - (this.file?.content.received ?? 0) > limits.maxBytesBesideFile + slack) {
        fail(`the form holds more than ${limits.maxBytesBesideFile} bytes beside its file (fields, headers, framing)`)
      }
    })
    parser.on("file", (field, stream, info) => {
      // Errors reach the reader as `failure`; this keeps one after it stopped reading from crashing the process.
      stream.on("error", ignore)
      if (this.file === undefined) {
        this.file = {
          // busboy gives no filename for `filename=""` and for none at all.
          part: { field, filename: Option.fromNullable(info.filename), contentType: info.mimeType },
          content: new FileContent(stream, wake)
        }
      } else {
        this.otherFiles += 1
        stream.resume()
      }
      wake()
    })
    parser.on("field", (_field, _value, info) => {
      if (info.valueTruncated) fail("a form field is too large")
    })
    parser.on("partsLimit", () => fail("too many parts"))
    parser.on(
      "error",
      (error) => fail(error instanceof Error ? error.message.replace(/\.$/, "") : "it cannot be parsed")
    )
    parser.on("close", () => {
      this.closed = true
      wake()
    })
    request.once("close", () => {
      if (!request.readableEnded) fail("the client closed the connection mid-body")
    })
    request.pipe(parser)
  }

  /**
   * Waits until `ready` holds, or the form failed. What is ready is handed out
   * first: bytes that arrived before a parse error are checked as they would have
   * been without it, so the same file gets the same verdict however the body breaks.
   */
  private until<A>(ready: () => Option.Option<A>): Effect.Effect<A, MalformedMultipart> {
    if (this.waiter !== undefined) return Effect.dieMessage("MultipartForm: one wait at a time")
    // Most waits of a small upload are over before they begin: no suspension then.
    const now = ready()
    if (Option.isSome(now)) return Effect.succeed(now.value)
    if (this.failure !== undefined) return Effect.fail(this.failure)
    return Effect.async<A, MalformedMultipart>((resume) => {
      const check = () => {
        const value = ready()
        if (Option.isSome(value)) {
          this.waiter = undefined
          resume(Effect.succeed(value.value))
        } else if (this.failure !== undefined) {
          this.waiter = undefined
          resume(Effect.fail(this.failure))
        }
      }
      this.waiter = check
      return Effect.sync(() => {
        this.waiter = undefined
      })
    })
  }

  readonly firstFile: Effect.Effect<Option.Option<FilePart>, MalformedMultipart> = Effect.suspend(() =>
    this.until(() => {
      const file = this.file
      if (file !== undefined) return Option.some(Option.some({ ...file.part, content: this.reader(file.content) }))
      // A parser that closed on an error did not reach the end of the form.
      return this.closed && this.failure === undefined ? Option.some(Option.none()) : Option.none()
    })
  )

  private reader(content: FileContent): ContentReader<MalformedMultipart | TooManyFiles> {
    return {
      read: (maxBytes) =>
        Effect.suspend(() => {
          content.wanted = maxBytes
          if (content.bytes < maxBytes && !content.ended) content.stream.resume()
          return this.until(() =>
            content.bytes >= maxBytes || content.truncated || content.ended
              ? Option.some(content.take())
              : Option.none()
          ).pipe(
            Effect.flatMap((batch) =>
              batch.chunks.length > 0
                ? Effect.succeed(batch)
                : content.truncated
                // Its reader saw the bytes up to the cut first, which its checks refuse.
                ? Effect.fail(malformed("the file part is larger than the form allows"))
                : this.formEnd
            )
          )
        })
    }
  }

  /** The file part is over: the upload is whole once the form ends without another file. */
  private readonly formEnd: Effect.Effect<ContentBatch, MalformedMultipart | TooManyFiles> = Effect.suspend(() =>
    this.until(() =>
      this.otherFiles > 0
        ? Option.some(true)
        : this.closed && this.failure === undefined
        ? Option.some(false)
        : Option.none()
    ).pipe(
      Effect.flatMap((another) =>
        another ? Effect.fail(new TooManyFiles()) : Effect.succeed({ chunks: [], ended: true })
      )
    )
  )

  /** Stops parsing; whatever of the body is left is drained briefly, then the connection is cut. */
  close() {
    this.request.unpipe(this.parser)
    this.parser.removeAllListeners()
    // Destroying a parser mid-form makes it emit "Unexpected end of form"; an
    // unheard 'error' would take the whole process down.
    this.parser.on("error", ignore)
    this.parser.destroy()
    drainBriefly(this.request)
  }
}

/** RFC 2046: a boundary has 1 to 70 characters. A longer one costs the parser time that grows with it. */
const MAX_BOUNDARY_LENGTH = 70

const boundaryOf = (contentType: string): string | undefined =>
  /;\s*boundary=(?:"([^"]*)"|([^;\s]*))/i.exec(contentType)?.slice(1).find((value) => value !== undefined)

/**
 * Starts reading a request's multipart/form-data body; it stops when the scope
 * closes. A boundary over 70 characters is refused before any of the body is read.
 */
export const open = (
  request: Readable & { readonly headers: IncomingHttpHeaders },
  limits: FormLimits
): Effect.Effect<Form, NotMultipart | MalformedMultipart, Scope.Scope> => {
  const contentType = request.headers["content-type"] ?? ""
  if ((boundaryOf(contentType) ?? "").length > MAX_BOUNDARY_LENGTH) {
    return Effect.zipRight(
      Effect.sync(() => drainBriefly(request)),
      Effect.fail(malformed(`its boundary is longer than ${MAX_BOUNDARY_LENGTH} characters (RFC 2046)`))
    )
  }
  // The finalizer goes straight on the scope: Effect.acquireRelease would also restore
  // the acquiring fiber's FiberRefs around it (two diffs and two patches of them, and
  // of its whole Context), a cost on every upload that `close` does not need.
  return Effect.uninterruptible(
    Effect.flatMap(Effect.scope, (scope) =>
      Effect.flatMap(
        Effect.try({
          try: () =>
            new BusboyForm(
              request,
              busboy({
                headers: request.headers,
                defParamCharset: "utf8",
                limits: { parts: limits.maxParts, fieldSize: limits.maxFieldBytes, fileSize: limits.maxFileBytes }
              }),
              limits
            ),
          catch: () => new NotMultipart({ contentType })
        }),
        (form) => Effect.as(Scope.addFinalizer(scope, Effect.sync(() => form.close())), form)
      ))
  )
}
