/**
 * The sandbox process's confinement: it runs under Node's permission model, our analogue of the
 * seccomp filter runsc puts on its sentry. The sentry may read only its own code, the bundle and
 * root filesystem of its root container, the host paths the spec binds in and those the user
 * granted with --allow-read; it may write only the sources of the spec's writable (`rw`) bind
 * mounts, the paths granted with --allow-write, its own control and donation sockets, its exit
 * record, its log files and /dev/null. It may start worker threads (the guests) and load runsc's
 * own gofer addon, never child processes.
 *
 * Containers created in the sandbox later (a pod's) need no grant: their creator opens their
 * host trees and donates the descriptors (@runsc/kernel's donation.ts), and the sandbox serves
 * them from those alone, never from a path.
 *
 * What it does not cover (Node's model, not ours): a symlink inside a granted directory is
 * followed by the OS wherever it points; confinement of guest paths to their mounts stays the
 * file system's job, and this is the second wall behind it. Unix sockets are not checked, which
 * is what lets a confined sandbox connect to the relays through which a CLI lends it its stdio.
 *
 * Addons: Node's only grant for them, `--allow-addons` (which the gofer needs), lets the process
 * load ANY native addon, from any path, its read grants notwithstanding (a `process.dlopen` of a
 * file it may not read succeeds), and an addon's code runs outside the model altogether. That is
 * acceptable because what the sandbox loads is decided by its own code alone: it loads only the
 * gofer it ships (`@runsc/kernel/gofer`, beside its code), and guests cannot load anything —
 * they are wasm modules, with no `require` or `dlopen`, reaching the host only through the
 * syscalls the sentry serves, none of which loads code. The grant matters only to an attacker
 * who already runs JavaScript in the sandbox process, to whom it is a door through this wall
 * (a guest can write a file into an `rw` bind mount, and that file could then be loaded).
 * Stronger would be what Node's model cannot express, its grants being all-or-nothing and fixed
 * at startup: addons allowed only from runsc's own code directory (which guests cannot write),
 * or the right given up once the gofer is loaded.
 */
import { type Bundle, hostTreesOf } from "@runsc/spec"
import { Schema } from "effect"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

/** The host paths a confined sandbox process may read and write (directories grant their trees). */
export const Confinement = Schema.Struct({
  read: Schema.Array(Schema.String),
  write: Schema.Array(Schema.String)
})
export type Confinement = typeof Confinement.Type

export class ConfinementUnavailable extends Schema.TaggedError<ConfinementUnavailable>()("ConfinementUnavailable", {
  node: Schema.String
}) {
  override get message(): string {
    return `Node ${this.node} has no permission model to confine the sandbox with (Node 20 or later has); use --unconfined to run without it`
  }
}

/**
 * Files the sandbox writes in the state root: its control socket (replaced when stale), the
 * socket its sub-containers' host trees are donated on (see `donationSocketOf`), and its exit
 * record.
 */
export interface SandboxFiles {
  readonly socket: string
  readonly donations: string
  readonly exit: ReadonlyArray<string>
}

/** A path and, when symlinks lead elsewhere, where they lead: the model compares path strings. */
const withRealPath = (path: string): ReadonlyArray<string> => {
  try {
    const real = Fs.realpathSync(path)
    return real === path ? [path] : [path, real]
  } catch {
    return [path]
  }
}

/**
 * The runsc code a sandbox loads from files: this CLI's package (its bundle and bin), and the
 * kernel's (its worker scripts, each one self-contained file), wherever the install put them.
 */
const codeDirs = (): ReadonlyArray<string> => {
  // This module's file: in the CLI's bundle, the bundle itself.
  const self = Fs.realpathSync(fileURLToPath(import.meta.url))
  const require = createRequire(self)
  const packageDirOf = (file: string) => {
    let dir = Path.dirname(file)
    while (!Fs.existsSync(Path.join(dir, "package.json")) && Path.dirname(dir) !== dir) dir = Path.dirname(dir)
    return dir
  }
  return [
    packageDirOf(self),
    packageDirOf(require.resolve("@runsc/kernel/worker"))
  ]
}


