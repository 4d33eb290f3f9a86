/**
 * The `tandem` CLI as a script runs it (the built bundle, dist/bin/cli.js) against the real server with
 * bearer tokens, on a fresh PostgreSQL database and a local-disk store: its
 * commands, their output, and the exit statuses scripts rely on.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { SignJWT } from "jose"
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as PostgresDatabase from "../../src/adapters/database/PostgresDatabase.js"
import { textOfSize } from "../support/Http.js"
import * as ServerProcess from "../support/ServerProcess.js"
import * as TestDatabase from "../support/TestDatabase.js"

const cliScript = fileURLToPath(new URL("../../dist/bin/cli.js", import.meta.url))

const SECRET = "an HS256 secret for the CLI e2e test, 32 bytes or more"

interface Ran {
  readonly code: number | null
  readonly stdout: Buffer
  readonly stderr: string
}

/** Runs `tandem ...args` with `env` only (plus PATH and HOME) to its end. */
const tandem = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.async<Ran>((resume) => {
    const stdout: Array<Buffer> = []
    let stderr = ""
    const child = spawn(process.execPath, [cliScript, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env }
    })
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout: Buffer.concat(stdout), stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  }).pipe(Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error(`tandem ${args.join(" ")} hung`) }))

const text = (ran: Ran) => ran.stdout.toString("utf8")

class Server extends Context.Tag("test/Server")<Server, {
  readonly url: string
  /** TANDEM_URL and TANDEM_TOKEN (alice's) for the file commands. */
  readonly client: Record<string, string>
  /** What the server was started with, for the operator commands. */
  readonly env: Record<string, string>
  readonly dir: string
}>() {}

