import { Effect } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"

/** A fresh directory under the system's temp dir, removed with everything in it when the scope closes. */
export const make = (prefix: string) =>
  Effect.acquireRelease(
    Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), `tandem-${prefix}-`))),
    (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
  )
