import { Effect, Either, Exit, HashMap, Layer, Option, Ref, Schema, Stream } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import type { FileHandle } from "node:fs/promises"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { ObjectKey } from "../../domain/FileRecord.js"
import { ObjectStoreUnavailable } from "../../domain/StorageErrors.js"
import type {
  ByteRange,
  ObjectInfo,
  PartReceipt,
  PutOptions,
  ResumablePart,
  StoredObject
} from "../../ports/ObjectStore.js"
import { ObjectNotFound, ObjectStore } from "../../ports/ObjectStore.js"
import { boundsOf } from "./ByteRangeBounds.js"
import type { MultipartUpload, ObjectBackend, WriteSettings } from "./ObjectBackend.js"
import { DEFAULT_PART_SIZE, toObjectStore } from "./ObjectBackend.js"

/**
 * An object store in one flat directory. Each object is one file: a 4-byte big-endian
 * header length, a JSON header (content type, metadata), then the bytes, so a single
 * rename publishes all of it. Writes go to `.tmp/` first, are fsynced, then renamed.
 *
 * A multipart upload is one such temp file, `.tmp/<uploadId>`: the header is written
 * when it is created, each part is appended, and completing it fsyncs and renames it
 * into place. Parts may be of any size. Which part comes next is kept in memory, so
 * only the process that created an upload can add to or complete it; any process can
 * abort it (the id names the file). A resumable upload's parts (uploadPartAt) keep
 * nothing in memory: each is written at its own offset in the file, which ends with
 * it, and its receipt records where it lies, so any process can add a part or
 * complete the upload (completeWith).
 *
 * A read opens the file once: `get` reads the header through the handle and the body
 * streams from the same handle, so a delete (unlink) or a replace (rename over) after
 * `get` changes nothing it reads; the body is the version `get` found, whole.
 */

const TEMP_DIRECTORY = ".tmp"
const MAX_HEADER_BYTES = 64 * 1024
/** Random and checked on every use, so an upload id can only ever name a file directly in `.tmp/`. */
const UPLOAD_ID = /^upload-[0-9a-f]{32}$/
const newUploadId = () => `upload-${randomBytes(16).toString("hex")}`

const Header = Schema.parseJson(Schema.Struct({
  contentType: Schema.String,
  metadata: Schema.Record({ key: Schema.String, value: Schema.String })
}))
const decodeHeader = Schema.decodeUnknownSync(Header)
const encodeHeader = Schema.encodeSync(Header)

/**
 * Percent-encodes everything but `a-z 0-9 - _`: no `/` or `.` survives, so a name can
 * neither leave the directory nor clash with `.tmp`, and names stay distinct on
 * case-insensitive file systems. Throws on lone surrogates.
 */
export const fileNameOf = (key: string): string =>
  encodeURIComponent(key).replace(
    /%[0-9A-F]{2}|[A-Z.!~*'()]/g,
    (match) => match.length === 3 ? match : `%${match.charCodeAt(0).toString(16).toUpperCase()}`
  )

const FILE_NAME = /^(?:[a-z0-9_-]|%[0-9A-F]{2})+$/

/** The key stored under a file name, or none for files that are not objects. */
const keyOf = (fileName: string): Option.Option<ObjectKey> => {
  if (!FILE_NAME.test(fileName)) return Option.none()
  try {
    const key = decodeURIComponent(fileName)
    return fileNameOf(key) === fileName ? Option.some(ObjectKey.make(key)) : Option.none()
  } catch {
    return Option.none()
  }
}

const byUtf8 = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))

const isMissing = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "code" in error && error.code === "ENOENT"

const unavailable = (operation: string, key: string | undefined, cause: unknown) =>
  key === undefined
    ? new ObjectStoreUnavailable({ operation, cause })
    : new ObjectStoreUnavailable({ operation, key, cause })

const attempt = <A>(operation: string, key: string | undefined, run: () => Promise<A>) =>
  Effect.tryPromise({ try: run, catch: (cause) => unavailable(operation, key, cause) })

