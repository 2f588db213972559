// Bundles the compiled CLI (dist/main.js) into one minified file, dist/runsc.mjs.
//
// Why: Node's ESM loader resolves and compiles each of the ~1000 modules of effect and
// @effect/cli one by one, which costs most of a second at every `runsc` start; one minified
// file costs a fraction of that. The guest worker stays a separate file of @runsc/kernel.
import { build } from "esbuild"
import { fileURLToPath } from "node:url"

const here = (path) => fileURLToPath(new URL(path, import.meta.url))

await build({
  entryPoints: [here("../dist/main.js")],
  outfile: here("../dist/runsc.mjs"),
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
  // Some CommonJS dependencies call require(); give the ESM bundle one.
  banner: { js: "import { createRequire as __runscCreateRequire } from \"node:module\"; const require = __runscCreateRequire(import.meta.url);" }
})
