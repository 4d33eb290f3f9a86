import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as EmbeddedCluster from "../support/EmbeddedCluster.js"
import * as S3TestServer from "../support/S3TestServer.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as TestDatabase from "../support/TestDatabase.js"

/** A DATA_DIR; no embedded PostgreSQL is left running on it however the test ends. */
const tempDirectory = EmbeddedCluster.dataDirectory("e2e")

/** curl, as the README tells people to use it; returns the body and the status. */
const curl = (args: ReadonlyArray<string>) =>
  Effect.async<{ status: number; body: Buffer }, Error>((resume) => {
    execFile("curl", ["-sS", "-w", "\n%{http_code}", ...args], { encoding: "buffer" }, (error, stdout) => {
      if (error !== null) return resume(Effect.fail(error))
      const text = stdout
      const newline = text.lastIndexOf(0x0a)
      resume(Effect.succeed({ status: Number(text.subarray(newline + 1).toString()), body: text.subarray(0, newline) }))
    })
  })

/** A 1 KB text file on disk, as a user would have it. */
const oneKilobyteFile = (dir: string) =>
  Effect.promise(async () => {
    const file = Path.join(dir, "notes.txt")
    const line = "tandem keeps S3 and PostgreSQL in step.\n"
    await Fs.writeFile(file, line.repeat(Math.ceil(1024 / line.length)).slice(0, 1024))
    return file
  })

const uploadAndReadBack = (url: string, file: string) =>
  Effect.gen(function*() {
    const created = yield* curl(["-F", `file=@${file};type=text/plain`, `${url}/files`])
    expect(created.status).toBe(201)
    const record = JSON.parse(created.body.toString()) as { id: string; size: number; sha256: string }
    const original = yield* Effect.promise(() => Fs.readFile(file))
    expect(record.size).toBe(1024)
    expect(record.sha256).toBe(createHash("sha256").update(original).digest("hex"))
    const content = yield* curl([`${url}/files/${record.id}/content`])
    expect(content.status).toBe(200)
    expect(content.body.equals(original)).toBe(true)
    return { record, original }
  })

