/**
 * The Loader: one sandbox. It builds the kernel, the root filesystem of the bundle and the host
 * signal handling, then waits for `startRoot` to run the root container's init, as runsc's boot
 * loader waits for StartRoot.
 *
 * Lifetime: the sandbox lives as long as the root init. When it exits, every other process is
 * killed. Closing the layer's scope is the teardown — SIGKILL every process, wait until each has
 * exited, then release the kernel (workers, pool, fds) — and the finalizer order guarantees
 * that nothing is released while a task still runs.
 */
import { type ExitStatus, SIGKILL, signalName } from "@runsc/abi"
import {
  Dentry,
  type ExecNotFound,
  hostRoot,
  hostStream,
  type InvalidModule,
  Kernel,
  loadExecutable,
  type NotWasm,
  programFromBytes,
  readAll,
  resolve,
  type KernelOptions,
  type ThreadGroup
} from "@runsc/kernel"
import {
  type Bundle,
  type BundleNotFound,
  getEnv,
  type InvalidContainerId,
  type InvalidSpec,
  loadBundle,
  resolveEnv,
  validateContainerId
} from "@runsc/spec"
import { Context, Deferred, Effect, Layer, Ref } from "effect"
import * as FsP from "node:fs/promises"
import * as Path from "node:path"
import {
  ContainerAlreadyStarted,
  ContainerNotStarted,
  InvalidCwd,
  InvalidRoot,
  ProgramNotReadable,
  SandboxPanicked
} from "./errors.js"
import { handleHostSignals } from "./hostSignals.js"

export interface LoaderArgs {
  readonly containerId: string
  /** The bundle directory (its config.json is loaded), or an already loaded bundle. */
  readonly bundle: string | Bundle
  /**
   * Run this host file as the root program (`runsc do`), instead of resolving
   * `process.args[0]` inside the container. The guest still sees `process.args`.
   */
  readonly hostProgram?: string
  /** Host fds given to the root init as its fds 0, 1, 2 (default: this process's stdio). */
  readonly stdio?: { readonly stdin?: number; readonly stdout?: number; readonly stderr?: number }
  /** The kernel's options: strace, and the guest worker pool (warm, prestarted, adopted threads). */
  readonly kernel?: KernelOptions
  /** Set HOME from the container's /etc/passwd (or "/") when the spec has none (default true). */
  readonly homeFromPasswd?: boolean
  /** Forward this process's signals to the root init (default false; the CLI sets it). */
  readonly forwardSignals?: boolean
  /** A host signal that dumps state and ends the sandbox instead of being forwarded. */
  readonly panicSignal?: number
}

export type StartError = ContainerAlreadyStarted | InvalidRoot | InvalidCwd | ExecNotFound | NotWasm | InvalidModule | ProgramNotReadable

export interface ProcessInfo {
  readonly pid: number
  readonly containerId: string
  readonly state: string
  readonly argv: ReadonlyArray<string>
  readonly syscalls: number
}

export interface LoaderShape {
  readonly containerId: string
  readonly bundle: Bundle
  /** Runs the root container's init; fails if it was already started. Returns its pid. */
  readonly startRoot: Effect.Effect<number, StartError>
  /** Waits for the root init to exit; repeatable, any number of waiters get the same status. */
  readonly waitExit: Effect.Effect<ExitStatus, ContainerNotStarted | SandboxPanicked>
  /** Sends a signal to the root init (runsc's Process mode with pid 0). */
  readonly signal: (signo: number) => Effect.Effect<void, ContainerNotStarted>
  readonly processes: Effect.Effect<ReadonlyArray<ProcessInfo>>
  /** A human-readable dump of every process (what --panic-signal and the watchdog print). */
  readonly dumpState: Effect.Effect<string>
}

export class Loader extends Context.Tag("@runsc/loader/Loader")<Loader, LoaderShape>() {
  static layer(args: LoaderArgs): Layer.Layer<Loader, InvalidContainerId | InvalidSpec | BundleNotFound> {
    return Layer.scoped(Loader, makeLoader(args)).pipe(
      Layer.provide(Kernel.layer(args.kernel))
    )
  }

  /** Starts the root container and waits for it: what `runsc run` does. */
  static readonly run: Effect.Effect<ExitStatus, StartError | ContainerNotStarted | SandboxPanicked, Loader> = Effect.flatMap(
    Loader,
    (loader) => Effect.zipRight(loader.startRoot, loader.waitExit)
  )
}

const DEFAULT_HOME = "/"

/** HOME for `uid` from the container's /etc/passwd, or "/" when it has none. */
const homeFromPasswd = (root: Dentry, uid: number) =>
  Effect.gen(function*() {
    const passwd = yield* resolve(root, root, "/etc/passwd", { followFinal: true })
    const text = new TextDecoder().decode(yield* readAll(passwd.inode.open({ read: true, write: false })))
    for (const line of text.split("\n")) {
      const fields = line.split(":")
      if (fields.length >= 7 && Number(fields[2]) === uid && fields[5]!.length > 0) return fields[5]!
    }
    return DEFAULT_HOME
  }).pipe(Effect.orElseSucceed(() => DEFAULT_HOME))

const describeProcess = (tg: ThreadGroup): ProcessInfo => ({
  pid: tg.rootPid,
  containerId: tg.containerId,
  state: tg.state,
  argv: tg.argv,
  syscalls: tg.syscalls
})