/** The 4-byte length and the JSON header that start every object file. */
/**
 * A multipart upload's header is padded to this size when it is created, so the
 * object's final metadata (known only at the end) is written over it in place as the
 * upload completes, without moving its bytes.
 */
const RESERVED_HEADER_BYTES = 4096

/** The header; with `size`, its JSON padded with spaces to exactly that length (JSON allows them). */
const headerOf = (options: PutOptions, size?: number): Buffer => {
  const json = encodeHeader({ contentType: options.contentType, metadata: { ...options.metadata } })
  const header = Buffer.from(size === undefined ? json : json.padEnd(size - 4, " "), "utf8")
  if (size !== undefined && header.byteLength !== size - 4) throw new Error("The object's metadata outgrew its header.")
  const prefix = Buffer.alloc(4)
  prefix.writeUInt32BE(header.byteLength, 0)
  return Buffer.concat([prefix, header])
}

/** Writes all of `bytes` at `position` (a single write may be partial). */
const writeAt = async (handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> => {
  let written = 0
  while (written < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.byteLength - written, position + written)
    written += bytesWritten
  }
}

/** A resumable upload's part, as its receipt records it: the body's bytes [offset, offset + length). */
const Receipt = Schema.parseJson(Schema.Struct({
  number: Schema.Int.pipe(Schema.positive()),
  offset: Schema.Int.pipe(Schema.nonNegative()),
  length: Schema.Int.pipe(Schema.nonNegative())
}))
const encodeReceipt = Schema.encodeSync(Receipt)
const decodeReceipt = Schema.decodeUnknownEither(Receipt)

/** Opens an upload's temp file for writing; a missing one is an upload that is gone (or never was). */
const openUpload = (tempPath: string, uploadId: string): Promise<FileHandle> =>
  Fs.open(tempPath, "r+").catch((error: unknown) =>
    Promise.reject(isMissing(error) ? new Error(`No multipart upload ${uploadId}.`, { cause: error }) : error)
  )

/** A multipart upload this process is writing: the part it expects next and the file length so far. */
interface Pending {
  readonly key: ObjectKey
  readonly nextPart: number
  readonly length: number
}

interface Opened {
  readonly info: ObjectInfo
  readonly bodyOffset: number
}

const readExactly = async (handle: FileHandle, length: number, position: number): Promise<Buffer> => {
  const buffer = Buffer.alloc(length)
  const { bytesRead } = await handle.read(buffer, 0, length, position)
  if (bytesRead !== length) throw new Error("Object file is truncated.")
  return buffer
}

const readOpened = async (handle: FileHandle, key: ObjectKey): Promise<Opened> => {
  const stat = await handle.stat()
  const headerLength = (await readExactly(handle, 4, 0)).readUInt32BE(0)
  if (headerLength > MAX_HEADER_BYTES) throw new Error("Object file header is too long.")
  const header = decodeHeader((await readExactly(handle, headerLength, 4)).toString("utf8"))
  const bodyOffset = 4 + headerLength
  if (stat.size < bodyOffset) throw new Error("Object file is truncated.")
  return {
    info: { key, size: stat.size - bodyOffset, contentType: header.contentType, metadata: header.metadata },
    bodyOffset
  }
}

/** Opens an object file for reading; undefined when there is no such file. */
const openFile = async (path: string): Promise<FileHandle | undefined> => {
  try {
    return await Fs.open(path, "r")
  } catch (error) {
    if (isMissing(error)) return undefined
    throw error
  }
}

/** Opens and reads an object file's header, then closes it; undefined when there is no such file. */
const openObject = async (path: string, key: ObjectKey): Promise<Opened | undefined> => {
  const handle = await openFile(path)
  if (handle === undefined) return undefined
  try {
    return await readOpened(handle, key)
  } finally {
    await handle.close()
  }
}

/** How much of a body one read asks for, as fs.ReadStream does. */
const READ_BYTES = 64 * 1024

/**
 * Up to `length` bytes at `position`. Read with handle.read rather than through a
 * ReadStream: destroying one closes the handle as well (autoClose: false only spares
 * it at the stream's end), and a second close then resolves at once, before the file
 * is actually shut. This way the body's scope alone closes it, and waits for that.
 */
