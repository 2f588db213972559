/** Where things are, relative to this compiled file (bench/dist/paths.js). */
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

export const repoRoot = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "..")
export const benchDir = Path.join(repoRoot, "bench")
export const fixture = (name: string): string => Path.join(repoRoot, "test", "fixtures", "c", `${name}.wasm`)
export const fixturesDir = Path.join(repoRoot, "test", "fixtures", "c")
export const helloRoot = Path.join(repoRoot, "examples", "hello", "rootfs")
/** Relative to the repo root, as a user would type it (the guest sees it as argv[0]). */
export const helloProgramRel = "examples/hello/rootfs/bin/hello"
export const helloRootRel = "examples/hello/rootfs"
export const runscBin = Path.join(repoRoot, "node_modules", ".bin", "runsc")
export const runscApp = Path.join(repoRoot, "apps", "runsc")
export const helloNodeWasi = Path.join(benchDir, "baseline", "hello-node-wasi.mjs")
export const cliProbe = Path.join(benchDir, "dist", "cliProbe.js")
