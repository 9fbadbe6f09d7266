import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Interop tests spawn real tools and scrypt KDFs; two cores, so keep parallelism modest.
    maxWorkers: 2,
  },
});