const readChunk = async (handle: FileHandle, position: number, length: number): Promise<Uint8Array> => {
  const buffer = Buffer.alloc(length)
  const { bytesRead } = await handle.read(buffer, 0, length, position)
  if (bytesRead === 0) throw new Error("Object file is truncated.")
  return buffer.subarray(0, bytesRead)
}

const closeQuietly = (handle: FileHandle) => Effect.promise(() => handle.close().catch(() => undefined))

/**
 * Closes the handle of a body that was never run, once nothing can run it any more:
 * a HEAD request is answered by the GET handler, and the server never reads the body
 * of its response. Keyed by an object only the body stream's own effect refers to,
 * so a body that may still be run (however it is wrapped) keeps its handle, and
 * unregistered as soon as the body runs, from when its scope owns the handle. The
 * handle is the held value, so Node's own close on collection (deprecated, and
 * warned about) never sees it. Collections come when they come: until one does, an
 * unread body keeps its file open (and an unlinked file's disk space in use).
 */
const unreadBodies = new FinalizationRegistry<FileHandle>((handle) => {
  handle.close().catch(() => undefined)
})

/** Makes a rename durable; some file systems cannot fsync a directory, which is no reason to fail. */
const syncDirectory = async (directory: string): Promise<void> => {
  try {
    const handle = await Fs.open(directory, "r")
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  } catch {
    // best effort
  }
}

