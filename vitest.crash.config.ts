import { defineConfig } from "vitest/config"

/**
 * The crash suite (`npm run test:crash`, which builds dist/ first): the built server
 * killed and restarted under load, then the guarantees checked against PostgreSQL
 * and the bucket. Long-running, so `npm test` leaves it out.
 */
export default defineConfig({
  test: {
    include: ["test/crash/**/*.test.ts"],
    testTimeout: 290_000,
    hookTimeout: 120_000,
    // One scenario at a time: each one loads the machine on purpose.
    fileParallelism: false
  }
})
