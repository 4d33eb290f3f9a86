import { Effect } from "effect"
import { readFile, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"

const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it runs, as another user.
    return typeof error === "object" && error !== null && "code" in error && error.code === "EPERM"
  }
}

const hasCode = (error: unknown, code: string) =>
  typeof error === "object" && error !== null && "code" in error && error.code === code

/**
 * This process's exclusive use of a directory: a `tandem.lock` file holding its
 * pid, created only if absent. A lock whose process no longer runs (a crash, a
 * SIGKILL) is taken over. Removed when the scope closes.
 */
export const acquire = (directory: string) =>
  Effect.acquireRelease(
    Effect.tryPromise(async () => {
      const file = join(directory, "tandem.lock")
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await writeFile(file, String(process.pid), { flag: "wx" })
          return file
        } catch (error) {
          if (!hasCode(error, "EEXIST")) throw error
          const owner = Number((await readFile(file, "utf8").catch(() => "")).trim())
          if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isRunning(owner)) {
            throw new Error(`${directory} is in use by another tandem process (pid ${owner})`)
          }
          await rm(file, { force: true })
        }
      }
      throw new Error(`could not lock ${directory}`)
    }),
    (file) => Effect.promise(() => rm(file, { force: true }))
  )
