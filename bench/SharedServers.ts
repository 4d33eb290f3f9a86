import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { once } from "node:events"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { s3rverScript } from "./Paths.js"
import * as Pg from "./Pg.js"

export interface S3Server {
  readonly endpoint: string
  readonly bucket: string
  readonly pid: number
  readonly stop: () => Promise<void>
}

/** s3rver in its own process, exactly as test/support/S3TestServer.ts starts it, on an empty temp directory. */
export const startS3rver = async (bucket = "tandem-bench"): Promise<S3Server> => {
  const directory = await Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-bench-s3rver-"))
  const child = spawn(process.execPath, ["--openssl-legacy-provider", s3rverScript, directory, bucket], {
    stdio: ["pipe", "pipe", "pipe"]
  })
  let stderr = ""
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL")
      await once(child, "exit")
    }
    await Fs.rm(directory, { recursive: true, force: true })
  }
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`s3rver exited with ${code} before listening: ${stderr}`)))
      Readline.createInterface({ input: child.stdout }).once("line", (line) => {
        const parsed: unknown = JSON.parse(line)
        if (typeof parsed === "object" && parsed !== null && "port" in parsed && typeof parsed.port === "number") {
          resolve(parsed.port)
        } else reject(new Error(`unexpected s3rver output: ${line}`))
      })
    })
    const pid = child.pid
    if (pid === undefined) throw new Error("s3rver has no pid")
    return { endpoint: `http://127.0.0.1:${port}`, bucket, pid, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

export interface Database {
  readonly url: string
  readonly name: string
  readonly serverVersion: string
  readonly drop: () => Promise<void>
}

const withUrlDatabase = (serverUrl: string, database: string): string => {
  const url = new URL(serverUrl)
  url.pathname = `/${database}`
  return url.toString()
}

const onServer = async <A>(serverUrl: string, run: (pool: Pg.PgPool) => Promise<A>): Promise<A> => {
  const pool = Pg.pool(serverUrl, 1)
  try {
    return await run(pool)
  } finally {
    await pool.end()
  }
}

/** A fresh, uniquely named database on the server at `serverUrl`; `drop` removes it (FORCE ends leftover sessions). */
export const createDatabase = async (serverUrl: string): Promise<Database> => {
  const name = `tandem_bench_${randomBytes(6).toString("hex")}`
  const serverVersion = await onServer(serverUrl, async (pool) => {
    await pool.query(`CREATE DATABASE ${name}`)
    const { rows } = await pool.query("SHOW server_version")
    return String(rows[0]?.["server_version"] ?? "unknown")
  })
  return {
    url: withUrlDatabase(serverUrl, name),
    name,
    serverVersion,
    drop: () =>
      onServer(serverUrl, (pool) => pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined)
  }
}
