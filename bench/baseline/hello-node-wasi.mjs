// Cold-start baseline for the benchmark suite: runs a WASI preview1 module under node:wasi with a
// preopen of a host directory as "/", the way `runsc do --root-dir ROOT PROGRAM` runs it, but with
// no sandbox (no worker, no sentry, no CLI framework).
//
//   node bench/baseline/hello-node-wasi.mjs ROOT PROGRAM [ARGS...]
import { readFile } from "node:fs/promises"
import { WASI } from "node:wasi"

const [root, program, ...args] = process.argv.slice(2)
if (root === undefined || program === undefined) {
  process.stderr.write("usage: hello-node-wasi.mjs ROOT PROGRAM [ARGS...]\n")
  process.exit(2)
}
const wasi = new WASI({
  version: "preview1",
  args: [program, ...args],
  // What `runsc do` gives the guest: PATH, TERM and HOME (from the root's /etc/passwd).
  env: { PATH: "/usr/local/bin:/usr/bin:/bin", TERM: process.env.TERM ?? "xterm", HOME: "/root" },
  preopens: { "/": root },
  returnOnExit: true
})
const module = await WebAssembly.compile(await readFile(program))
const instance = await WebAssembly.instantiate(module, wasi.getImportObject())
process.exitCode = wasi.start(instance)
