import { join } from "node:path"
import { fileURLToPath } from "node:url"

/** This file runs compiled as dist/bench/bench/Paths.js; everything else is found from the repository root. */
export const compiledBenchDir = fileURLToPath(new URL("./", import.meta.url))
export const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
export const resultsDir = join(repoRoot, "bench", "results")
export const profilesDir = join(resultsDir, "profiles")
export const benchmarksFile = join(repoRoot, "BENCHMARKS.md")

/** The server exactly as `npm start` runs it: the esbuild bundle. */
export const tandemMain = join(repoRoot, "dist", "bin", "serve.js")
/**
 * The same server as tsc compiled it, a module per source file: for CPU profiles,
 * which attribute time by file (in the bundle, tandem and its libraries share chunks).
 */
export const tandemUnbundled = join(repoRoot, "dist", "main", "serve.js")
export const tandemMemoryServer = join(compiledBenchDir, "memory-server.js")
export const floorServer = join(compiledBenchDir, "floor-server.js")
export const effectFloorServer = join(compiledBenchDir, "effect-floor-server.js")
/** The same s3rver child the tests start (test/support/S3TestServer.ts). */
export const s3rverScript = join(repoRoot, "test", "support", "s3rver-process.cjs")