const ServerLive = Layer.scoped(
  Server,
  Effect.gen(function*() {
    const databaseUrl = yield* TestDatabase.freshDatabaseUrl(Option.getOrThrow(TestDatabase.serverUrl))
    const dir = yield* Effect.acquireRelease(
      Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-cli-"))),
      (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
    )
    const env = {
      DATABASE_URL: Redacted.value(databaseUrl),
      DATA_DIR: Path.join(dir, "data"),
      AUTH_JWT_SECRET: SECRET,
      LINK_SIGNING_SECRET: "a link-signing secret for the CLI e2e test"
    }
    const server = yield* ServerProcess.start(env)
    const token = yield* Effect.promise(() =>
      new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("alice").setIssuedAt().setExpirationTime("10m")
        .sign(new TextEncoder().encode(SECRET))
    )
    return { url: server.url, client: { TANDEM_URL: server.url, TANDEM_TOKEN: token }, env, dir }
  }).pipe(Effect.orDie)
)

describe.skipIf(Option.isNone(TestDatabase.serverUrl))("the tandem CLI, on the real server", () => {
  layer(ServerLive, { excludeTestServices: true, timeout: 60_000 })((it) => {
    it.effect(
      "upload (one stored, one refused: 4), ls, get -o and to stdout, link, rm, then get: 3",
      () =>
        Effect.gen(function*() {
          const { client, dir, url } = yield* Server
          const bytes = textOfSize(900, "cli ")
          const good = Path.join(dir, "good.txt")
          const tiny = Path.join(dir, "tiny.txt")
          yield* Effect.promise(() => Fs.writeFile(good, bytes))
          yield* Effect.promise(() => Fs.writeFile(tiny, "too small"))

          const uploaded = yield* tandem(["upload", good, tiny], client)
          expect(uploaded.code, uploaded.stderr).toBe(4)
          expect(uploaded.stderr).toMatch(/tiny\.txt: FileTooSmall \(422\)/)
          const lines = text(uploaded).trim().split("\n")
          expect(lines).toHaveLength(1)
          const [id, size, , type, name] = (lines[0] ?? "").split("\t")
          expect([size, type, name]).toEqual(["900", "text/plain", "good.txt"])
          if (id === undefined) return expect.unreachable()

          const listed = yield* tandem(["ls"], client)
          expect(listed.code, listed.stderr).toBe(0)
          expect(text(listed)).toContain(`${id}\t900\t`)
          const json = yield* tandem(["ls", "--limit", "1", "--json"], client)
          expect(json.code).toBe(0)
          expect(JSON.parse(text(json))).toMatchObject({ id, name: "good.txt", size: 900 })

          const copy = Path.join(dir, "copy.txt")
          const got = yield* tandem(["get", id, "-o", copy], client)
          expect(got.code, got.stderr).toBe(0)
          expect((yield* Effect.promise(() => Fs.readFile(copy))).equals(Buffer.from(bytes))).toBe(true)
          const piped = yield* tandem(["get", id], client)
          expect(piped.code).toBe(0)
          expect(piped.stdout.equals(Buffer.from(bytes))).toBe(true)
          const info = yield* tandem(["get", id, "--info"], client)
          expect(text(info)).toMatch(new RegExp(`^${id}\t900\t`))

          const linked = yield* tandem(["link", id, "--expires", "5m"], client)
          expect(linked.code, linked.stderr).toBe(0)
          const link = text(linked).trim()
          expect(link.startsWith(`${url}/files/${id}/content?`)).toBe(true)
          const viaLink = yield* Effect.promise(() => fetch(link).then(async (r) => Buffer.from(await r.arrayBuffer())))
          expect(viaLink.equals(Buffer.from(bytes))).toBe(true)

          const removed = yield* tandem(["rm", id], client)
          expect(removed.code, removed.stderr).toBe(0)
          const gone = yield* tandem(["get", id, "-o", Path.join(dir, "gone.txt")], client)
          expect(gone.code).toBe(3)
          expect(gone.stderr).toMatch(/FileNotFound \(404\)/)
          expect(existsSync(Path.join(dir, "gone.txt"))).toBe(false)
          expect((yield* tandem(["rm", id], client)).code).toBe(3)
        }),
      120_000
    )

    it.effect(
      "exit statuses: --help 0, a bad flag 2, a malformed id 2, no token 5, the server down 6",
      () =>
        Effect.gen(function*() {
          const { client, url } = yield* Server
          const help = yield* tandem(["--help"], {})
          expect(help.code).toBe(0)
          for (const command of ["upload", "ls", "get", "rm", "link", "serve", "migrate", "reconcile", "token"]) {
            expect(text(help)).toContain(`- ${command}`)
          }
          expect((yield* tandem(["upload", "--help"], {})).code).toBe(0)

          const badFlag = yield* tandem(["ls", "--no-such-flag"], client)
          expect(badFlag.code).toBe(2)
          expect(badFlag.stderr).toContain("--no-such-flag")
          expect((yield* tandem(["no-such-command"], client)).code).toBe(2)
          expect((yield* tandem(["get", "not-a-uuid"], client)).code).toBe(2)
          expect((yield* tandem(["link", crypto.randomUUID(), "--expires", "8d"], client)).code).toBe(2)
          expect((yield* tandem(["ls"], { ...client, TANDEM_URL: "not a url" })).code).toBe(2)

          const anonymous = yield* tandem(["ls"], { TANDEM_URL: url })
          expect(anonymous.code).toBe(5)
          expect(anonymous.stderr).toMatch(/Unauthorized \(401\)/)
          expect((yield* tandem(["ls"], { ...client, TANDEM_TOKEN: "not.a.jwt" })).code).toBe(5)

          // A port nothing listens on: the server is down.
          const down = yield* tandem(["ls"], { ...client, TANDEM_URL: "http://127.0.0.1:9" })
          expect(down.code).toBe(6)
          expect(down.stderr).toMatch(/cannot reach the server/)
        }),
      120_000
    )

    it.scoped(
      "--key makes a retried upload return the same file; token, migrate and reconcile run as npm's",
      () =>
        Effect.gen(function*() {
          const { client, dir, env, url } = yield* Server
          const file = Path.join(dir, "keyed.txt")
          yield* Effect.promise(() => Fs.writeFile(file, textOfSize(800, "keyed ")))
          const key = crypto.randomUUID()
          const first = yield* tandem(["upload", file, "--key", key], client)
          const again = yield* tandem(["upload", file, "--key", key], client)
          expect([first.code, again.code]).toEqual([0, 0])
          expect(text(again).split("\t")[0]).toBe(text(first).split("\t")[0])

          const token = yield* tandem(["token", "--sub", "carol", "--ttl", "5m"], { AUTH_JWT_SECRET: SECRET })
          expect(token.code, token.stderr).toBe(0)
          const asCarol = yield* tandem(["ls"], { TANDEM_URL: url, TANDEM_TOKEN: text(token).trim() })
          expect(asCarol.code, asCarol.stderr).toBe(0)
          expect(text(asCarol)).toBe("")

          // migrate on an empty database: every migration applied, and again: nothing to do.
          const empty = yield* TestDatabase.freshDatabaseUrl(Option.getOrThrow(TestDatabase.serverUrl))
          const migrateEnv = { DATABASE_URL: Redacted.value(empty), DATA_DIR: Path.join(dir, "migrate") }
          const migrated = yield* tandem(["migrate"], migrateEnv)
          expect(migrated.code, migrated.stderr).toBe(0)
          expect((yield* tandem(["migrate"], migrateEnv)).code).toBe(0)
          const sql = Context.get(yield* Layer.build(PostgresDatabase.layerUrl(empty, 1)), SqlClient.SqlClient)
          const applied = yield* Effect.orDie(sql<{ n: number }>`SELECT count(*)::int AS n FROM effect_sql_migrations`)
          expect(applied[0]?.n).toBeGreaterThanOrEqual(7)
          const down = yield* tandem(["migrate"], {
            DATABASE_URL: "postgres://postgres@127.0.0.1:9/none",
            DATA_DIR: Path.join(dir, "migrate")
          })
          expect(down.code).toBe(6)

          const reconciled = yield* tandem(["reconcile", "--dry-run"], env)
          expect(reconciled.code, reconciled.stderr).toBe(0)
          expect(text(reconciled)).toMatch(/^tandem reconcile --dry-run: /)
          expect(text(reconciled).trim().split("\n").at(-1)).toBe("consistent")
          expect((yield* tandem(["reconcile", "--bind", "--restore"], env)).code).toBe(2)
        }),
      120_000
    )

    it.effect("serve runs the server as npm start does, until SIGTERM", () =>
      Effect.gen(function*() {
        const { dir, env } = yield* Server
        const served = yield* Effect.async<
          { readonly url: string; readonly stop: () => Promise<number | null> },
          Error
        >(
          (resume) => {
            let output = ""
            const child = spawn(process.execPath, [cliScript, "serve"], {
              env: {
                PATH: process.env.PATH ?? "",
                ...env,
                DATA_DIR: Path.join(dir, "data"),
                HOST: "127.0.0.1",
                PORT: "0",
                RECONCILE_INTERVAL_SECONDS: "0"
              }
            })
            const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)))
            const onData = (chunk: Buffer) => {
              output += chunk.toString("utf8")
              const match = /Listening on (http:\/\/[^\s"]+)/.exec(output)
              if (match?.[1] !== undefined) {
                resume(Effect.succeed({
                  url: match[1],
                  stop: () => {
                    child.kill("SIGTERM")
                    return exited
                  }
                }))
              }
            }
            child.stdout.on("data", onData)
            child.stderr.on("data", onData)
            child.on("exit", (code) => resume(Effect.fail(new Error(`serve exited (${code}):\n${output}`))))
            return Effect.sync(() => child.kill("SIGKILL"))
          }
        ).pipe(Effect.timeout("60 seconds"))
        const health = yield* Effect.promise(() => fetch(`${served.url}/healthz`).then((r) => r.status))
        expect(health).toBe(200)
        expect(yield* Effect.promise(served.stop)).toBe(0)
      }), 120_000)
  })
})
