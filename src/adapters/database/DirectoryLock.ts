/**
 * One process's exclusive use of a directory (the embedded PGlite files: two
 * processes opening them corrupt them).
 *
 * A pid file alone cannot do this: taking over a stale one (its process was
 * SIGKILLed) is "read, decide it is stale, remove, create", and two processes
 * doing that at once can each remove the other's fresh lock and both go on.
 *
 * On Linux the lock is a Unix-domain socket bound in the abstract namespace, named
 * after the directory (its device and inode, so every path to it, through symlinks
 * or bind mounts, gives one name). The kernel lets one socket bind a name, and
 * frees the name the moment its process exits, however it exits: the bind is the
 * atomic test-and-set, and there is no stale state to take over. `tandem.lock`
 * still holds the owner's pid, but only to name it when another process is
 * refused. Caveat: abstract names are per network namespace, so two containers
 * sharing the directory but not their network are not kept apart (the pid file
 * never did that either: pids are per pid namespace).
 *
 * Elsewhere (no abstract namespace) the lock is the `tandem.lock` file itself,
 * created complete and only if absent (written aside, then hard-linked into place:
 * `link` fails if the name exists). A lock whose pid no longer runs is taken over
 * only by the holder of a second file, `tandem.lock.takeover` (created only if
 * absent), who decides again, under it, that the lock is stale before removing it.
 * An existing lock is removed only by its owner (on release) or by the guard's
 * holder, and a lock is created only where there is none, so a stale lock stays the
 * same stale lock from that second decision to its removal: two processes cannot
 * both take it over. The guard is held for two file operations; one left by a
 * process that died in between is stale after GUARD_STALE_MS (the one heuristic: a
 * process that stalls that long holding the guard could be overtaken). This is the
 * fallback for macOS and Windows development machines, rather than refusing to start
 * there; the tests run it on Linux too.
 */
import { Effect, Option, type Scope } from "effect"
import { createHash, randomUUID } from "node:crypto"
import { link, readFile, rename, rm, stat, writeFile } from "node:fs/promises"
import { createServer, type Server } from "node:net"
import { join } from "node:path"

const LOCK_FILE = "tandem.lock"
const GUARD_STALE_MS = 10_000

const hasCode = (error: unknown, code: string) =>
  typeof error === "object" && error !== null && "code" in error && error.code === code

const toError = (error: unknown) => error instanceof Error ? error : new Error(String(error))

const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it runs, as another user.
    return hasCode(error, "EPERM")
  }
}

const inUse = (directory: string, pid: Option.Option<number>) =>
  new Error(Option.match(pid, {
    onNone: () => `${directory} is in use by another tandem process`,
    onSome: (pid) => `${directory} is in use by another tandem process (pid ${pid})`
  }))

type Owner =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Unreadable" }
  | { readonly _tag: "Pid"; readonly pid: number }

/** Who a lock file names. */
const readOwner = async (file: string): Promise<Owner> => {
  let text: string
  try {
    text = await readFile(file, "utf8")
  } catch (error) {
    if (hasCode(error, "ENOENT")) return { _tag: "Missing" }
    throw error
  }
  const pid = Number(text.trim())
  return Number.isSafeInteger(pid) && pid > 0 ? { _tag: "Pid", pid } : { _tag: "Unreadable" }
}

/** The directory's identity: the same for every path that reaches it. */
const identity = async (directory: string) => {
  const { dev, ino } = await stat(directory, { bigint: true })
  return createHash("sha256").update(`${dev}:${ino}`).digest("hex")
}

// Linux: an abstract socket.

/** Binds `name`; none if another socket holds it. Unref'd: the lock never keeps the process alive. */
const bind = (name: string) =>
  Effect.async<Option.Option<Server>, Error>((resume) => {
    // Anyone on the host may connect: nothing is served.
    const server = createServer((socket) => socket.destroy())
    const refused = (error: Error) =>
      resume(hasCode(error, "EADDRINUSE") ? Effect.succeed(Option.none()) : Effect.fail(error))
    server.once("error", refused)
    server.listen(name, () => {
      server.off("error", refused)
      // A failed accept (EMFILE) must not crash the process: the name stays bound.
      server.on("error", () => undefined)
      server.unref()
      resume(Effect.succeed(Option.some(server)))
    })
  })

const close = (server: Server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))

/** The pid file, replaced whole (written aside, renamed over), so a reader never sees it half-written. */
const writePid = (file: string) =>
  Effect.tryPromise({
    try: async () => {
      const aside = `${file}.${process.pid}.${randomUUID()}`
      try {
        await writeFile(aside, String(process.pid))
        await rename(aside, file)
      } finally {
        await rm(aside, { force: true })
      }
    },
    catch: toError
  })

