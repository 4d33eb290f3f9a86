/**
 * THE FLOOR: the least any upload service must do, with no framework. Reads the
 * multipart body (busboy), writes the object with one PutObject and the record
 * with one INSERT; no validation, no compensation. FLOOR_STORE=memory keeps both
 * in Maps instead. Configured by the same variables as tandem.
 */
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import busboy from "busboy"
import { randomUUID } from "node:crypto"
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import * as Pg from "./Pg.js"

interface Row {
  readonly id: string
  readonly name: string
  readonly size: number
  readonly contentType: string
  readonly objectKey: string
}

interface Store {
  readonly put: (key: string, bytes: Buffer, contentType: string) => Promise<void>
  readonly insert: (row: Row) => Promise<void>
  readonly close: () => Promise<void>
}

const env = (name: string, fallback?: string): string => {
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
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, ContentLength: bytes.byteLength, ContentType: contentType })
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

const reply = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  if (res.headersSent) return
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(JSON.stringify(body))
}

interface Received {
  readonly name: string
  readonly contentType: string
  readonly bytes: Buffer
}

const upload = (store: Store, req: IncomingMessage, res: ServerResponse) => {
  let parser: busboy.Busboy
  try {
    parser = busboy({ headers: req.headers })
  } catch {
    return reply(res, 400, { error: "NotMultipart" })
  }
  let received: Promise<Received> | undefined
  parser.on("file", (_field, stream, info) => {
    const chunks: Array<Buffer> = []
    received = new Promise((resolve, reject) => {
      stream.on("data", (chunk: Buffer) => chunks.push(chunk))
      stream.on("end", () => resolve({ name: info.filename, contentType: info.mimeType, bytes: Buffer.concat(chunks) }))
      stream.on("error", reject)
    })
  })
  parser.on("error", () => reply(res, 400, { error: "MalformedMultipart" }))
  parser.on("close", () => {
    if (received === undefined) return reply(res, 400, { error: "MissingFilePart" })
    received
      .then(async ({ bytes, contentType, name }) => {
        const id = randomUUID()
        const row: Row = { id, name, size: bytes.byteLength, contentType, objectKey: `floor/${id}` }
        await store.put(row.objectKey, bytes, contentType)
        await store.insert(row)
        reply(res, 201, { ...row, createdAt: new Date().toISOString() }, { location: `/files/${id}` })
      })
      .catch((error: unknown) => reply(res, 503, { error: "Unavailable", message: String(error) }))
  })
  req.pipe(parser)
}

const store = env("FLOOR_STORE", "s3") === "memory" ? memoryStore() : await s3AndPgStore()

const server = createServer((req, res) => {
  if (req.method === "POST" && req.url === "/files") return upload(store, req, res)
  if (req.method === "GET" && req.url === "/healthz") return reply(res, 200, { status: "ok" })
  reply(res, 404, { error: "NotFound" })
})

server.listen(Number(env("PORT", "3000")), env("HOST", "127.0.0.1"))

process.once("SIGTERM", () => {
  server.close()
  server.closeAllConnections()
  void store.close().finally(() => process.exit(0))
})
