import { Effect, Redacted } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { fileURLToPath } from "node:url"
import type { S3Settings } from "../../../src/adapters/objects/S3ObjectStore.js"

export const bucket = "tandem-crash"

const serverScript = fileURLToPath(new URL("./s3rver-process.cjs", import.meta.url))

/** The crash suite's bucket: where it is served, and the directory s3rver keeps it in. */
export interface CrashS3 {
  readonly settings: S3Settings
  readonly directory: string
}

/** Resolves with the port the child prints, rejects if it dies first. */
const portOf = (child: ChildProcess): Promise<number> =>
  new Promise((resolve, reject) => {
    let stderr = ""
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    child.once("error", reject)
    child.once("exit", (code) => reject(new Error(`s3rver exited with ${code} before listening: ${stderr}`)))
    if (child.stdout === null) return reject(new Error("s3rver has no stdout"))
    Readline.createInterface({ input: child.stdout }).once("line", (line) => {
      const parsed: unknown = JSON.parse(line)
      if (typeof parsed === "object" && parsed !== null && "port" in parsed && typeof parsed.port === "number") {
        resolve(parsed.port)
      } else reject(new Error(`unexpected s3rver output: ${line}`))
    })
  })

const stop = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

/**
 * A fresh s3rver in its own process (so it outlives every server kill), disk-backed
 * in an empty temp directory, with one bucket, its multipart uploads made to behave
 * as S3's do (s3rver-process.cjs); stopped and deleted when the scope closes.
 */
export const start: Effect.Effect<CrashS3, never, Scope.Scope> = Effect.gen(function*() {
  const directory = yield* Effect.acquireRelease(
    Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-crash-s3rver-"))),
    (directory) => Effect.promise(() => Fs.rm(directory, { recursive: true, force: true }))
  )
  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn(process.execPath, ["--openssl-legacy-provider", serverScript, directory, bucket], {
        stdio: ["pipe", "pipe", "pipe"]
      })
    ),
    (child) => Effect.promise(() => stop(child))
  )
  const port = yield* Effect.promise(() => portOf(child))
  const settings: S3Settings = {
    bucket,
    region: "us-east-1",
    endpoint: `http://127.0.0.1:${port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: Redacted.make("S3RVER") },
    maxAttempts: 1,
    requestTimeoutMillis: 10_000
  }
  return { settings, directory }
})

/** A multipart upload s3rver holds (created, neither completed nor aborted): its parts are files on disk. */
export interface MultipartUpload {
  readonly uploadId: string
  /** The object key it was created for; "" when its directory has no key file. */
  readonly key: string
  /** The part numbers stored, ascending. */
  readonly parts: ReadonlyArray<number>
}

const readKey = (directory: string) =>
  Fs.readFile(Path.join(directory, "key"), "utf8").catch((error: unknown) => {
    if (error instanceof Error && "code" in error && error.code === "ENOENT") return ""
    throw error
  })

/** Every unfinished multipart upload, from s3rver's directory (where its parts wait: `<bucket>/._S3rver_uploads/<id>/`). */
export const multipartUploads = (s3: CrashS3): Effect.Effect<ReadonlyArray<MultipartUpload>> =>
  Effect.promise(async () => {
    const root = Path.join(s3.directory, bucket, "._S3rver_uploads")
    const ids = await Fs.readdir(root).catch((error: unknown) => {
      if (error instanceof Error && "code" in error && error.code === "ENOENT") return []
      throw error
    })
    return Promise.all(ids.map(async (uploadId) => {
      const entries = await Fs.readdir(Path.join(root, uploadId))
      const parts = entries.filter((name) => /^\d+$/.test(name)).map(Number).sort((a, b) => a - b)
      return { uploadId, key: await readKey(Path.join(root, uploadId)), parts }
    }))
  })