const makeLoader = (args: LoaderArgs) =>
  Effect.gen(function*() {
    const kernel = yield* Kernel
    const id = yield* validateContainerId(args.containerId)
    const bundle = typeof args.bundle === "string" ? yield* loadBundle(args.bundle) : args.bundle
    const { spec } = bundle
    const root = yield* Ref.make<ThreadGroup | undefined>(undefined)
    // Serializes startRoot: of two concurrent starts, exactly one runs the init.
    const starting = yield* Effect.makeSemaphore(1)
    const panicked = yield* Deferred.make<never, SandboxPanicked>()

    const rootInit = Effect.flatMap(Ref.get(root), (tg) => tg ? Effect.succeed(tg) : new ContainerNotStarted({ id }))

    const processes = Effect.map(kernel.processes, (all) => all.map(describeProcess))

    const dumpState = Effect.map(kernel.processes, (all) =>
      [
        `sandbox ${id}: ${all.length} process(es)`,
        ...all.map((tg) =>
          `  pid ${tg.rootPid} [${tg.containerId}] ${tg.state}${tg.killedBy ? ` (${signalName(tg.killedBy)})` : ""} ` +
          `syscalls=${tg.syscalls} argv=${JSON.stringify(tg.argv)}`
        )
      ].join("\n"))

    const killAll = Effect.flatMap(kernel.processes, (all) =>
      Effect.forEach(all, (tg) => kernel.signal(tg, SIGKILL), { discard: true }))

    const awaitAll = Effect.flatMap(kernel.processes, (all) =>
      Effect.forEach(all, (tg) => Deferred.await(tg.exitStatus), { discard: true }))

    // Teardown: SIGKILL, wait for every process to exit; the kernel (provided below this
    // layer) is released only after this finalizer has returned.
    yield* Effect.addFinalizer(() => Effect.zipRight(killAll, awaitAll))

    yield* handleHostSignals({
      forward: args.forwardSignals ?? false,
      panicSignal: args.panicSignal,
      deliver: (signo) => Effect.flatMap(Ref.get(root), (tg) => (tg ? kernel.signal(tg, signo) : Effect.void)),
      panic: (signo) =>
        Effect.gen(function*() {
          yield* Effect.logError(`panic signal ${signalName(signo)} received\n${yield* dumpState}`)
          yield* killAll
          yield* Deferred.fail(panicked, new SandboxPanicked({ signal: signo }))
        })
    })

    // The spec's mounts of type "proc"; other mount types are not built yet.
    const procMounts = (spec.mounts ?? [])
      .filter((m) => m.type === "proc")
      .map((m) => Path.posix.normalize(m.destination).replace(/(.)\/$/, "$1"))

    const rootPath = bundle.rootPath
    const openRoot = hostRoot(rootPath).pipe(
      Effect.map(Dentry.root),
      Effect.mapError((e) => new InvalidRoot({ path: rootPath, reason: e.message }))
    )

    const startRoot = starting.withPermits(1)(Effect.gen(function*() {
      if (yield* Ref.get(root)) return yield* new ContainerAlreadyStarted({ id })
      const process = spec.process
      if (process === undefined) return yield* new InvalidCwd({ cwd: "", reason: "config.json has no process to run" })
      const rootDentry = yield* openRoot
      const cwd = yield* resolve(rootDentry, rootDentry, process.cwd, { followFinal: true }).pipe(
        Effect.mapError((e) => new InvalidCwd({ cwd: process.cwd, reason: e.message }))
      )
      let env = resolveEnv(process.env ?? [])
      if (getEnv(env, "HOME") === undefined && (args.homeFromPasswd ?? true)) {
        env = [...env, `HOME=${yield* homeFromPasswd(rootDentry, process.user?.uid ?? 0)}`]
      }
      const hostProgram = args.hostProgram
      const program = hostProgram !== undefined
        ? yield* programFromBytes(
          rootDentry,
          cwd,
          hostProgram,
          yield* Effect.tryPromise({
            try: () => FsP.readFile(hostProgram),
            catch: (e) => new ProgramNotReadable({ path: hostProgram, reason: (e as Error).message })
          }),
          process.args
        )
        : yield* loadExecutable(rootDentry, cwd, process.args, getEnv(env, "PATH"))
      const stdio = args.stdio ?? {}
      const tg = yield* kernel.startProcess({
        containerId: id,
        argv: program.argv,
        env,
        root: rootDentry,
        cwd,
        programPath: program.path,
        programBytes: program.bytes,
        stdio: [hostStream(stdio.stdin ?? 0), hostStream(stdio.stdout ?? 1), hostStream(stdio.stderr ?? 2)],
        procMounts
      })
      yield* Ref.set(root, tg)
      return tg.rootPid
    }))

    const waitExit = Effect.gen(function*() {
      const tg = yield* rootInit
      const status = yield* Effect.raceFirst(Deferred.await(tg.exitStatus), Deferred.await(panicked))
      // The sandbox lives exactly as long as its root init.
      yield* killAll
      return status
    })

    return {
      containerId: id,
      bundle,
      startRoot,
      waitExit,
      signal: (signo: number) => Effect.flatMap(rootInit, (tg) => kernel.signal(tg, signo)),
      processes,
      dumpState
    } satisfies LoaderShape
  })

