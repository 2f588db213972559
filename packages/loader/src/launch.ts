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
  type Executable,
  type FileDescription,
  hostStream,
  type InvalidModule,
  type KernelShape,
  loadExecutable,
  makeTerminal,
  NotWasm,
  type ProcessCreationRefused,
  type SandboxOutOfMemory,
  type PidNamespace,
  programFromBytes,
  readFile,
  resolve,
  type SyntheticMount,
  type TaskSet,
  type ThreadGroup
} from "@runsc/kernel"
import { getEnv, resolveEnv, type Spec } from "@runsc/spec"
import { Effect, type Scope } from "effect"
import * as Fs from "node:fs"
import * as FsP from "node:fs/promises"
import * as Path from "node:path"
import { InvalidCwd, ProgramNotReadable } from "./errors.js"

/**
 * What a process gets as its fds 0, 1, 2: a host fd (default: this process's own), or an end
 * of a pipe inside the sandbox (`LoaderShape.pipe`).
 */
export interface Stdio {
  readonly stdin?: number | FileDescription
  readonly stdout?: number | FileDescription
  readonly stderr?: number | FileDescription
  /**
   * More open files the process starts with (runc's --preserve-fds), as its fds 4, 5, …: fd 3
   * is its root preopen, which WASI guests look for first and stop looking past a gap.
   */
  readonly preserved?: ReadonlyArray<number | FileDescription>
}

/** A description given as is, or one made here over a host fd (recorded in `made`: the start's to close if it fails). */
const stdioDescription = (given: number | FileDescription | undefined, hostFd: number, made: Array<FileDescription>): FileDescription => {
  if (typeof given === "object") return given
  const description = hostStream(given ?? hostFd)
  made.push(description)
  return description
}

export type LaunchError = InvalidCwd | ExecNotFound | NotWasm | InvalidModule | ProgramNotReadable | SandboxOutOfMemory

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

/** The soft RLIMIT_NOFILE the spec gives its process, if any: its fds stay below it (EMFILE). */
export const maxFdsOf = (process: NonNullable<Spec["process"]>): number | undefined =>
  process.rlimits?.find((r) => r.type === "RLIMIT_NOFILE")?.soft

/** A host file run as a container's program (`runsc do`), and the name the guest knows it by. */
export interface HostProgram {
  readonly hostPath: string
  /** Its argv[0]: see `guestPathOf`. */
  readonly guestPath: string
}

/**
 * Where the guest can see the host file `hostPath`: its path inside the container when it lies
 * in the root directory `rootPath` and no mount hides it, else its bare file name (no path in
 * the container leads to it, and the host's path is none of the guest's business).
 */
export const guestPathOf = (hostPath: string, rootPath: string, mountPoints: ReadonlyArray<string>): string => {
  const name = Path.basename(hostPath)
  let relative: string
  try {
    relative = Path.relative(Fs.realpathSync(rootPath), Fs.realpathSync(hostPath))
  } catch {
    return name
  }
  if (relative === "" || relative === ".." || relative.startsWith(`..${Path.sep}`) || Path.isAbsolute(relative)) return name
  const inside = `/${relative.split(Path.sep).join("/")}`
  return mountPoints.some((m) => m === "/" || inside === m || inside.startsWith(`${m}/`)) ? name : inside
}

export interface LaunchArgs {
  readonly root: Dentry
  readonly argv: ReadonlyArray<string>
  readonly env: ReadonlyArray<string>
  readonly cwd: string
  readonly uid: number
  readonly stdio: Stdio
  readonly syntheticMounts: ReadonlyArray<SyntheticMount>
  /** The process's RLIMIT_NOFILE (see `maxFdsOf`). */
  readonly maxFds?: number | undefined
  readonly pidNamespace: PidNamespace<ThreadGroup>
  /** Run this host file instead of resolving argv[0] inside the container (`runsc do`); argv[0] becomes its guest path. */
  readonly hostProgram?: HostProgram | undefined
  /** Fill HOME from /etc/passwd when unset (default true). */
  readonly homeFromPasswd?: boolean | undefined
  /** The stdio fds are a terminal the process's session controls (job control). */
  readonly terminal?: boolean | undefined
  /** The processes of the container, which the process joins (see TaskSet). */
  readonly tasks: TaskSet
}

/** A process ready to start: its program found, read and compiled (held until the scope closes), its cwd and env. */
export interface PreparedLaunch {
  readonly args: LaunchArgs
  readonly cwd: Dentry
  readonly env: ReadonlyArray<string>
  readonly program: Executable
}

/**
 * What precedes a start and takes time, none of which changes the sandbox: the working
 * directory, HOME, the program found and read, and its module compiled into the kernel's cache,
 * held there until the scope closes, so that the start (`startPrepared`) finds it compiled.
 */
export const prepareLaunch = (kernel: KernelShape, args: LaunchArgs): Effect.Effect<PreparedLaunch, LaunchError, Scope.Scope> =>
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
        // A `#!` interpreter is given this path to open: the one inside the container.
        hostProgram.guestPath,
        yield* Effect.tryPromise({
          try: () => FsP.readFile(hostProgram.hostPath),
          catch: (e) => new ProgramNotReadable({ path: hostProgram.hostPath, reason: (e as Error).message })
        }),
        [hostProgram.guestPath, ...args.argv.slice(1)],
        kernel.files
      ).pipe(
        // The user named the file by its host path: so do errors about it.
        Effect.mapError((e) => e._tag === "NotWasm" && e.path === hostProgram.guestPath ? new NotWasm({ path: hostProgram.hostPath }) : e)
      )
      : yield* loadExecutable(root, cwd, args.argv, getEnv(env, "PATH"), kernel.files)
    yield* Effect.acquireRelease(kernel.modules.acquire(program.path, program.bytes), (module) => Effect.sync(module.release))
    return { args, cwd, env, program }
  })

/** Starts a prepared process: its stdio (a terminal when asked for), then the kernel's process. */
export const startPrepared = (
  kernel: KernelShape,
  { args, cwd, env, program }: PreparedLaunch
): Effect.Effect<ThreadGroup, InvalidModule | SandboxOutOfMemory | ProcessCreationRefused> =>
  Effect.suspend(() => {
    // What is made here over host fds (hostStream opens a host fd of its own for a pipe or a
    // terminal) is the process's once it starts, and closed here if the kernel refuses it.
    const made: Array<FileDescription> = []
    const stdio = [
      stdioDescription(args.stdio.stdin, 0, made),
      stdioDescription(args.stdio.stdout, 1, made),
      stdioDescription(args.stdio.stderr, 2, made)
    ]
    const terminal = args.terminal ? makeTerminal(stdio) : undefined
    // Index 3 is left for the root preopen, which the kernel puts there.
    const preserved = (args.stdio.preserved ?? []).map((given) => stdioDescription(given, -1, made))
    const started = kernel.startProcess({
      argv: program.argv,
      env,
      root: args.root,
      cwd,
      programPath: program.path,
      programBytes: program.bytes,
      stdio: [...(terminal?.stdio ?? stdio), undefined, ...preserved],
      ...(terminal ? { terminal: terminal.control } : {}),
      syntheticMounts: args.syntheticMounts,
      ...(args.maxFds !== undefined ? { maxFds: args.maxFds } : {}),
      pidNamespace: args.pidNamespace,
      uid: args.uid,
      tasks: args.tasks
    })
    return Effect.onError(started, () => Effect.forEach(new Set(made), (description) => description.close, { discard: true }))
  })