describe("npm start", () => {
  it.live(
    "with no configuration: embedded PostgreSQL and local disk under DATA_DIR, kept across restarts",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* tempDirectory
        const file = yield* oneKilobyteFile(dataDir)
        const { original, postgres, record } = yield* Effect.scoped(Effect.gen(function*() {
          const server = yield* ServerProcess.start({ DATA_DIR: dataDir })
          const uploaded = yield* uploadAndReadBack(server.url, file)
          // The server listens on a Unix socket in its cluster, and on no TCP address.
          const lines = Option.getOrThrow(yield* EmbeddedCluster.postmasterFile(dataDir))
          expect(lines[4]).toBe(Path.join(dataDir, "postgres"))
          expect(lines[5]).toBe("")
          return { ...uploaded, postgres: Number(lines[0]) }
        }))
        // A clean stop (SIGTERM) stops the database too.
        expect(yield* EmbeddedCluster.isAlive(postgres)).toBe(false)
        // A second process on the same DATA_DIR finds the file.
        yield* Effect.scoped(Effect.gen(function*() {
          const server = yield* ServerProcess.start({ DATA_DIR: dataDir })
          const content = yield* curl([`${server.url}/files/${record.id}/content`])
          expect(content.status).toBe(200)
          expect(content.body.equals(original)).toBe(true)
          const ready = yield* curl([`${server.url}/readyz`])
          expect(ready.status).toBe(200)
        }))
        expect(yield* EmbeddedCluster.postmasterPid(dataDir)).toEqual(Option.none())
        // The file's object, and the marker binding the store to this database (README, "The reconciler").
        const objects = yield* Effect.promise(() => Fs.readdir(Path.join(dataDir, "objects")))
        const keys = objects.filter((name) => name !== ".tmp").map((name) => decodeURIComponent(name))
        expect(keys).toHaveLength(2)
        expect(keys).toEqual(
          expect.arrayContaining(["files/.tandem-binding", expect.stringMatching(/^files\/[0-9a-f-]{36}$/)])
        )
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  it.live(
    "kill -9 leaves the embedded PostgreSQL running; the next start on the DATA_DIR stops it, comes up and has the file",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* tempDirectory
        const file = yield* oneKilobyteFile(dataDir)
        const first = yield* ServerProcess.start({ DATA_DIR: dataDir })
        const { original, record } = yield* uploadAndReadBack(first.url, file)
        const orphan = Option.getOrThrow(yield* EmbeddedCluster.postmasterPid(dataDir))
        yield* Effect.async<void>((resume) => {
          first.child.once("exit", () => resume(Effect.void))
          first.child.kill("SIGKILL")
        })
        // Nothing stops it but the next start: its postmaster.pid still names it.
        expect(yield* EmbeddedCluster.isAlive(orphan)).toBe(true)

        yield* Effect.scoped(Effect.gen(function*() {
          const second = yield* ServerProcess.start({ DATA_DIR: dataDir })
          expect(yield* EmbeddedCluster.isAlive(orphan)).toBe(false)
          expect(second.output()).toContain(`Stopping the embedded PostgreSQL (pid ${orphan})`)
          const ready = yield* curl([`${second.url}/readyz`])
          expect(ready.status).toBe(200)
          const content = yield* curl([`${second.url}/files/${record.id}/content`])
          expect(content.status).toBe(200)
          expect(content.body.equals(original)).toBe(true)
        }))
        expect(yield* EmbeddedCluster.postmasterPid(dataDir)).toEqual(Option.none())
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  it.live(
    "a second process on the same DATA_DIR refuses to start instead of sharing the embedded database",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* tempDirectory
        const first = yield* ServerProcess.start({ DATA_DIR: dataDir })
        const second = yield* ServerProcess.runToExit({ DATA_DIR: dataDir })
        expect(second.code).toBe(1)
        expect(second.stdout + second.stderr).toContain("in use by another tandem process")
        const ready = yield* curl([`${first.url}/readyz`])
        expect(ready.status).toBe(200)
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  it.live.skipIf(Option.isNone(TestDatabase.serverUrl))(
    "with DATABASE_URL and S3_BUCKET: real PostgreSQL and an S3 server",
    () =>
      Effect.gen(function*() {
        const server = Option.getOrThrow(TestDatabase.serverUrl)
        const databaseUrl = yield* TestDatabase.freshDatabaseUrl(server)
        const s3 = yield* S3TestServer.settings
        const dataDir = yield* tempDirectory
        const file = yield* oneKilobyteFile(dataDir)
        const tandem = yield* ServerProcess.start({
          DATA_DIR: dataDir,
          DATABASE_URL: Redacted.value(databaseUrl),
          S3_BUCKET: s3.bucket,
          S3_ENDPOINT: s3.endpoint ?? "",
          S3_REGION: s3.region,
          S3_FORCE_PATH_STYLE: "true",
          AWS_ACCESS_KEY_ID: "S3RVER",
          AWS_SECRET_ACCESS_KEY: "S3RVER"
        })
        const { record } = yield* uploadAndReadBack(tandem.url, file)
        // Nothing went to the embedded defaults.
        const local = yield* Effect.promise(() => Fs.readdir(dataDir))
        expect(local).toEqual(["notes.txt"])
        const listed = yield* curl([`${tandem.url}/files`])
        expect(JSON.parse(listed.body.toString()).items[0].id).toBe(record.id)
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )

  const configurationErrors: ReadonlyArray<readonly [string, Record<string, string>]> = [
    ["UPLOAD_MAX_BYTES", { UPLOAD_MAX_BYTES: "lots" }],
    ["PORT", { PORT: "99999" }],
    ["S3_PREFIX", { S3_PREFIX: "../escape" }],
    ["UPLOAD_MIN_BYTES", { UPLOAD_MIN_BYTES: "4096" }],
    ["DATABASE_POOL_SIZE", { DATABASE_URL: "postgres://127.0.0.1:1/x", DATABASE_POOL_SIZE: "many" }]
  ]
  for (const [variable, env] of configurationErrors) {
    it.live(`a bad ${variable} stops start-up with one line naming it`, () =>
      Effect.gen(function*() {
        const dataDir = yield* tempDirectory
        const exited = yield* ServerProcess.runToExit({ DATA_DIR: dataDir, ...env })
        expect(exited.code).toBe(1)
        const lines = exited.stderr.trim().split("\n")
        expect(lines).toHaveLength(1)
        expect(lines[0]).toContain(variable)
        expect(lines[0]).toMatch(/^tandem: configuration error: /)
      }).pipe(Effect.scoped), { timeout: 60_000 })
  }
})
