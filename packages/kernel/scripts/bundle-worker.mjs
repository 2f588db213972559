// Bundles the guest worker's entry (dist/platform/worker.js and what it imports: the channel,
// @runsc/abi) into one file, dist/platform/worker.bundle.js, which is what `@runsc/kernel/worker`
// names. Why: every worker thread is its own V8 isolate, and each module it loads costs memory
// there; one file instead of a graph of ES modules saves about 0.4 MB per worker, that is per
// guest process.
import { build } from "esbuild"
import { fileURLToPath } from "node:url"

const here = (path) => fileURLToPath(new URL(path, import.meta.url))

await build({
  entryPoints: [here("../dist/platform/worker.js")],
  outfile: here("../dist/platform/worker.bundle.js"),
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  minify: true,
  legalComments: "none",
  logLevel: "warning"
})