/** What the sandbox of `bundle` may touch. */
export const confinementOf = (options: {
  readonly bundle: Bundle
  readonly files: SandboxFiles
  readonly logs: ReadonlyArray<string>
  readonly allowRead: ReadonlyArray<string>
  readonly allowWrite: ReadonlyArray<string>
}): Confinement => {
  const { bundle, files } = options
  const trees = hostTreesOf(bundle)
  const read = [
    ...codeDirs(),
    bundle.dir,
    ...trees.map((tree) => tree.path),
    ...options.allowRead.map((p) => Path.resolve(p)),
    files.socket,
    files.donations,
    ...files.exit,
    "/dev/null"
  ]
  const write = [
    ...trees.flatMap((tree) => (tree.writable ? [tree.path] : [])),
    ...options.allowWrite.map((p) => Path.resolve(p)),
    files.socket,
    files.donations,
    ...files.exit,
    ...options.logs,
    "/dev/null"
  ]
  return { read: minimal(read.flatMap(withRealPath)), write: minimal(write.flatMap(withRealPath)) }
}

/**
 * The grants without repeats and without paths a granted directory already covers. Node 20's
 * tree of grants mishandles both: a repeated directory aborts the process, and a directory
 * granted inside another makes the outer one's own entry unreadable.
 */
const minimal = (paths: ReadonlyArray<string>): ReadonlyArray<string> => {
  const unique = [...new Set(paths.map((p) => Path.resolve(p)))].sort()
  const covered = (path: string) => unique.some((other) => other !== path && path.startsWith(`${other}/`) && isDirectory(other))
  return unique.filter((path) => !covered(path))
}

const isDirectory = (path: string): boolean => {
  try {
    return Fs.statSync(path).isDirectory()
  } catch {
    return false
  }
}

/**
 * The paths this process was granted (its `--allow-fs-*` flags) but may not in fact touch: none
 * under a sound permission model. Node 20's tree of grants has been seen to refuse a granted
 * directory's own entry when another grant shares part of its name ("/x/a" beside "/x/abc");
 * the sandbox checks at boot, so that such a refusal is a clear error, not a guest's EACCES later.
 */
export const refusedGrants = (execArgv: ReadonlyArray<string>): ReadonlyArray<string> => {
  const permission = (process as { permission?: { has(scope: string, path: string): boolean } }).permission
  if (permission === undefined) return []
  return execArgv.flatMap((flag) => {
    const grant = /^--allow-fs-(read|write)=(.*)$/.exec(flag)
    return grant !== null && !permission.has(`fs.${grant[1]}`, grant[2]!) ? [grant[2]!] : []
  })
}

export class ConfinementRefused extends Schema.TaggedError<ConfinementRefused>()("ConfinementRefused", {
  paths: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `Node's permission model refuses paths the sandbox was granted: ${this.paths.join(", ")}; use --unconfined, or move the bundle`
  }
}

/**
 * Node's flags for a process under `confinement`: the permission model (`--permission` from
 * Node 22 on, `--experimental-permission` before), worker threads allowed, and its two startup
 * warnings silenced, since the sandbox's stderr is the container's.
 */
export const nodeFlags = (confinement: Confinement): ReadonlyArray<string> | undefined => {
  const supported = process.allowedNodeEnvironmentFlags
  const model = ["--permission", "--experimental-permission"].find((flag) => supported.has(flag))
  if (model === undefined) return undefined
  return [
    model,
    "--allow-worker",
    // The gofer's native core: host files are reached only through it (descriptors, never names).
    // Node grants any addon with it, not only ours (see the header).
    "--allow-addons",
    ...(supported.has("--disable-warning") ? ["--disable-warning=ExperimentalWarning", "--disable-warning=SecurityWarning"] : []),
    // One flag per path: Node 20.20 reads a comma in the value as part of the path.
    ...confinement.read.map((path) => `--allow-fs-read=${path}`),
    ...confinement.write.map((path) => `--allow-fs-write=${path}`)
  ]
}
