import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Option, Redacted, Schedule } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as PostgresDatabase from "../../src/adapters/database/PostgresDatabase.js"
import { rawRequest, textOfSize } from "./Http.js"
import * as ServerProcess from "./ServerProcess.js"
import * as TestDatabase from "./TestDatabase.js"

/** A temporary directory, removed with the scope. */
export const tempDirectory = (prefix: string) =>
  Effect.acquireRelease(
    Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), prefix))),
    (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
  )

/**
 * The built server (`node dist/bin/serve.js`) on a fresh PostgreSQL database and a
 * fresh object directory, with `env`; the database is open behind its back, to
 * count what is stored. Needs TEST_DATABASE_URL.
 */
export const start = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const databaseUrl = yield* TestDatabase.freshDatabaseUrl(Option.getOrThrow(TestDatabase.serverUrl))
    const dataDir = yield* tempDirectory("tandem-e2e-")
    const fullEnv = { DATABASE_URL: Redacted.value(databaseUrl), DATA_DIR: dataDir, ...env }
    const server = yield* ServerProcess.start(fullEnv)
    const sql = Context.get(yield* Layer.build(PostgresDatabase.layerUrl(databaseUrl, 2)), SqlClient.SqlClient)
    return { ...server, env: fullEnv, sql, dataDir }
  })

/** Files in the object directory: every object but the binding marker (temporary files are not objects). */
export const objectsIn = (dataDir: string) =>
  Effect.promise(async () =>
    (await Fs.readdir(Path.join(dataDir, "objects"))).filter((name) => name !== ".tmp" && !name.includes("binding"))
  )

/** Rows of `files` by status: committed records, and intents (pending uploads, deletes in progress). */
export const counts = (sql: SqlClient.SqlClient) =>
  Effect.orDie(Effect.map(
    sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM files GROUP BY status`,
    (rows): Record<string, number> => Object.fromEntries(rows.map((row) => [row.status, row.n]))
  ))

/**
 * One text file uploaded through a raw connection: at once, or `chunksPerSecond`
 * chunks of 64 KiB a second. Its status and id, or status 0 when the connection
 * ended without an answer.
 */
export const slowUpload = (
  base: string,
  name: string,
  options: { readonly size: number; readonly chunksPerSecond: number | undefined }
) => {
  const boundary = "tandem-e2e-boundary"
  const head = new TextEncoder().encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n` +
      "Content-Type: text/plain\r\n\r\n"
  )
  const tail = new TextEncoder().encode(`\r\n--${boundary}--\r\n`)
  const chunk = textOfSize(64 * 1024)
  async function* body() {
    yield head
    for (let sent = 0; sent < options.size; sent += chunk.byteLength) {
      const perSecond = options.chunksPerSecond
      if (perSecond !== undefined) {
        await new Promise((resolve) => setTimeout(resolve, 1000 / perSecond))
      }
      yield chunk.subarray(0, Math.min(chunk.byteLength, options.size - sent))
    }
    yield tail
  }
  return rawRequest(`${base}/files`, {
    method: "POST",
    headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
    body: body()
  }).pipe(
    Effect.map((response) => ({
      status: response.status,
      id: (response.json as { id?: string } | undefined)?.id ?? ""
    })),
    Effect.catchAllDefect(() => Effect.succeed({ status: 0, id: "" }))
  )
}

/** Waits until the server reports at least `count` uploads in flight (its /metrics gauge). */
export const untilInFlight = (base: string, count: number) =>
  Effect.retry(
    Effect.flatMap(
      Effect.promise(() => fetch(`${base}/metrics`).then((response) => response.text())),
      (text) => {
        const line = text.split("\n").find((l) => l.startsWith("tandem_uploads_in_flight "))
        return Number(line?.split(" ")[1] ?? 0) >= count ? Effect.void : Effect.fail("not yet")
      }
    ),
    Schedule.spaced("50 millis").pipe(Schedule.upTo("20 seconds"))
  )
