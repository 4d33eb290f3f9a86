import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NoSuchUpload,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand
} from "@aws-sdk/client-s3"
import type { CompletedPart, GetObjectCommandOutput } from "@aws-sdk/client-s3"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Chunk, Effect, Either, HashMap, Layer, Option, Redacted, Ref, Schema, Stream } from "effect"
import { createHash } from "node:crypto"
import { Readable } from "node:stream"
import { ObjectKey } from "../../domain/FileRecord.js"
import { ObjectStoreUnavailable } from "../../domain/StorageErrors.js"
import { spanWhenTracing } from "../../domain/Tracing.js"
import type {
  ByteRange,
  ObjectInfo,
  PartReceipt,
  PutOptions,
  ResumablePart,
  StoredObject
} from "../../ports/ObjectStore.js"
import { ObjectNotFound, ObjectStore } from "../../ports/ObjectStore.js"
import { isWellFormed } from "./ByteRangeBounds.js"
import type { MultipartUpload, ObjectBackend } from "./ObjectBackend.js"
import { DEFAULT_PART_SIZE, toObjectStore } from "./ObjectBackend.js"

export interface S3Credentials {
  readonly accessKeyId: string
  readonly secretAccessKey: Redacted.Redacted<string>
}

export interface S3Settings {
  readonly bucket: string
  readonly region: string
  /** An S3-compatible server (MinIO, s3rver, R2); AWS when absent. */
  readonly endpoint?: string | undefined
  readonly forcePathStyle: boolean
  /** The SDK's default credential chain when absent. */
  readonly credentials?: S3Credentials | undefined
  /** Keep-alive sockets per client; default 64. */
  readonly maxSockets?: number | undefined
  /** Default 5 000. */
  readonly connectionTimeoutMillis?: number | undefined
  /**
   * Longest wait for a response, and longest silence on a socket while a body moves;
   * default 30 000. A put has no total limit (its body may be large), only the silence one.
   */
  readonly requestTimeoutMillis?: number | undefined
  /** Attempts per request, retries included; default 3. */
  readonly maxAttempts?: number | undefined
  /** Keys per ListObjectsV2 page; default 1000 (S3's maximum). */
  readonly listPageSize?: number | undefined
  /** See ObjectBackend's WriteSettings; default 8 MiB. */
  readonly partSize?: number | undefined
}

const unavailable = (operation: string, key: string | undefined, cause: unknown) =>
  key === undefined
    ? new ObjectStoreUnavailable({ operation, cause })
    : new ObjectStoreUnavailable({ operation, key, cause })

const isNoSuchKey = (error: unknown): boolean =>
  error instanceof NoSuchKey || (error instanceof S3ServiceException && error.name === "NoSuchKey")

/** An upload that no longer exists (aborted, completed, expired) or never did; a missing bucket is not that. */
const isNoSuchUpload = (error: unknown): boolean =>
  error instanceof NoSuchUpload ||
  (error instanceof S3ServiceException && error.name !== "NoSuchBucket" &&
    (error.name === "NoSuchUpload" || error.$metadata.httpStatusCode === 404))

/** "bytes 0-9/100": the range served and the whole object's size. */
const parseContentRange = (header: string | undefined) => {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header ?? "")
  return match === null ? undefined : { start: Number(match[1]), end: Number(match[2]), size: Number(match[3]) }
}

/** HEAD responses have no body, so a missing key is only a bare 404. */
const isNotFound = (error: unknown): boolean =>
  error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404 && error.name !== "NoSuchBucket"

const bodyStream = (
  key: ObjectKey,
  body: GetObjectCommandOutput["Body"]
): Stream.Stream<Uint8Array, ObjectStoreUnavailable> => {
  if (body === undefined) return Stream.empty
  const onError = (cause: unknown) => unavailable("get", key, cause)
  return body instanceof Readable
    ? NodeStream.fromReadable<ObjectStoreUnavailable, Uint8Array>(() => body, onError)
    : Stream.fromReadableStream(() => body.transformToWebStream(), onError)
}

interface PendingUpload {
  readonly key: ObjectKey
  readonly parts: ReadonlyArray<CompletedPart>
}

/** S3's part numbers. */
const MAX_PARTS = 10_000

/**
 * A resumable upload's part receipt: the CompletedPart that CompleteMultipartUpload
 * must list (its ETag, and the checksums S3 returned, which it wants back), as JSON.
 */
