import { NodeStream } from "@effect/platform-node"
import busboy from "busboy"
import { Effect, Stream } from "effect"
import type { IncomingHttpHeaders } from "node:http"
import type { Readable } from "node:stream"
import { MalformedMultipart, NotMultipart } from "./RequestErrors.js"

/** One part of a multipart/form-data body, as it arrives. */
export type FormPart =
  | {
    readonly _tag: "File"
    readonly field: string
    /** The client's file name, decoded as UTF-8 (as browsers send it). */
    readonly filename: string
    /** The part's Content-Type; `text/plain` when it has none (RFC 7578). */
    readonly contentType: string
    /** The bytes, read as they arrive; consume it before pulling the next part. */
    readonly content: Stream.Stream<Uint8Array, MalformedMultipart>
  }
  | { readonly _tag: "Field"; readonly field: string }

export interface FormLimits {
  readonly maxParts: number
  readonly maxFieldBytes: number
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

/**
 * The parts of a request body, parsed by busboy. Busboy rather than the platform's
 * parser because file names are UTF-8 in what browsers send, and names outside
 * Latin-1 (Cyrillic, CJK, emoji) must survive. Parts stream with backpressure: a
 * file's bytes are not buffered beyond the socket's own window.
 */
export const parts = (request: Readable & { readonly headers: IncomingHttpHeaders }, limits: FormLimits): Stream.Stream<FormPart, MalformedMultipart | NotMultipart> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const parser = yield* Effect.try({
      try: () =>
        busboy({
          headers: request.headers,
          defParamCharset: "utf8",
          limits: {
            parts: limits.maxParts,
            fieldSize: limits.maxFieldBytes,
            fileSize: limits.maxFileBytes
          }
        }),
      catch: () => new NotMultipart({ contentType: request.headers["content-type"] ?? "" })
    })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        request.unpipe(parser)
        parser.removeAllListeners()
        // Destroying a parser mid-form makes it emit "Unexpected end of form"; an
        // unheard 'error' would take the whole process down.
        parser.on("error", ignore)
        parser.destroy()
        drainBriefly(request)
      })
    )
    return Stream.async<FormPart, MalformedMultipart>((emit) => {
      parser.on("file", (field, file, info) => {
        // Errors reach the reader of `content`; this keeps one after it stopped reading from crashing the process.
        file.on("error", ignore)
        void emit.single({
          _tag: "File",
          field,
          filename: info.filename,
          contentType: info.mimeType,
          content: NodeStream.fromReadable(
            () => file,
            (cause) => cause instanceof MalformedMultipart ? cause : malformed("the file part could not be read")
          )
        })
      })
      parser.on("field", (field, _value, info) => {
        if (info.valueTruncated) void emit.fail(malformed("a form field is too large"))
        else void emit.single({ _tag: "Field", field })
      })
      parser.on("partsLimit", () => void emit.fail(malformed("too many parts")))
      parser.on("error", (error) =>
        void emit.fail(malformed(error instanceof Error ? error.message.replace(/\.$/, "") : "it cannot be parsed")))
      parser.on("close", () => void emit.end())
      request.once("close", () => {
        if (!request.readableEnded) void emit.fail(malformed("the client closed the connection mid-body"))
      })
      request.pipe(parser)
    }, 16)
  }))