export const makeBackend = Effect.fn("LocalDiskObjectStore.makeBackend")(function*(rootDirectory: string) {
  const root = Path.resolve(rootDirectory)
  const tempDirectory = Path.join(root, TEMP_DIRECTORY)
  yield* attempt("open", undefined, () => Fs.mkdir(tempDirectory, { recursive: true }))

  const pathOf = (operation: string, key: ObjectKey) =>
    Effect.try({
      try: () => {
        const path = Path.join(root, fileNameOf(key))
        if (Path.dirname(path) !== root) throw new Error("Key maps outside the root directory.")
        return path
      },
      catch: (cause) => unavailable(operation, key, cause)
    })

  const writeAtomically = async (path: string, bytes: Uint8Array, options: PutOptions): Promise<void> => {
    const tempPath = Path.join(tempDirectory, randomUUID())
    try {
      const handle = await Fs.open(tempPath, "wx")
      try {
        // Consecutive writeFile calls on one handle append from the current position.
        await handle.writeFile(headerOf(options))
        await handle.writeFile(bytes)
        await handle.sync()
      } finally {
        await handle.close()
      }
      await Fs.rename(tempPath, path)
    } catch (error) {
      await Fs.rm(tempPath, { force: true }).catch(() => undefined)
      throw error
    }
    await syncDirectory(root)
  }

  /**
   * Streams the body's bytes [start, end) (all of them by default) from the handle `get`
   * opened, and owns it: the handle is closed when the stream ends, fails or is
   * interrupted, and a second run fails (the port's body is run once). If the body is
   * never run, `unreadBodies` closes the handle once the stream is garbage.
   */
  const bodyOf = (
    key: ObjectKey,
    handle: FileHandle,
    bodyOffset: number,
    [start, end]: readonly [number, number]
  ): Stream.Stream<Uint8Array, ObjectStoreUnavailable> => {
    // Reachable from the stream for as long as the stream is: the effect below refers to it.
    const unread: { handle: Option.Option<FileHandle> } = { handle: Option.some(handle) }
    unreadBodies.register(unread, handle, unread)
    const take = Effect.suspend(() => {
      const taken = unread.handle
      unread.handle = Option.none()
      unreadBodies.unregister(unread)
      return Option.match(taken, {
        onNone: () => Effect.fail(unavailable("get", key, new Error("The body was already read: a body is run once."))),
        onSome: Effect.succeed
      })
    })
    return Stream.unwrapScoped(Effect.map(
      Effect.acquireRelease(take, closeQuietly),
      (owned) =>
        Stream.unfoldEffect(start, (position) =>
          position >= end
            ? Effect.succeedNone
            : Effect.map(
              attempt("get", key, () => readChunk(owned, bodyOffset + position, Math.min(READ_BYTES, end - position))),
              (bytes) => Option.some([bytes, position + bytes.byteLength] as const)
            ))
    ))
  }

  const put = Effect.fn("LocalDiskObjectStore.put")(function*(key: ObjectKey, bytes: Uint8Array, options: PutOptions) {
    const path = yield* pathOf("put", key)
    yield* attempt("put", key, () => writeAtomically(path, bytes, options))
  })

  const uploads = yield* Ref.make(HashMap.empty<string, Pending>())

  const refused = (operation: string, key: ObjectKey, reason: string) => unavailable(operation, key, new Error(reason))

  /** The temp file an upload id names; only an id as createMultipart makes them names one. */
  const tempPathOf = (operation: string, upload: MultipartUpload) =>
    UPLOAD_ID.test(upload.uploadId)
      ? Effect.succeed(Path.join(tempDirectory, upload.uploadId))
      : Effect.fail(refused(operation, upload.key, "Malformed upload id."))

  /** The temp file of an upload this process created for `upload.key`, and what it holds so far. */
  const pendingOf = (operation: string, upload: MultipartUpload) =>
    Effect.flatMap(
      Ref.get(uploads),
      (map) =>
        Option.match(Option.filter(HashMap.get(map, upload.uploadId), (pending) => pending.key === upload.key), {
          onNone: () =>
            Effect.fail(refused(operation, upload.key, `No multipart upload ${upload.uploadId} in this process.`)),
          onSome: (pending) => Effect.map(tempPathOf(operation, upload), (tempPath) => ({ pending, tempPath }))
        })
    )

  /**
   * Publishes an upload's temp file at `path`: `settle` makes its body final, the
   * object's metadata is written over the header reserved for it (the file is not
   * visible yet), then it is fsynced and renamed into place.
   */
  const publishUpload = async (
    upload: MultipartUpload,
    tempPath: string,
    path: string,
    options: PutOptions,
    settle: (handle: FileHandle) => Promise<void>
  ): Promise<void> => {
    const handle = await openUpload(tempPath, upload.uploadId)
    try {
      await settle(handle)
      await writeAt(handle, headerOf(options, RESERVED_HEADER_BYTES), 0)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await Fs.rename(tempPath, path)
    await syncDirectory(root)
  }

  const createMultipart = Effect.fn("LocalDiskObjectStore.createMultipart")(
    function*(key: ObjectKey, options: PutOptions) {
      yield* pathOf("createMultipart", key)
      const uploadId = newUploadId()
      yield* attempt(
        "createMultipart",
        key,
        () => Fs.writeFile(Path.join(tempDirectory, uploadId), headerOf(options, RESERVED_HEADER_BYTES), { flag: "wx" })
      )
      yield* Ref.update(uploads, HashMap.set(uploadId, { key, nextPart: 1, length: RESERVED_HEADER_BYTES }))
      const upload: MultipartUpload = { key, uploadId }
      return upload
    }
  )

  const uploadPart = Effect.fn("LocalDiskObjectStore.uploadPart")(
    function*(upload: MultipartUpload, partNumber: number, bytes: Uint8Array) {
      const { pending, tempPath } = yield* pendingOf("uploadPart", upload)
      if (partNumber !== pending.nextPart) {
        return yield* Effect.fail(
          refused("uploadPart", upload.key, `Part ${partNumber} out of order: expected ${pending.nextPart}.`)
        )
      }
      // Written at the part's own offset, so a failed part can be sent again; completion
      // truncates whatever a failed attempt left past the last good part.
      yield* attempt("uploadPart", upload.key, async () => {
        const handle = await Fs.open(tempPath, "r+")
        try {
          await writeAt(handle, bytes, pending.length)
        } finally {
          await handle.close()
        }
      })
      yield* Ref.update(
        uploads,
        (map) =>
          HashMap.modify(map, upload.uploadId, (current) =>
            current.nextPart === partNumber
              ? { ...current, nextPart: partNumber + 1, length: current.length + bytes.byteLength }
              : current)
      )
    }
  )

  const completeMultipart = Effect.fn("LocalDiskObjectStore.completeMultipart")(
    function*(upload: MultipartUpload, parts: number, options: PutOptions) {
      const path = yield* pathOf("completeMultipart", upload.key)
      const { pending, tempPath } = yield* pendingOf("completeMultipart", upload)
      if (parts < 1 || parts !== pending.nextPart - 1) {
        return yield* Effect.fail(
          refused(
            "completeMultipart",
            upload.key,
            `Asked to complete ${parts} parts, ${pending.nextPart - 1} uploaded.`
          )
        )
      }
      yield* attempt(
        "completeMultipart",
        upload.key,
        () => publishUpload(upload, tempPath, path, options, (handle) => handle.truncate(pending.length))
      )
      yield* Ref.update(uploads, HashMap.remove(upload.uploadId))
    }
  )

  /**
   * Writes the part at its offset in the upload's file, which then ends with it (a
   * part sent again replaces what followed it), and fsyncs: acknowledged, the part is
   * durable. A part may not start past the bytes already there.
   */
  const uploadPartAt = Effect.fn("LocalDiskObjectStore.uploadPartAt")(
    function*(upload: MultipartUpload, part: ResumablePart) {
      yield* pathOf("uploadPartAt", upload.key)
      const tempPath = yield* tempPathOf("uploadPartAt", upload)
      if (
        !Number.isSafeInteger(part.number) || part.number < 1 || !Number.isSafeInteger(part.offset) || part.offset < 0
      ) {
        return yield* Effect.fail(
          refused("uploadPartAt", upload.key, `No part ${part.number} at offset ${part.offset}.`)
        )
      }
      const start = RESERVED_HEADER_BYTES + part.offset
      yield* attempt("uploadPartAt", upload.key, async () => {
        const handle = await openUpload(tempPath, upload.uploadId)
        try {
          const { size } = await handle.stat()
          if (size < start) {
            throw new Error(
              `Part ${part.number} starts at ${part.offset}, past the ${size - RESERVED_HEADER_BYTES} bytes uploaded.`
            )
          }
          await writeAt(handle, part.bytes, start)
          await handle.truncate(start + part.bytes.byteLength)
          await handle.sync()
        } finally {
          await handle.close()
        }
      })
      const receipt: PartReceipt = encodeReceipt({
        number: part.number,
        offset: part.offset,
        length: part.bytes.byteLength
      })
      return receipt
    }
  )

  /**
   * Checks that the receipts are parts 1..n, each starting where the one before ended,
   * and that the file's body ends where the last does; then publishes it as
   * completeMultipart does. The file alone is the upload's state: any process can.
   */
  const completeWith = Effect.fn("LocalDiskObjectStore.completeWith")(
    function*(upload: MultipartUpload, receipts: ReadonlyArray<PartReceipt>, options: PutOptions) {
      const path = yield* pathOf("completeWith", upload.key)
      const tempPath = yield* tempPathOf("completeWith", upload)
      if (receipts.length === 0) {
        return yield* Effect.fail(refused("completeWith", upload.key, "No parts to complete."))
      }
      let end = 0
      for (const [index, receipt] of receipts.entries()) {
        const decoded = decodeReceipt(receipt)
        if (Either.isLeft(decoded)) return yield* Effect.fail(unavailable("completeWith", upload.key, decoded.left))
        const part = decoded.right
        if (part.number !== index + 1 || part.offset !== end) {
          return yield* Effect.fail(
            refused(
              "completeWith",
              upload.key,
              `Receipt ${index + 1} is part ${part.number} at ${part.offset}: expected part ${index + 1} at ${end}.`
            )
          )
        }
        end = part.offset + part.length
      }
      yield* attempt(
        "completeWith",
        upload.key,
        () =>
          publishUpload(upload, tempPath, path, options, async (handle) => {
            const body = (await handle.stat()).size - RESERVED_HEADER_BYTES
            if (body !== end) throw new Error(`The upload holds ${body} bytes; its parts end at ${end}.`)
          })
      )
      // Started in this process, the upload is remembered: it is finished now.
      yield* Ref.update(uploads, HashMap.remove(upload.uploadId))
    }
  )

  /** Works from any process: the id names the temp file. An id that names none is already gone. */
  const abortMultipart = Effect.fn("LocalDiskObjectStore.abortMultipart")(function*(upload: MultipartUpload) {
    yield* Ref.update(uploads, HashMap.remove(upload.uploadId))
    if (!UPLOAD_ID.test(upload.uploadId)) return
    const tempPath = Path.join(tempDirectory, upload.uploadId)
    yield* attempt(
      "abortMultipart",
      upload.key,
      () => Fs.unlink(tempPath).catch((error) => isMissing(error) ? undefined : Promise.reject(error))
    )
  })

  /** The header, and the body's bounds, of an object file open on `handle`. */
  const headerOn = Effect.fn(function*(key: ObjectKey, handle: FileHandle, range: ByteRange | undefined) {
    const opened = yield* attempt("get", key, () => readOpened(handle, key))
    const size = opened.info.size
    const bounds = range === undefined ? Option.some([0, size] as const) : boundsOf(range, size)
    if (Option.isNone(bounds)) {
      return yield* Effect.fail(refused("get", key, `Range ${range?.start}-${range?.end} is outside ${size} bytes.`))
    }
    return { opened, bounds: bounds.value }
  })

  /**
   * Opens the file once: the header is read through the handle, and the body streams
   * from it (see bodyOf). Until the body has it, the handle is closed on any failure
   * or interruption; the open itself is not interrupted, so no handle is left unowned.
   */
  const get = Effect.fn("LocalDiskObjectStore.get")(function*(key: ObjectKey, range?: ByteRange) {
    const path = yield* pathOf("get", key)
    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const handle = yield* attempt("get", key, () => openFile(path))
        if (handle === undefined) return yield* Effect.fail(new ObjectNotFound({ key }))
        const { bounds, opened } = yield* restore(headerOn(key, handle, range)).pipe(
          Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : closeQuietly(handle))
        )
        const object: StoredObject = { ...opened.info, body: bodyOf(key, handle, opened.bodyOffset, bounds) }
        return object
      })
    )
  })

  const head = Effect.fn("LocalDiskObjectStore.head")(function*(key: ObjectKey) {
    const path = yield* pathOf("head", key)
    const opened = yield* attempt("head", key, () => openObject(path, key))
    return Option.map(Option.fromNullable(opened), (found) => found.info)
  })

  const remove = Effect.fn("LocalDiskObjectStore.delete")(function*(key: ObjectKey) {
    const path = yield* pathOf("delete", key)
    yield* attempt(
      "delete",
      key,
      () => Fs.unlink(path).catch((error) => isMissing(error) ? undefined : Promise.reject(error))
    )
  })

  const list = (prefix: string): Stream.Stream<ObjectKey, ObjectStoreUnavailable> =>
    Stream.unwrap(Effect.map(
      attempt("list", prefix, () => Fs.readdir(root)),
      (names) =>
        Stream.fromIterable(
          names
            .flatMap((name) => Option.toArray(keyOf(name)))
            .filter((key) => key.startsWith(prefix))
            .sort(byUtf8)
        )
    )).pipe(Stream.withSpan("LocalDiskObjectStore.list"))

  const ping = attempt("ping", undefined, async () => {
    await Fs.access(root, Fs.constants.W_OK)
    await Fs.access(tempDirectory, Fs.constants.W_OK)
  }).pipe(Effect.withSpan("LocalDiskObjectStore.ping"))

  const backend: ObjectBackend = {
    put,
    createMultipart,
    uploadPart,
    completeMultipart,
    abortMultipart,
    uploadPartAt,
    completeWith,
    get,
    head,
    delete: remove,
    list,
    ping
  }
  return backend
})

/** A store in `rootDirectory` (created if missing). */
export const layer = (
  rootDirectory: string,
  settings: WriteSettings = { partSize: DEFAULT_PART_SIZE }
): Layer.Layer<ObjectStore, ObjectStoreUnavailable> =>
  Layer.effect(ObjectStore, Effect.map(makeBackend(rootDirectory), (backend) => toObjectStore(backend, settings)))