const Receipt = Schema.parseJson(Schema.Struct({
  PartNumber: Schema.Int.pipe(Schema.between(1, MAX_PARTS)),
  ETag: Schema.NonEmptyString,
  ChecksumCRC32: Schema.optional(Schema.String),
  ChecksumCRC32C: Schema.optional(Schema.String),
  ChecksumCRC64NVME: Schema.optional(Schema.String),
  ChecksumSHA1: Schema.optional(Schema.String),
  ChecksumSHA256: Schema.optional(Schema.String)
}))
type SentPart = typeof Receipt.Type
const encodeReceipt = Schema.encodeSync(Receipt)
const decodeReceipt = Schema.decodeUnknownEither(Receipt)

/** Releases the socket of a response whose body will not be read. */
const destroyBody = (body: GetObjectCommandOutput["Body"]): void => {
  if (body instanceof Readable) body.destroy()
}

const makeClient = (settings: S3Settings): S3Client => {
  const maxSockets = settings.maxSockets ?? 64
  const requestTimeout = settings.requestTimeoutMillis ?? 30_000
  return new S3Client({
    region: settings.region,
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
    forcePathStyle: settings.forcePathStyle,
    ...(settings.credentials === undefined ? {} : {
      credentials: {
        accessKeyId: settings.credentials.accessKeyId,
        secretAccessKey: Redacted.value(settings.credentials.secretAccessKey)
      }
    }),
    maxAttempts: settings.maxAttempts ?? 3,
    requestHandler: {
      httpAgent: { keepAlive: true, maxSockets },
      httpsAgent: { keepAlive: true, maxSockets },
      connectionTimeout: settings.connectionTimeoutMillis ?? 5_000,
      requestTimeout,
      throwOnRequestTimeout: true,
      socketTimeout: requestTimeout
    }
  })
}

