/**
 * The embedded PostgreSQL (src/adapters/database/EmbeddedDatabase.ts) in this
 * process: many connections, the server stopped with the layer, a stale
 * postmaster.pid naming another process, a long DATA_DIR, a directory that is not a
 * cluster. The kill -9 of tandem itself is test/e2e/Start.test.ts and the crash suite.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Option } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as EmbeddedDatabase from "../../src/adapters/database/EmbeddedDatabase.js"
import * as EmbeddedCluster from "../support/EmbeddedCluster.js"

const query = <A>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) => Effect.flatMap(SqlClient.SqlClient, f)

describe("EmbeddedDatabase", () => {
  it.scopedLive("serves many connections at once, and stops with the layer", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* EmbeddedCluster.dataDirectory("embedded-db")
      const postgres = yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(EmbeddedDatabase.layerEmbedded(dataDirectory, 4))
        const run = <A>(effect: Effect.Effect<A, unknown, SqlClient.SqlClient>) =>
          Effect.provide(effect, Layer.succeedContext(context))
        // Four sessions in parallel: four backends, and the sleeps overlap.
        const started = Date.now()
        const pids = yield* run(Effect.all(
          Array.from({ length: 4 }, () =>
            query((sql) => sql<{ pid: number }>`SELECT pg_backend_pid() AS pid, pg_sleep(0.5)`)),
          { concurrency: "unbounded" }
        ))
        expect(
          new Set(pids.map(([row]) =>
            row?.pid
          )).size
        ).toBe(4)
        expect(Date.now() - started).toBeLessThan(1_900)
        return Option.getOrThrow(yield* EmbeddedCluster.postmasterPid(dataDirectory))
      }))
      expect(yield* EmbeddedCluster.isAlive(postgres)).toBe(false)
      expect(yield* EmbeddedCluster.postmasterPid(dataDirectory)).toEqual(Option.none())
    }), 120_000)

  it.scopedLive("starts over a postmaster.pid whose pid is another process now", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* EmbeddedCluster.dataDirectory("embedded-db")
      yield* Effect.scoped(Layer.build(EmbeddedDatabase.layerEmbedded(dataDirectory, 1)))
      // A process that is not PostgreSQL, named by a postmaster.pid as a crash would leave it.
      const other = yield* Effect.acquireRelease(
        Effect.sync(() => spawn("sleep", ["60"], { stdio: "ignore" })),
        (child) => Effect.sync(() => child.kill("SIGKILL"))
      )
      const file = Path.join(dataDirectory, EmbeddedDatabase.CLUSTER_DIRECTORY, "postmaster.pid")
      yield* Effect.promise(() => Fs.writeFile(file, `${other.pid}\n${dataDirectory}\n0\n5432\n\n\n0 0\nready   \n`))
      const context = yield* Layer.build(EmbeddedDatabase.layerEmbedded(dataDirectory, 1))
      const [row] = yield* Effect.provide(
        query((sql) => sql<{ one: number }>`SELECT 1 AS one`),
        Layer.succeedContext(context)
      )
      expect(row?.one).toBe(1)
      expect(yield* EmbeddedCluster.isAlive(other.pid ?? 0)).toBe(true)
    }), 120_000)

  it.scopedLive(
    "puts its socket in a private temp directory when DATA_DIR is too long for one",
    () =>
      Effect.gen(function*() {
        const base = yield* EmbeddedCluster.dataDirectory("embedded-db")
        const dataDirectory = Path.join(base, "a-directory-name-long-enough".repeat(3))
        expect(Buffer.byteLength(Path.join(dataDirectory, "postgres/.s.PGSQL.5432"))).toBeGreaterThan(107)
        const { socket } = yield* EmbeddedDatabase.start(dataDirectory, 2)
        expect(socket.startsWith(base)).toBe(false)
        const lines = Option.getOrThrow(yield* EmbeddedCluster.postmasterFile(dataDirectory))
        expect(lines[4]).toBe(socket)
        expect(lines[5]).toBe("")
      }),
    120_000
  )

  it.scopedLive("layerEmbeddedTemporary: a cluster of its own, removed with the layer", () =>
    Effect.gen(function*() {
      const { directory, version } = yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(EmbeddedDatabase.layerEmbeddedTemporary())
        const [row] = yield* Effect.provide(
          query((sql) =>
            sql<{ version: string; directory: string }>`SELECT current_setting('server_version') AS version,
            current_setting('data_directory') AS directory`
          ),
          Layer.succeedContext(context)
        )
        return { directory: row?.directory ?? "", version: row?.version ?? "" }
      }))
      expect(version).toMatch(/^18\./)
      expect(yield* Effect.promise(() => Fs.access(directory).then(() => true, () => false))).toBe(false)
    }), 120_000)

  it.scopedLive("refuses a non-empty directory that is not a cluster", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* EmbeddedCluster.dataDirectory("embedded-db")
      yield* Effect.promise(async () => {
        await Fs.mkdir(Path.join(dataDirectory, "postgres"))
        await Fs.writeFile(Path.join(dataDirectory, "postgres", "notes.txt"), "mine")
      })
      const exit = yield* Effect.exit(EmbeddedDatabase.start(dataDirectory, 2))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(Cause.pretty(exit.cause)).toContain("is not a PostgreSQL cluster")
      expect(yield* Effect.promise(() => Fs.readdir(Path.join(dataDirectory, "postgres")))).toEqual(["notes.txt"])
    }), 60_000)
})
