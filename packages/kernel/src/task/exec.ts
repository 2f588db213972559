/**
 * Finding and loading what a process runs, as execve does: `argv[0]` searched on the
 * container's PATH (or taken as a path when it has a slash), the file's first bytes deciding
 * how it runs — `\0asm` is a WebAssembly module, `#!` names an interpreter (itself found and
 * loaded the same way), anything else is refused as not a WebAssembly module.
 */
import { Errno, FileType } from "@runsc/abi"
import { Effect } from "effect"
import { ExecNotFound, NotWasm, type SyscallError } from "../errors.js"
import type { ContentCache } from "../fs/contentCache.js"
import type { FileDescription } from "../fs/inode.js"
import { type Dentry, resolve } from "../fs/resolve.js"
import { concatBytes } from "../fs/byteChunks.js"

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d]
/** Linux reads at most this much of a script's `#!` line. */
const SHEBANG_LIMIT = 256
/** How many `#!` interpreters may chain (Linux allows 4 levels of binfmt recursion). */
const MAX_INTERPRETER_DEPTH = 4

export interface Executable {
  /** The path the module was loaded from, inside the container. */
  readonly path: string
  readonly argv: ReadonlyArray<string>
  readonly bytes: Uint8Array
}

const notFound = (name: string, error: SyscallError) =>
  new ExecNotFound({ name, reason: describe(error), errno: error.errno })

const describe = (error: SyscallError): string =>
  error.errno === Errno.NOENT ? "no such file or directory"
  : error.errno === Errno.NOTDIR ? "not a directory"
  : error.errno === Errno.LOOP ? "too many levels of symbolic links"
  : error.errno === Errno.ACCES ? "permission denied"
  : error.message

const isExecutableFile = (dentry: Dentry) => {
  if (dentry.inode.filetype !== FileType.REGULAR_FILE) return Effect.succeed(false)
  // The lookup that just found the file saw its mode: no second host call for it.
  const seen = dentry.inode.lookupStat
  return seen !== undefined ? Effect.succeed((seen.mode & 0o111) !== 0) : Effect.map(dentry.inode.stat, (st) => (st.mode & 0o111) !== 0)
}

/** Resolves a command name the way execvp does. */
export const findExecutable = (
  root: Dentry,
  cwd: Dentry,
  name: string,
  searchPath: string | undefined
): Effect.Effect<Dentry, ExecNotFound> =>
  Effect.gen(function*() {
    if (name.length === 0) return yield* new ExecNotFound({ name, reason: "empty command", errno: Errno.NOENT })
    if (name.includes("/")) {
      const dentry = yield* resolve(root, cwd, name, { followFinal: true }).pipe(
        Effect.mapError((e) => notFound(name, e))
      )
      if (dentry.inode.filetype === FileType.DIRECTORY) {
        return yield* new ExecNotFound({ name, reason: "is a directory", errno: Errno.ACCES })
      }
      if (!(yield* isExecutableFile(dentry).pipe(Effect.orElseSucceed(() => false)))) {
        return yield* new ExecNotFound({ name, reason: "permission denied", errno: Errno.ACCES })
      }
      return dentry
    }
    // Directories and non-executable files found by a bare name are skipped, as execvp does.
    for (const dir of (searchPath ?? "").split(":")) {
      const candidate = `${dir.length === 0 ? "." : dir}/${name}`
      const found = yield* Effect.option(resolve(root, cwd, candidate, { followFinal: true }))
      if (found._tag === "Some" && (yield* isExecutableFile(found.value).pipe(Effect.orElseSucceed(() => false)))) {
        return found.value
      }
    }
    return yield* new ExecNotFound({ name, reason: "executable file not found in $PATH", errno: Errno.NOENT })
  })