/** S3's object operations on one bucket; the client lives as long as the scope. */
export const makeBackend = (settings: S3Settings) =>
  Effect.gen(function*() {
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => makeClient(settings)),
      (client) => Effect.sync(() => client.destroy())
    )
    const Bucket = settings.bucket
    const pageSize = settings.listPageSize ?? 1000

    /** Runs one SDK call; interruption aborts the HTTP request. */
    const call = <A>(run: (abortSignal: AbortSignal) => Promise<A>) =>
      Effect.tryPromise({ try: run, catch: (cause): unknown => cause })

    // Every small upload's one call: its span is made only when recorded (spanWhenTracing).
    const put = (
      key: ObjectKey,
      bytes: Uint8Array,
      options: PutOptions & { readonly sha256?: string }
    ) =>
      call((abortSignal) =>
        client.send(
          new PutObjectCommand({
            Bucket,
            Key: key,
            Body: bytes,
            ContentLength: bytes.byteLength,
            ContentType: options.contentType,
            Metadata: { ...options.metadata },
            // S3 refuses bytes that do not match it.
            ...(options.sha256 === undefined
              ? {}
              : { ChecksumSHA256: Buffer.from(options.sha256, "hex").toString("base64") })
          }),
          { abortSignal, requestTimeout: 0 }
        )
      ).pipe(
        Effect.mapError((cause) => unavailable("put", key, cause)),
        Effect.asVoid,
        spanWhenTracing("S3ObjectStore.put")
      )

    /**
     * The parts uploaded so far (ETag, and checksum when S3 returns one) of each upload
     * this client created, by upload id: CompleteMultipartUpload must list them. They
     * are remembered rather than read back with ListParts, which S3-compatible servers
     * implement unevenly; so only this process can complete its uploads, while any
     * process can abort one (the reconciler does, after a crash). Resumable uploads
     * (uploadPartAt, completeWith) keep nothing here: their receipts carry the parts.
     */
    const uploads = yield* Ref.make(HashMap.empty<string, PendingUpload>())

    const refused = (operation: string, key: ObjectKey, reason: string) =>
      unavailable(operation, key, new Error(reason))

    const partsOf = (operation: string, upload: MultipartUpload) =>
      Effect.flatMap(Ref.get(uploads), (map) =>
        Option.match(Option.filter(HashMap.get(map, upload.uploadId), (pending) => pending.key === upload.key), {
          onNone: () =>
            Effect.fail(refused(operation, upload.key, `No multipart upload ${upload.uploadId} in this process.`)),
          onSome: (pending) => Effect.succeed(pending.parts)
        }))

    const createMultipart = Effect.fn("S3ObjectStore.createMultipart")(function*(key: ObjectKey, options: PutOptions) {
      const response = yield* call((abortSignal) =>
        client.send(
          new CreateMultipartUploadCommand({
            Bucket,
            Key: key,
            ContentType: options.contentType,
            Metadata: { ...options.metadata },
            // Every part then carries its SHA-256, which S3 checks.
            ChecksumAlgorithm: "SHA256"
          }),
          { abortSignal }
        )
      ).pipe(Effect.mapError((cause) =>
        unavailable("createMultipart", key, cause)
      ))
      const uploadId = response.UploadId
      if (uploadId === undefined || uploadId.length === 0) {
        return yield* Effect.fail(refused("createMultipart", key, "CreateMultipartUpload returned no UploadId."))
      }
      const pending: PendingUpload = { key, parts: [] }
      yield* Ref.update(uploads, HashMap.set(uploadId, pending))
      const upload: MultipartUpload = { key, uploadId }
      return upload
    })

    /** UploadPart with the bytes' SHA-256 (which S3 checks); what completing must name of the part. */
    const sendPart = (operation: string, upload: MultipartUpload, partNumber: number, bytes: Uint8Array) =>
      Effect.gen(function*() {
        const { key, uploadId } = upload
        // Computed here, so the part's checksum is the bytes' own whatever the SDK's defaults.
        const checksum = createHash("sha256").update(bytes).digest("base64")
        const response = yield* call((abortSignal) =>
          client.send(
            new UploadPartCommand({
              Bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: partNumber,
              Body: bytes,
              ContentLength: bytes.byteLength,
              ChecksumAlgorithm: "SHA256",
              ChecksumSHA256: checksum
            }),
            { abortSignal, requestTimeout: 0 }
          )
        ).pipe(Effect.mapError((cause) => unavailable(operation, key, cause)))
        if (response.ETag === undefined) {
          return yield* Effect.fail(refused(operation, key, `UploadPart ${partNumber} returned no ETag.`))
        }
        // What lib-storage keeps: S3 wants a part's checksum back when it returned one.
        const part: SentPart = {
          PartNumber: partNumber,
          ETag: response.ETag,
          ...(response.ChecksumCRC32 === undefined ? {} : { ChecksumCRC32: response.ChecksumCRC32 }),
          ...(response.ChecksumCRC32C === undefined ? {} : { ChecksumCRC32C: response.ChecksumCRC32C }),
          ...(response.ChecksumCRC64NVME === undefined ? {} : { ChecksumCRC64NVME: response.ChecksumCRC64NVME }),
          ...(response.ChecksumSHA1 === undefined ? {} : { ChecksumSHA1: response.ChecksumSHA1 }),
          // S3 echoes the part's SHA-256 and wants it back at completion.
          ...(response.ChecksumSHA256 === undefined ? {} : { ChecksumSHA256: response.ChecksumSHA256 })
        }
        return part
      })

    const uploadPart = Effect.fn("S3ObjectStore.uploadPart")(
      function*(upload: MultipartUpload, partNumber: number, bytes: Uint8Array) {
        const { key, uploadId } = upload
        const parts = yield* partsOf("uploadPart", upload)
        if (partNumber !== parts.length + 1) {
          return yield* Effect.fail(
            refused("uploadPart", key, `Part ${partNumber} out of order: expected ${parts.length + 1}.`)
          )
        }
        const part: CompletedPart = yield* sendPart("uploadPart", upload, partNumber, bytes)
        yield* Ref.update(uploads, (map) =>
          HashMap.modify(map, uploadId, (pending) =>
            pending.parts.length === partNumber - 1 ? { ...pending, parts: [...pending.parts, part] } : pending))
      }
    )

    /** CompleteMultipartUpload of `parts`, in order. */
    const completeParts = (operation: string, upload: MultipartUpload, parts: ReadonlyArray<CompletedPart>) =>
      // S3 may take a while to assemble a large object (it keeps the connection alive
      // meanwhile), so only the silence limit applies.
      call((abortSignal) =>
        client.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key: upload.key,
            UploadId: upload.uploadId,
            MultipartUpload: { Parts: [...parts] }
          }),
          { abortSignal, requestTimeout: 0 }
        )
      ).pipe(Effect.mapError((cause) =>
        unavailable(operation, upload.key, cause)
      ))

    /**
     * A multipart upload's metadata is fixed when it starts; what is known only at
     * its end (size, sha256) is set by copying the object onto itself, server-side
     * (one request up to 5 GiB, the largest object tandem writes).
     */
    const replaceMetadata = (operation: string, key: ObjectKey, options: PutOptions) =>
      call((abortSignal) =>
        client.send(
          new CopyObjectCommand({
            Bucket,
            Key: key,
            CopySource: encodeURI(`${Bucket}/${key}`),
            MetadataDirective: "REPLACE",
            ContentType: options.contentType,
            Metadata: { ...options.metadata }
          }),
          { abortSignal, requestTimeout: 0 }
        )
      ).pipe(Effect.mapError((cause) => unavailable(operation, key, cause)))

    const completeMultipart = Effect.fn("S3ObjectStore.completeMultipart")(
      function*(upload: MultipartUpload, count: number, options: PutOptions) {
        const parts = yield* partsOf("completeMultipart", upload)
        if (count < 1 || count !== parts.length) {
          return yield* Effect.fail(
            refused("completeMultipart", upload.key, `Asked to complete ${count} parts, ${parts.length} uploaded.`)
          )
        }
        yield* completeParts("completeMultipart", upload, parts)
        yield* Ref.update(uploads, HashMap.remove(upload.uploadId))
        yield* replaceMetadata("completeMultipart", upload.key, options)
      }
    )

    /**
     * Any process may send a resumable upload's parts: nothing of it is kept here, the
     * receipt (the CompletedPart, as JSON) is all that completing it needs. A part sent
     * again replaces the earlier one at S3, and only the parts completion lists count.
     */
    const uploadPartAt = Effect.fn("S3ObjectStore.uploadPartAt")(
      function*(upload: MultipartUpload, part: ResumablePart) {
        if (!Number.isInteger(part.number) || part.number < 1 || part.number > MAX_PARTS) {
          return yield* Effect.fail(refused("uploadPartAt", upload.key, `No part number ${part.number}.`))
        }
        const sent = yield* sendPart("uploadPartAt", upload, part.number, part.bytes)
        const receipt: PartReceipt = encodeReceipt(sent)
        return receipt
      }
    )

    /** Completes from the receipts alone, so in any process, then sets the final metadata as completeMultipart does. */
    const completeWith = Effect.fn("S3ObjectStore.completeWith")(
      function*(upload: MultipartUpload, receipts: ReadonlyArray<PartReceipt>, options: PutOptions) {
        const { key } = upload
        if (receipts.length === 0) return yield* Effect.fail(refused("completeWith", key, "No parts to complete."))
        const parts: Array<CompletedPart> = []
        for (const [index, receipt] of receipts.entries()) {
          const decoded = decodeReceipt(receipt)
          if (Either.isLeft(decoded)) return yield* Effect.fail(unavailable("completeWith", key, decoded.left))
          if (decoded.right.PartNumber !== index + 1) {
            return yield* Effect.fail(
              refused("completeWith", key, `Receipt ${index + 1} is part ${decoded.right.PartNumber}'s.`)
            )
          }
          parts.push(decoded.right)
        }
        yield* completeParts("completeWith", upload, parts)
        // Started in this process, the upload is remembered: it is finished now.
        yield* Ref.update(uploads, HashMap.remove(upload.uploadId))
        yield* replaceMetadata("completeWith", key, options)
      }
    )

    /** An upload S3 no longer knows (aborted, completed, never created) is as good as aborted. */
    const abortMultipart = Effect.fn("S3ObjectStore.abortMultipart")(function*(upload: MultipartUpload) {
      const { key, uploadId } = upload
      yield* Ref.update(uploads, HashMap.remove(uploadId))
      yield* call((abortSignal) =>
        client.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: uploadId }), { abortSignal })
      ).pipe(
        Effect.asVoid,
        Effect.catchAll((cause) =>
          isNoSuchUpload(cause) ? Effect.void : Effect.fail(unavailable("abortMultipart", key, cause))
        )
      )
    })

    /** With a range, `size` is still the whole object's (from Content-Range); the body is the range. */
    const get = Effect.fn("S3ObjectStore.get")(function*(key: ObjectKey, range?: ByteRange) {
      if (range !== undefined && !isWellFormed(range)) {
        // S3 ignores a malformed Range header and would send the whole object.
        return yield* Effect.fail(refused("get", key, `Malformed range ${range.start}-${range.end}.`))
      }
      const Range = range === undefined ? undefined : `bytes=${range.start}-${range.end}`
      const response = yield* call((abortSignal) =>
        client.send(new GetObjectCommand({ Bucket, Key: key, ...(Range === undefined ? {} : { Range }) }), {
          abortSignal
        })
      ).pipe(Effect.mapError((cause) =>
        isNoSuchKey(cause) ? new ObjectNotFound({ key }) : unavailable("get", key, cause)
      ))
      let size = response.ContentLength ?? 0
      if (range !== undefined) {
        const served = parseContentRange(response.ContentRange)
        if (
          served === undefined || served.start !== range.start || served.end !== Math.min(range.end, served.size - 1)
        ) {
          yield* Effect.sync(() => destroyBody(response.Body))
          return yield* Effect.fail(
            refused("get", key, `Asked for ${Range}, got ${response.ContentRange ?? "the whole object"}.`)
          )
        }
        size = served.size
      }
      const object: StoredObject = {
        key,
        size,
        contentType: response.ContentType ?? "application/octet-stream",
        metadata: response.Metadata ?? {},
        body: bodyStream(key, response.Body)
      }
      return object
    })

    const head = Effect.fn("S3ObjectStore.head")(function*(key: ObjectKey) {
      return yield* call((abortSignal) => client.send(new HeadObjectCommand({ Bucket, Key: key }), { abortSignal }))
        .pipe(
          Effect.map((response): Option.Option<ObjectInfo> =>
            Option.some({
              key,
              size: response.ContentLength ?? 0,
              contentType: response.ContentType ?? "application/octet-stream",
              metadata: response.Metadata ?? {}
            })
          ),
          Effect.catchAll((cause) =>
            isNotFound(cause) ? Effect.succeedNone : Effect.fail(unavailable("head", key, cause))
          )
        )
    })

    const remove = Effect.fn("S3ObjectStore.delete")(function*(key: ObjectKey) {
      yield* call((abortSignal) => client.send(new DeleteObjectCommand({ Bucket, Key: key }), { abortSignal }))
        .pipe(Effect.mapError((cause) => unavailable("delete", key, cause)))
    })

    /** One page at a time, fetched only when the consumer wants more keys. */
    const list = (prefix: string): Stream.Stream<ObjectKey, ObjectStoreUnavailable> =>
      Stream.paginateChunkEffect<string | undefined, ObjectKey, ObjectStoreUnavailable, never>(
        undefined,
        (ContinuationToken) =>
          call((abortSignal) =>
            client.send(
              new ListObjectsV2Command({ Bucket, Prefix: prefix, MaxKeys: pageSize, ContinuationToken }),
              { abortSignal }
            )
          ).pipe(
            Effect.mapError((cause) => unavailable("list", prefix, cause)),
            Effect.map((page) => {
              const keys = (page.Contents ?? []).flatMap(({ Key }) =>
                Key !== undefined && Key.length > 0 && Key.startsWith(prefix) ? [ObjectKey.make(Key)] : []
              )
              const next = page.IsTruncated === true && page.NextContinuationToken !== undefined
                ? Option.some(page.NextContinuationToken)
                : Option.none()
              return [Chunk.fromIterable(keys), next] as const
            }),
            Effect.withSpan("S3ObjectStore.list")
          )
      )

    const ping = call((abortSignal) => client.send(new HeadBucketCommand({ Bucket }), { abortSignal })).pipe(
      Effect.asVoid,
      Effect.mapError((cause) => unavailable("ping", undefined, cause)),
      Effect.withSpan("S3ObjectStore.ping")
    )

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

/** An object store in one S3 bucket. */
export const layer = (settings: S3Settings): Layer.Layer<ObjectStore> =>
  Layer.scoped(
    ObjectStore,
    Effect.map(makeBackend(settings), (backend) =>
      toObjectStore(backend, { partSize: settings.partSize ?? DEFAULT_PART_SIZE }))
  )
