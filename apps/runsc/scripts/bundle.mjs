// Bundles the compiled CLI (dist/main.js) into one minified CommonJS file, dist/runsc.cjs, and
// seeds its V8 code cache (dist/runsc.cjs.cache) by running the example guest once.
//
// Why: Node's ESM loader resolves and compiles each of the ~1000 modules of effect and
// @effect/cli one by one, which costs most of a second at every `runsc` start; one minified
// file costs a fraction of that, and with a code cache (which Node 20 offers only to scripts
// compiled through `vm.Script`, hence CommonJS) most of the rest. The guest worker stays a
// separate file of @runsc/kernel.
import { build } from "esbuild"
import { spawnSync } from "node:child_process"
import { rmSync } from "node:fs"
import { fileURLToPath } from "node:url"

const here = (path) => fileURLToPath(new URL(path, import.meta.url))

await build({
  entryPoints: [here("../dist/main.js")],
  outfile: here("../dist/runsc.cjs"),
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
  // The kernel finds its worker script relative to its own module; in a CommonJS bundle that
  // module is the bundle file.
  define: { "import.meta.url": "__runscModuleUrl" },
  banner: { js: "var __runscModuleUrl = require(\"node:url\").pathToFileURL(__filename).href;" }
})

// A cache made by another build would be rejected anyway; the seeding run writes a fresh one.
rmSync(here("../dist/runsc.cjs.cache"), { force: true })
const seed = spawnSync(
  process.execPath,
  [here("../bin/runsc.js"), "do", "--root-dir", here("../../../examples/hello/rootfs"), here("../../../examples/hello/rootfs/bin/hello")],
  { stdio: "ignore", timeout: 60_000 }
)
if (seed.status !== 0) console.warn(`runsc: seeding the code cache exited with ${seed.status}; runsc starts slower until its first run`)
