import * as Os from "node:os"
import * as Path from "node:path"
import { effectFloorServer, floorServer, tandemMain, tandemMemoryServer } from "./Paths.js"
import type { ServerSpec } from "./ServerProcess.js"
import type { Database, S3Server } from "./SharedServers.js"

export type Stack = "full" | "memory"
/**
 * tandem; the floor (node:http, no framework); the Effect floor: the floor's work
 * served by @effect/platform, tandem's framework, to show what the framework alone costs.
 */
export type Side = "tandem" | "floor" | "effect-floor"

export const sides: ReadonlyArray<Side> = ["tandem", "floor", "effect-floor"]

export const stackTitle: Record<Stack, string> = {
  full: "Full stack (PostgreSQL + s3rver)",
  memory: "In memory"
}

export interface Shared {
  readonly s3: S3Server
  readonly database: Database
}

/** tandem's own settings for every run: no reconciler passes, no per-request logs. */
const quiet = {
  LOG_LEVEL: "Warning",
  RECONCILE_INTERVAL_SECONDS: "0",
  // Unused with DATABASE_URL and S3_BUCKET set, or in memory; keeps ./data out of it.
  DATA_DIR: Path.join(Os.tmpdir(), "tandem-bench-data")
}

const storesEnv = (shared: Shared) => ({
  DATABASE_URL: shared.database.url,
  S3_BUCKET: shared.s3.bucket,
  S3_ENDPOINT: shared.s3.endpoint,
  S3_FORCE_PATH_STYLE: "true",
  S3_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: "S3RVER",
  AWS_SECRET_ACCESS_KEY: "S3RVER"
})

const floorScript = { floor: floorServer, "effect-floor": effectFloorServer }

/** How to start one contender; `extra` adds to (or overrides) its environment. */
export const spec = (
  stack: Stack,
  side: Side,
  shared: Shared | undefined,
  extra: Readonly<Record<string, string>> = {}
): ServerSpec => {
  if (stack === "full") {
    if (shared === undefined) throw new Error("the full stack needs PostgreSQL and s3rver")
    return side === "tandem"
      ? { script: tandemMain, env: { ...quiet, ...storesEnv(shared), ...extra } }
      : { script: floorScript[side], env: { ...storesEnv(shared), FLOOR_STORE: "s3", ...extra } }
  }
  return side === "tandem"
    ? { script: tandemMemoryServer, env: { ...quiet, ...extra } }
    : { script: floorScript[side], env: { FLOOR_STORE: "memory", ...extra } }
}
