import * as Os from "node:os"
import * as Path from "node:path"
import { effectFloorServer, floorServer, tandemMain, tandemMemoryServer } from "./Paths.js"
import type { ServerSpec } from "./ServerProcess.js"
import type { Database, S3Server } from "./SharedServers.js"

/**
 * full: PostgreSQL + s3rver; memory: every store in memory; embedded: tandem's
 * embedded default (no DATABASE_URL, no S3_BUCKET) beside tandem on PostgreSQL +
 * the local-disk store, with start-up time and memory.
 */
export type Stack = "full" | "memory" | "embedded"

export const stacks: ReadonlyArray<Stack> = ["full", "memory", "embedded"]

/**
 * tandem; the protocol floor (the floor plus the least tandem's guarantees cost: a
 * UTF-8 check, a pending intent, a commit transaction); the floor (node:http, no
 * framework); the Effect floor: the floor's work served by @effect/platform,
 * tandem's framework, to show what the framework alone costs. In the embedded
 * stack: tandem's embedded default and tandem on PostgreSQL + local disk.
 */
export type Side = "tandem" | "protocol-floor" | "floor" | "effect-floor" | "embedded" | "pg-disk"

/** Who runs in each stack, in the order they take turns; the first is the one measured against the second. */
export const sidesOf: Record<Stack, ReadonlyArray<Side>> = {
  full: ["tandem", "protocol-floor", "floor", "effect-floor"],
  memory: ["tandem", "protocol-floor", "floor", "effect-floor"],
  embedded: ["embedded", "pg-disk"]
}

export const sides: ReadonlyArray<Side> = ["tandem", "protocol-floor", "floor", "effect-floor", "embedded", "pg-disk"]

export const sideTitle: Record<Side, string> = {
  tandem: "tandem",
  "protocol-floor": "protocol floor",
  floor: "floor",
  "effect-floor": "Effect floor",
  embedded: "tandem, embedded default",
  "pg-disk": "tandem, PostgreSQL + local disk"
}

export const stackTitle: Record<Stack, string> = {
  full: "Full stack (PostgreSQL + s3rver)",
  memory: "In memory",
  embedded: "Embedded default, beside PostgreSQL + local disk"
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

const databaseEnv = (shared: Shared) => ({ DATABASE_URL: shared.database.url, DATABASE_POOL_SIZE: "10" })

const storesEnv = (shared: Shared) => ({
  ...databaseEnv(shared),
  S3_BUCKET: shared.s3.bucket,
  S3_ENDPOINT: shared.s3.endpoint,
  S3_FORCE_PATH_STYLE: "true",
  S3_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: "S3RVER",
  AWS_SECRET_ACCESS_KEY: "S3RVER"
})

const floors = {
  floor: { script: floorServer, env: {} },
  "protocol-floor": { script: floorServer, env: { FLOOR_PROTOCOL: "true" } },
  "effect-floor": { script: effectFloorServer, env: {} }
}

const needShared = (shared: Shared | undefined, stack: Stack): Shared => {
  if (shared === undefined) throw new Error(`the ${stack} stack needs PostgreSQL and s3rver`)
  return shared
}

/**
 * How to start one contender; `extra` adds to (or overrides) its environment. The
 * embedded stack's contenders need their DATA_DIR in `extra`.
 */
export const spec = (
  stack: Stack,
  side: Side,
  shared: Shared | undefined,
  extra: Readonly<Record<string, string>> = {}
): ServerSpec => {
  switch (side) {
    case "tandem":
      return stack === "memory"
        ? { script: tandemMemoryServer, env: { ...quiet, ...extra } }
        : { script: tandemMain, env: { ...quiet, ...storesEnv(needShared(shared, stack)), ...extra } }
    case "embedded":
      // The default as `npm start` runs it: neither DATABASE_URL nor S3_BUCKET.
      return { script: tandemMain, env: { ...quiet, ...extra } }
    case "pg-disk":
      return { script: tandemMain, env: { ...quiet, ...databaseEnv(needShared(shared, stack)), ...extra } }
    default: {
      const floor = floors[side]
      return stack === "memory"
        ? { script: floor.script, env: { ...floor.env, FLOOR_STORE: "memory", ...extra } }
        : {
          script: floor.script,
          env: { ...storesEnv(needShared(shared, stack)), ...floor.env, FLOOR_STORE: "s3", ...extra }
        }
    }
  }
}