/** Reads a whole file through its description, then closes it. */
export const readAll = (open: Effect.Effect<FileDescription, SyscallError>): Effect.Effect<Uint8Array, SyscallError> =>
  Effect.acquireUseRelease(
    open,
    (file) =>
      Effect.gen(function*() {
        const chunks: Array<Uint8Array> = []
        let total = 0
        for (;;) {
          const chunk = yield* file.read(1 << 20)
          if (chunk.length === 0) break
          chunks.push(chunk)
          total += chunk.length
        }
        return concatBytes(chunks, total)
      }),
    (file) => file.close
  )

const isWasm = (bytes: Uint8Array) => WASM_MAGIC.every((b, i) => bytes[i] === b)

/** Parses `#!interpreter [one argument]` from the start of a script. */
const parseShebang = (bytes: Uint8Array): { interpreter: string; arg?: string } | undefined => {
  if (bytes[0] !== 0x23 || bytes[1] !== 0x21) return undefined
  const head = new TextDecoder().decode(bytes.subarray(2, SHEBANG_LIMIT))
  const line = head.split("\n")[0]!.trim()
  const space = line.search(/[ \t]/)
  if (line.length === 0) return undefined
  if (space < 0) return { interpreter: line }
  const arg = line.slice(space + 1).trim()
  return arg.length > 0 ? { interpreter: line.slice(0, space), arg } : { interpreter: line.slice(0, space) }
}

/**
 * What runs for a file's bytes, as execve decides it: a WebAssembly module runs as is; a
 * `#!` script runs its interpreter (found as a path inside the container, and decided the same
 * way) with argv `[interpreter, arg?, path, ...argv[1..]]`; anything else is not runnable.
 */
export const programFromBytes = (
  root: Dentry,
  cwd: Dentry,
  path: string,
  bytes: Uint8Array,
  argv: ReadonlyArray<string>,
  files?: ContentCache
): Effect.Effect<Executable, ExecNotFound | NotWasm> =>
  Effect.gen(function*() {
    let current = { path, bytes, argv }
    for (let depth = 0;; depth++) {
      if (isWasm(current.bytes)) return current
      const shebang = parseShebang(current.bytes)
      if (shebang === undefined || depth >= MAX_INTERPRETER_DEPTH) return yield* new NotWasm({ path: current.path })
      // The interpreter is a path (no PATH search), as the kernel's binfmt_script does.
      const interpreter = shebang.interpreter
      const dentry = yield* findExecutable(root, cwd, interpreter.includes("/") ? interpreter : `./${interpreter}`, undefined)
      current = {
        path: dentry.path,
        bytes: yield* readProgram(dentry, interpreter, files),
        argv: [interpreter, ...(shebang.arg !== undefined ? [shebang.arg] : []), current.path, ...current.argv.slice(1)]
      }
    }
  })

/** A whole file of the container, through `files` when given (programs, /etc/passwd). */
export const readFile = (dentry: Dentry, files?: ContentCache): Effect.Effect<Uint8Array, SyscallError> => {
  // Suspended: a host inode opens when asked (sync-first), and a cache hit never runs `read`,
  // so an eager open would leave a host fd behind at every hit.
  const read = readAll(Effect.suspend(() => dentry.inode.open({ read: true, write: false, transient: true })))
  return files ? files.read(dentry.inode, read) : read
}

export const readProgram = (dentry: Dentry, name: string, files?: ContentCache) =>
  readFile(dentry, files).pipe(Effect.mapError((e) => notFound(name, e)))

/**
 * Loads the program for `argv` (argv[0] searched on PATH when it has no slash). The returned
 * argv is what the guest sees.
 */
export const loadExecutable = (
  root: Dentry,
  cwd: Dentry,
  argv: ReadonlyArray<string>,
  searchPath: string | undefined,
  files?: ContentCache
): Effect.Effect<Executable, ExecNotFound | NotWasm> =>
  Effect.gen(function*() {
    const name = argv[0] ?? ""
    const dentry = yield* findExecutable(root, cwd, name, searchPath)
    return yield* programFromBytes(root, cwd, dentry.path, yield* readProgram(dentry, name, files), argv, files)
  })
