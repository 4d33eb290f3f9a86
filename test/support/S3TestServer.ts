import { Effect, Layer, Redacted } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as S3ObjectStore from "../../src/adapters/objects/S3ObjectStore.js"
import type { S3Settings } from "../../src/adapters/objects/S3ObjectStore.js"
import type { ObjectStore } from "../../src/ports/ObjectStore.js"

export const bucket = "tandem-test"

const serverScript = fileURLToPath(new URL("./s3rver-process.cjs", import.meta.url))

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
 * A fresh s3rver (in a child process) on 127.0.0.1 with an ephemeral port, an empty temp
 * directory and one bucket; stopped and deleted when the scope closes. Yields settings
 * for an S3ObjectStore pointing at it.
 */
export const settings: Effect.Effect<S3Settings, never, Scope.Scope> = Effect.gen(function*() {
  const directory = yield* Effect.acquireRelease(
    Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-s3rver-"))),
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
  return {
    bucket,
    region: "us-east-1",
    endpoint: `http://127.0.0.1:${port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: Redacted.make("S3RVER") },
    maxAttempts: 1,
    requestTimeoutMillis: 10_000
  }
})

/** An S3ObjectStore on a fresh s3rver; `overrides` tune the client (e.g. listPageSize). */
export const layerWith = (overrides: Partial<S3Settings> = {}): Layer.Layer<ObjectStore> =>
  Layer.unwrapScoped(Effect.map(settings, (base) => S3ObjectStore.layer({ ...base, ...overrides })))

export const layer: Layer.Layer<ObjectStore> = layerWith()