/** Exclusive use of a directory for as long as the scope lives. */
type Lock = (directory: string) => Effect.Effect<void, Error, Scope.Scope>

const acquireSocket: Lock = (directory) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const file = join(directory, LOCK_FILE)
      const name = `\0tandem-lock-${yield* Effect.tryPromise({ try: () => identity(directory), catch: toError })}`
      const server = yield* bind(name)
      if (Option.isNone(server)) {
        // Named only if the pid file names a running process: the winner writes it
        // just after binding, so it may still name the previous, dead, owner.
        const owner = yield* Effect.tryPromise({ try: () => readOwner(file), catch: toError })
        return yield* Effect.fail(inUse(
          directory,
          owner._tag === "Pid" && isRunning(owner.pid) ? Option.some(owner.pid) : Option.none()
        ))
      }
      yield* writePid(file).pipe(Effect.tapError(() => close(server.value)))
      return { file, server: server.value }
    }),
    // The pid file first: once the name is free, the next owner writes its own.
    ({ file, server }) => Effect.zipRight(Effect.promise(() => rm(file, { force: true })), close(server))
  ).pipe(Effect.asVoid)

// Elsewhere: the lock file, taken over under a guard.

/** Lock files this process holds or is acquiring (by directory identity): at most one attempt each at a time. */
const claimed = new Set<string>()

/** Creates `file`, complete, holding this pid; false if it exists. */
const createExclusive = async (file: string): Promise<boolean> => {
  const aside = `${file}.${process.pid}.${randomUUID()}`
  await writeFile(aside, String(process.pid), { flag: "wx" })
  try {
    await link(aside, file)
    return true
  } catch (error) {
    if (hasCode(error, "EEXIST")) return false
    throw error
  } finally {
    await rm(aside, { force: true })
  }
}

/**
 * Whether the lock names no running process. Within a claim, a lock naming this
 * very pid is not this process's (it created none): a previous process's that had
 * the same pid (pid 1 in a restarted container).
 */
const isStale = (owner: Owner) =>
  owner._tag === "Unreadable" || (owner._tag === "Pid" && (owner.pid === process.pid || !isRunning(owner.pid)))

const removeStaleGuard = async (guard: string) => {
  const since = await stat(guard).then((s) => Date.now() - s.mtimeMs, () => 0)
  if (since > GUARD_STALE_MS) await rm(guard, { force: true })
}

const lockFile = async (directory: string, file: string): Promise<void> => {
  const guard = `${file}.takeover`
  const deadline = Date.now() + 2 * GUARD_STALE_MS
  while (Date.now() < deadline) {
    if (await createExclusive(file)) return
    const owner = await readOwner(file)
    if (owner._tag === "Missing") continue // released meanwhile
    if (!isStale(owner)) throw inUse(directory, owner._tag === "Pid" ? Option.some(owner.pid) : Option.none())
    if (
      await writeFile(guard, String(process.pid), { flag: "wx" }).then(() => true, (error) => {
        if (hasCode(error, "EEXIST")) return false
        throw error
      })
    ) {
      try {
        // Decided again under the guard: another may have taken over since.
        const again = await readOwner(file)
        if (again._tag !== "Missing" && isStale(again)) await rm(file, { force: true })
      } finally {
        await rm(guard, { force: true })
      }
    } else {
      // Another process is taking over: its lock will be there, or its guard gone, in a moment.
      await removeStaleGuard(guard)
      await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 20))
    }
  }
  throw new Error(`could not lock ${directory}: ${guard} stays`)
}

const acquireFile: Lock = (directory) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const file = join(directory, LOCK_FILE)
        const key = await identity(directory)
        if (claimed.has(key)) throw inUse(directory, Option.some(process.pid))
        claimed.add(key)
        try {
          await lockFile(directory, file)
        } catch (error) {
          claimed.delete(key)
          throw error
        }
        return { file, key }
      },
      catch: toError
    }),
    // The file first, then the claim: until the file is gone, no attempt here may read it.
    ({ file, key }) => Effect.promise(() => rm(file, { force: true }).finally(() => claimed.delete(key)))
  ).pipe(Effect.asVoid)

const hasAbstractSockets = process.platform === "linux" || process.platform === "android"

/**
 * This process's exclusive use of `directory` for as long as the scope lives; fails
 * with "<directory> is in use by another tandem process (pid N)" while another
 * process (or this one) holds it. A holder killed in any way leaves nothing that
 * blocks the next start.
 */
export const acquire: Lock = (directory) => hasAbstractSockets ? acquireSocket(directory) : acquireFile(directory)

/** The two mechanisms, by name, so the tests run the one `acquire` does not pick here too. */
export const mechanisms = { socket: acquireSocket, file: acquireFile } as const
