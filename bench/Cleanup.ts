/**
 * Child processes and the benchmark database must go away even when the run is
 * interrupted (Ctrl-C) or fails: everything started registers how to undo it here.
 */
const pending = new Set<() => Promise<unknown>>()

export const register = (undo: () => Promise<unknown>): () => Promise<void> => {
  pending.add(undo)
  return async () => {
    if (!pending.delete(undo)) return
    await undo()
  }
}

/** Undoes everything still registered, newest first. */
export const all = async (): Promise<void> => {
  for (const undo of [...pending].reverse()) {
    pending.delete(undo)
    await undo().catch((error: unknown) => console.error("bench: cleanup failed:", error))
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`bench: ${signal}, stopping`)
    void all().finally(() => process.exit(130))
  })
}
