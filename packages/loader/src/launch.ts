/**
 * Starting one process in a container, as runsc's loader does for an init or an exec: the
 * program found inside the container's root (or taken from the host for `runsc do`), HOME from
 * the container's /etc/passwd when unset, duplicate env keys resolved last-wins, stdio from host
 * fds (a terminal when asked for), procfs where the spec mounts it.
 */
import {
  type ContentCache,
  Dentry,
  type ExecNotFound,
  type FileDescription,
  hostRoot,
  hostStream,
  type InvalidModule,
  type KernelShape,
  loadExecutable,
  makeTerminal,
  type NotWasm,
  type PidNamespace,
  programFromBytes,
  readFile,
  resolve,
  type SyntheticMount,
  type ThreadGroup
} from "@runsc/kernel"
import { getEnv, resolveEnv, type Spec } from "@runsc/spec"
import { Effect } from "effect"
import * as FsP from "node:fs/promises"
import * as Path from "node:path"
import { InvalidCwd, InvalidRoot, ProgramNotReadable } from "./errors.js"

/**
 * What a process gets as its fds 0, 1, 2: a host fd (default: this process's own), or an end
 * of a pipe inside the sandbox (`LoaderShape.pipe`).
 */
export interface Stdio {
  readonly stdin?: number | FileDescription
  readonly stdout?: number | FileDescription
  readonly stderr?: number | FileDescription
}

const stdioDescription = (given: number | FileDescription | undefined, hostFd: number): FileDescription =>
  typeof given === "object" ? given : hostStream(given ?? hostFd)

export type LaunchError = InvalidCwd | ExecNotFound | NotWasm | InvalidModule | ProgramNotReadable

const DEFAULT_HOME = "/"

/** HOME for `uid` from the container's /etc/passwd, or "/" when it has none. */
const homeFromPasswd = (root: Dentry, uid: number, files: ContentCache) =>
  Effect.gen(function*() {
    const passwd = yield* resolve(root, root, "/etc/passwd", { followFinal: true })
    const text = new TextDecoder().decode(yield* readFile(passwd, files))
    for (const line of text.split("\n")) {
      const fields = line.split(":")
      if (fields.length >= 7 && Number(fields[2]) === uid && fields[5]!.length > 0) return fields[5]!
    }
    return DEFAULT_HOME
  }).pipe(Effect.orElseSucceed(() => DEFAULT_HOME))

/** The container's root filesystem. */
export const openRoot = (rootPath: string): Effect.Effect<Dentry, InvalidRoot> =>
  hostRoot(rootPath).pipe(
    Effect.map((inode) => Dentry.root(inode)),
    Effect.mapError((e) => new InvalidRoot({ path: rootPath, reason: e.message }))
  )

/**
 * The filesystems the sentry makes up, where the spec mounts them: procfs at its mounts of type
 * "proc", devfs where it mounts a tmpfs or devtmpfs at /dev (the devices a runtime puts there).
 * Other mount types are not built yet.
 */
export const syntheticMountsOf = (spec: Spec): ReadonlyArray<SyntheticMount> =>
  (spec.mounts ?? []).flatMap((m): ReadonlyArray<SyntheticMount> => {
    const path = Path.posix.normalize(m.destination).replace(/(.)\/$/, "$1")
    if (m.type === "proc") return [{ path, fs: "proc" }]
    if (path === "/dev" && (m.type === "tmpfs" || m.type === "devtmpfs")) return [{ path, fs: "dev" }]
    return []
  })

export interface LaunchArgs {
  readonly containerId: string
  readonly root: Dentry
  readonly argv: ReadonlyArray<string>
  readonly env: ReadonlyArray<string>
  readonly cwd: string
  readonly uid: number
  readonly stdio: Stdio
  readonly syntheticMounts: ReadonlyArray<SyntheticMount>
  readonly pidNamespace: PidNamespace<ThreadGroup>
  /** Run this host file instead of resolving argv[0] inside the container (`runsc do`). */
  readonly hostProgram?: string | undefined
  /** Fill HOME from /etc/passwd when unset (default true). */
  readonly homeFromPasswd?: boolean | undefined
  /** The stdio fds are a terminal the process's session controls (job control). */
  readonly terminal?: boolean | undefined
}

export const launch = (kernel: KernelShape, args: LaunchArgs): Effect.Effect<ThreadGroup, LaunchError> =>
  Effect.gen(function*() {
    const { root } = args
    const cwd = yield* resolve(root, root, args.cwd, { followFinal: true }).pipe(
      Effect.mapError((e) => new InvalidCwd({ cwd: args.cwd, reason: e.message }))
    )
    let env = resolveEnv(args.env)
    if (getEnv(env, "HOME") === undefined && (args.homeFromPasswd ?? true)) {
      env = [...env, `HOME=${yield* homeFromPasswd(root, args.uid, kernel.files)}`]
    }
    const hostProgram = args.hostProgram
    const program = hostProgram !== undefined
      ? yield* programFromBytes(
        root,
        cwd,
        hostProgram,
        yield* Effect.tryPromise({
          try: () => FsP.readFile(hostProgram),
          catch: (e) => new ProgramNotReadable({ path: hostProgram, reason: (e as Error).message })
        }),
        args.argv,
        kernel.files
      )
      : yield* loadExecutable(root, cwd, args.argv, getEnv(env, "PATH"), kernel.files)
    const stdio = [
      stdioDescription(args.stdio.stdin, 0),
      stdioDescription(args.stdio.stdout, 1),
      stdioDescription(args.stdio.stderr, 2)
    ]
    const terminal = args.terminal ? makeTerminal(stdio) : undefined
    return yield* kernel.startProcess({
      containerId: args.containerId,
      argv: program.argv,
      env,
      root,
      cwd,
      programPath: program.path,
      programBytes: program.bytes,
      stdio: terminal?.stdio ?? stdio,
      ...(terminal ? { terminal: terminal.control } : {}),
      syntheticMounts: args.syntheticMounts,
      pidNamespace: args.pidNamespace,
      uid: args.uid
    })
  })
