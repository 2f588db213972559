// Bundles the guest worker's entry (dist/platform/worker.js and what it imports: the channel,
// @runsc/abi) into one file, dist/platform/worker.bundle.js, which is what `@runsc/kernel/worker`
// names. Why: every worker thread is its own V8 isolate, and each module it loads costs memory
// there; one file instead of a graph of ES modules saves about 0.4 MB per worker, that is per
// guest process.
import { build } from "esbuild"
import { fileURLToPath } from "node:url"

const here = (path) => fileURLToPath(new URL(path, import.meta.url))

const bundle = (entry, out) =>
  build({
    entryPoints: [here(entry)],
    outfile: here(out),
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    minify: true,
    legalComments: "none",
    logLevel: "warning"
  })

await bundle("../dist/platform/worker.js", "../dist/platform/worker.bundle.js")
// The instrumentation thread (platform/instrumenterThread.ts), for the same reason.
await bundle("../dist/platform/instrumenterThread.js", "../dist/platform/instrumenter.bundle.js")
