/**
 * The embedded PostgreSQL cluster under a test's DATA_DIR (EmbeddedDatabase):
 * its postmaster's pid, and a DATA_DIR that leaves no server running however the
 * test ends.
 */
import { Effect, Option } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { CLUSTER_DIRECTORY } from "../../src/adapters/database/EmbeddedDatabase.js"

/** `postmaster.pid`'s lines (pid, data directory, start time, port, socket directory, listen addresses, …); none without one. */
export const postmasterFile = (dataDirectory: string) =>
  Effect.promise(() =>
    Fs.readFile(Path.join(dataDirectory, CLUSTER_DIRECTORY, "postmaster.pid"), "utf8").then(
      (text) => Option.some(text.split("\n")),
      () => Option.none<Array<string>>()
    )
  )

export const postmasterPid = (dataDirectory: string) =>
  Effect.map(postmasterFile(dataDirectory), Option.flatMap((lines) => Option.fromNullable(Number(lines[0]) || null)))

/** Whether `pid` runs (a zombie does not). */
export const isAlive = (pid: number) =>
  Effect.promise(async () => {
    try {
      process.kill(pid, 0)
    } catch {
      return false
    }
    const stat = await Fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "")
    return !/\) Z /.test(stat)
  })

/** Until `pid` has exited, or `millis` passed: whether it has. */
export const awaitGone = (pid: number, millis = 10_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (Date.now() < deadline) {
      if (!(yield* isAlive(pid))) return true
      yield* Effect.sleep("50 millis")
    }
    return false
  })

/** Stops a server still running on the cluster (a test that failed half-way), as PostgreSQL's immediate shutdown. */
const stopLeftover = (dataDirectory: string) =>
  Effect.gen(function*() {
    const pid = yield* postmasterPid(dataDirectory)
    if (Option.isNone(pid) || !(yield* isAlive(pid.value))) return
    const cwd = yield* Effect.promise(() => Fs.readlink(`/proc/${pid.value}/cwd`).catch(() => ""))
    if (!cwd.startsWith(dataDirectory)) return
    process.kill(pid.value, "SIGQUIT")
    if (!(yield* awaitGone(pid.value, 5_000))) process.kill(pid.value, "SIGKILL")
  })

/**
 * A fresh DATA_DIR, searchable by others (as root, the embedded server runs as
 * the user postgres, which must reach it), removed with everything in it when the
 * scope closes, after stopping any server left running on it.
 */
export const dataDirectory = (prefix: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const directory = await Fs.mkdtemp(Path.join(Os.tmpdir(), `tandem-${prefix}-`))
      await Fs.chmod(directory, 0o755)
      return directory
    }),
    (directory) =>
      Effect.zipRight(stopLeftover(directory), Effect.promise(() => Fs.rm(directory, { recursive: true, force: true })))
  )
