/**
 * THE FLOOR's work: the least any upload service must do. Reads the multipart body
 * (busboy), writes the object with one PutObject and the record with one INSERT;
 * no validation, no compensation. FLOOR_STORE=memory keeps both in Maps instead.
 * Configured by the same variables as tandem. Served two ways: floor-server.ts
 * (node:http, no framework) and effect-floor-server.ts (@effect/platform).
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

export interface Store {
  readonly put: (key: string, bytes: Buffer, contentType: string) => Promise<void>
  readonly insert: (row: Row) => Promise<void>
  readonly close: () => Promise<void>
}

export const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`floor: ${name} is not set`)
  return value
}

const memoryStore = (): Store => {
  const objects = new Map<string, Buffer>()
  const rows = new Map<string, Row>()
  return {
    put: async (key, bytes) => void objects.set(key, bytes),
    insert: async (row) => void rows.set(row.id, row),
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
    object_key text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`)
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
    insert: async (row) => {
      await pool.query(
        "INSERT INTO floor_files (id, name, size, content_type, object_key) VALUES ($1, $2, $3, $4, $5)",
        [row.id, row.name, row.size, row.contentType, row.objectKey]
      )
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

/** Stores a received file: one put, one insert; the response body. */
export const store = async (target: Store, { bytes, contentType, name }: Received) => {
  const id = randomUUID()
  const row: Row = { id, name, size: bytes.byteLength, contentType, objectKey: `floor/${id}` }
  await target.put(row.objectKey, bytes, contentType)
  await target.insert(row)
  return { ...row, createdAt: new Date().toISOString() }
}

export const openStore = (): Promise<Store> =>
  env("FLOOR_STORE", "s3") === "memory" ? Promise.resolve(memoryStore()) : s3AndPgStore()
