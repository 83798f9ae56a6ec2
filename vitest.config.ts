import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // E2E files each spawn real CLI processes; two cores, so keep files parallel but bounded.
    maxWorkers: 2,
    minWorkers: 1
  }
})
