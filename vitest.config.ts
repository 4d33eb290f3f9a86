import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The crash suite runs on its own: npm run test:crash (vitest.crash.config.ts).
    exclude: [...configDefaults.exclude, "test/crash/**"],
    globalSetup: ["test/globalSetup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
