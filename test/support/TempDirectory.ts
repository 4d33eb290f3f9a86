import { Effect } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"

/**
 * A fresh directory under the system's temp dir, removed with everything in it when
 * the scope closes. Searchable by others (0755): run as root, the embedded PostgreSQL
 * runs as the user postgres, which must reach a DATA_DIR inside it.
 */
export const make = (prefix: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), `tandem-${prefix}-`))
      await Fs.chmod(dir, 0o755)
      return dir
    }),
    (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
  )
