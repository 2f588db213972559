import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url))

// Tests run against the TypeScript sources of every workspace package (one module graph, so
// `instanceof` on tagged errors holds); worker threads load the compiled `dist/` output (the
// worker as one bundled file), which `pnpm test` builds first.
export default defineConfig({
  resolve: {
    alias: {
      "@runsc/abi": src("abi"),
      "@runsc/spec": src("spec"),
      "@runsc/kernel": src("kernel"),
      "@runsc/netstack": src("netstack"),
      "@runsc/loader": src("loader"),
      "@runsc/control": src("control")
    }
  },
  test: {
    // CI asks for a JSON report too (RUNSC_TEST_REPORT=file), to print a plain summary line.
    ...(process.env["RUNSC_TEST_REPORT"]
      ? { reporters: ["default", "json"], outputFile: { json: process.env["RUNSC_TEST_REPORT"] } }
      : {}),
    include: ["packages/*/test/**/*.test.ts", "apps/*/test/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
