/**
 * THE FLOOR's work: the least any upload service must do. Reads the multipart body
 * (busboy), writes the object with one PutObject and the record with one INSERT;
 * no validation, no compensation. FLOOR_STORE=memory keeps both in Maps instead.
 * Configured by the same variables as tandem. Served two ways: floor-server.ts
 * (node:http, no framework) and effect-floor-server.ts (@effect/platform).
 *
 * FLOOR_PROTOCOL=true makes it THE PROTOCOL FLOOR: the same code plus the least
 * tandem's guarantees cost, with nothing else of tandem's: a strict UTF-8 check of
 * the bytes (TextDecoder, fatal), the record INSERTed first as a pending intent,
 * then the PutObject, then BEGIN; UPDATE … SET status = 'committed' WHERE id = …
 * AND status = 'pending'; COMMIT. In memory: the same steps on the Maps.
 */
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import busboy from "busboy"
import { randomUUID } from "node:crypto"
import type { IncomingMessage } from "node:http"
import * as Pg from "./Pg.js"

export interface Row {
  readonly id: string
  readonly name: string
  readonly size: number
  readonly contentType: string
  readonly objectKey: string
}

export type Status = "pending" | "committed"

export interface Store {
  readonly put: (key: string, bytes: Buffer, contentType: string) => Promise<void>
  readonly insert: (row: Row, status: Status) => Promise<void>
  /** A pending record becomes committed, in a transaction; fails if it is not pending. */
  readonly commit: (id: string) => Promise<void>
  readonly close: () => Promise<void>
}

export const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`floor: ${name} is not set`)
  return value
}

/** Set: the protocol floor. */
export const protocol = env("FLOOR_PROTOCOL", "false") === "true"

/** Bytes that are not UTF-8 text: the protocol floor refuses them (422). */
export class NotUtf8 extends Error {
  readonly status = 422
}

const memoryStore = (): Store => {
  const objects = new Map<string, Buffer>()
  const rows = new Map<string, { readonly row: Row; readonly status: Status }>()
  return {
    put: async (key, bytes) => void objects.set(key, bytes),
    insert: async (row, status) => void rows.set(row.id, { row, status }),
    commit: async (id) => {
      const entry = rows.get(id)
      if (entry?.status !== "pending") throw new Error("IntentNotPending")
      rows.set(id, { ...entry, status: "committed" })
    },
    close: async () => {}
  }
}

const s3AndPgStore = async (): Promise<Store> => {
  // The same client settings as tandem's S3ObjectStore: a keep-alive pool of S3_MAX_SOCKETS.
  const maxSockets = Number(env("S3_MAX_SOCKETS", "64"))
  const endpoint = process.env["S3_ENDPOINT"]
  const client = new S3Client({
    region: env("S3_REGION", "us-east-1"),
    ...(endpoint === undefined ? {} : { endpoint }),
    forcePathStyle: env("S3_FORCE_PATH_STYLE", "false") === "true",
    requestHandler: { httpAgent: { keepAlive: true, maxSockets }, httpsAgent: { keepAlive: true, maxSockets } }
  })
  const bucket = env("S3_BUCKET")
  const pool = Pg.pool(env("DATABASE_URL"), Number(env("DATABASE_POOL_SIZE", "10")))
  await pool.query(`CREATE TABLE IF NOT EXISTS floor_files (
    id uuid PRIMARY KEY, name text NOT NULL, size bigint NOT NULL, content_type text NOT NULL,
    object_key text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`)
  return {
    put: async (key, bytes, contentType) => {
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: bytes,
          ContentLength: bytes.byteLength,
          ContentType: contentType
        })
      )
    },
    insert: async (row, status) => {
      await pool.query(
        "INSERT INTO floor_files (id, name, size, content_type, object_key, status) VALUES ($1, $2, $3, $4, $5, $6)",
        [row.id, row.name, row.size, row.contentType, row.objectKey, status]
      )
    },
    commit: async (id) => {
      const client = await pool.connect()
      try {
        await client.query("BEGIN")
        const updated = await client.query(
          "UPDATE floor_files SET status = 'committed' WHERE id = $1 AND status = 'pending'",
          [id]
        )
        if (updated.rowCount !== 1) throw new Error("IntentNotPending")
        await client.query("COMMIT")
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined)
        throw error
      } finally {
        client.release()
      }
    },
    close: async () => {
      client.destroy()
      await pool.end()
    }
  }
}

export interface Received {
  readonly name: string
  readonly contentType: string
  readonly bytes: Buffer
}

/** The first file part of a multipart body, whole; the error names what went wrong. */
export const receive = (req: IncomingMessage): Promise<Received> =>
  new Promise((resolve, reject) => {
    let parser: busboy.Busboy
    try {
      parser = busboy({ headers: req.headers })
    } catch {
      return reject(new Error("NotMultipart"))
    }
    let received: Promise<Received> | undefined
    parser.on("file", (_field, stream, info) => {
      const chunks: Array<Buffer> = []
      received ??= new Promise((done, fail) => {
        stream.on("data", (chunk: Buffer) => chunks.push(chunk))
        stream.on("end", () => done({ name: info.filename, contentType: info.mimeType, bytes: Buffer.concat(chunks) }))
        stream.on("error", fail)
      })
    })
    parser.on("error", () => reject(new Error("MalformedMultipart")))
    parser.on("close", () => received === undefined ? reject(new Error("MissingFilePart")) : resolve(received))
    req.pipe(parser)
  })

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/**
 * Stores a received file, the response body. The floor: one put, one insert. The
 * protocol floor: the UTF-8 check, the pending insert, the put, the commit.
 */
export const store = async (target: Store, { bytes, contentType, name }: Received) => {
  const id = randomUUID()
  const row: Row = { id, name, size: bytes.byteLength, contentType, objectKey: `floor/${id}` }
  if (protocol) {
    try {
      utf8.decode(bytes)
    } catch {
      throw new NotUtf8("the file is not UTF-8 text")
    }
    await target.insert(row, "pending")
    await target.put(row.objectKey, bytes, contentType)
    await target.commit(id)
  } else {
    await target.put(row.objectKey, bytes, contentType)
    await target.insert(row, "committed")
  }
  return { ...row, createdAt: new Date().toISOString() }
}

export const openStore = (): Promise<Store> =>
  env("FLOOR_STORE", "s3") === "memory" ? Promise.resolve(memoryStore()) : s3AndPgStore()
