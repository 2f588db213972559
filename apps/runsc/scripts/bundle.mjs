// Bundles the compiled CLI (dist/main.js) into one minified CommonJS file, dist/runsc.cjs (and the
// fast path into dist/fastPath.cjs), and seeds its V8 code cache (dist/runsc.cjs.cache) by running
// the example guest once.
//
// Why: Node's ESM loader resolves and compiles each of the ~1000 modules of effect and
// @effect/cli one by one, which costs most of a second at every `runsc` start; one minified
// file costs a fraction of that, and with a code cache (which Node 20 offers only to scripts
// compiled through `vm.Script`, hence CommonJS) most of the rest. The guest worker stays a
// separate file of @runsc/kernel.
import { build } from "esbuild"
import { spawnSync } from "node:child_process"
import { rmSync, writeFileSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"

const here = (path) => fileURLToPath(new URL(path, import.meta.url))

// The names `effect`'s index exports from its Function module; every other name an index of
// effect or @effect/* exports is a module of the same name.
const functionNames = new Set(["absurd", "flow", "hole", "identity", "pipe", "unsafeCoerce"])

/**
 * Our code imports Effect's modules as its docs do (`import { Effect, Layer } from "effect"`).
 * Through an index, esbuild keeps the top-level code of every module the index re-exports
 * (effect's FastCheck, platform-node's HTTP client with undici, ...): twice the bundle, and
 * their evaluation at every start. This rewrites each such import of our compiled output into
 * imports of the modules themselves (`import * as Effect from "effect/Effect"`), so only the
 * modules used are bundled.
 */
const deepImports = {
  name: "deep-imports",
  setup(build) {
    build.onLoad({ filter: /[\\/](packages|apps)[\\/][^\\/]+[\\/]dist[\\/].*\.js$/ }, async (args) => {
      const contents = (await readFile(args.path, "utf8")).replace(
        /^import \{([^}]*)\} from "(effect|@effect\/[a-z-]+)";?$/gm,
        (_, names, pkg) =>
          names.split(",").map((n) => n.trim()).filter((n) => n !== "").map((n) =>
            pkg === "effect" && functionNames.has(n) ? `import { ${n} } from "effect/Function";` : `import * as ${n} from "${pkg}/${n}";`
          ).join("\n")
      )
      return { contents, loader: "js" }
    })
  }
}

/**
 * The `ws` package, which @effect/platform-node's socket modules import for their WebSocket
 * variants, replaced by classes that refuse to be made: runsc speaks to its sandboxes over Unix
 * sockets only, and `ws` would load Node's http, https and tls at every start.
 */
const noWebSockets = {
  name: "no-websockets",
  setup(build) {
    build.onResolve({ filter: /^ws$/ }, () => ({ path: "ws", namespace: "no-websockets" }))
    build.onLoad({ filter: /.*/, namespace: "no-websockets" }, () => ({
      contents: [
        "const refuse = () => { throw new Error(\"runsc's CLI bundle has no WebSocket support\") }",
        "export class WebSocket { constructor() { refuse() } }",
        "export class WebSocketServer { constructor() { refuse() } }"
      ].join("\n"),
      loader: "js"
    }))
  }
}

/** One minified CommonJS file for Node 20. */
const oneFile = { bundle: true, platform: "node", target: "node20", format: "cjs", minify: true, legalComments: "none", logLevel: "warning" }

const built = await build({
  ...oneFile,
  entryPoints: [here("../dist/main.js")],
  outfile: here("../dist/runsc.cjs"),
  plugins: [deepImports, noWebSockets],
  // What went into the bundle (dist/runsc.meta.json), for reading with esbuild's analyzer.
  metafile: true,
  // The kernel finds its worker script relative to its own module; in a CommonJS bundle that
  // module is the bundle file.
  define: { "import.meta.url": "__runscModuleUrl" },
  banner: { js: "var __runscModuleUrl = require(\"node:url\").pathToFileURL(__filename).href;" }
})

writeFileSync(here("../dist/runsc.meta.json"), JSON.stringify(built.metafile))

// The fast path (src/fastPath.ts), which the executable loads before anything else: one small
// CommonJS file, as loading it as ES modules would cost more than its work.
await build({ ...oneFile, entryPoints: [here("../dist/fastPath.js")], outfile: here("../dist/fastPath.cjs") })

// A cache made by another build would be rejected anyway; the seeding run writes a fresh one.
rmSync(here("../dist/runsc.cjs.cache"), { force: true })
const seed = spawnSync(
  process.execPath,
  [here("../bin/runsc.cjs"), "do", "--root-dir", here("../../../examples/hello/rootfs"), here("../../../examples/hello/rootfs/bin/hello")],
  { stdio: "ignore", timeout: 60_000 }
)
if (seed.status !== 0) console.warn(`runsc: seeding the code cache exited with ${seed.status}; runsc starts slower until its first run`)
