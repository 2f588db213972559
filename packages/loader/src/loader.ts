/**
 * The Loader: one sandbox. It builds the kernel and the host signal handling, registers the
 * root container, and then serves the container lifecycle — runsc's containerManager — to
 * whoever drives it: the CLI, the control server, or an Effect app.
 *
 * Lifetime: the sandbox lives as long as the root container's init. When it exits, every other
 * process is killed. Closing the layer's scope is the teardown — SIGKILL every process, wait
 * until each has exited, close every container (the root last), then release the kernel
 * (workers, pool, fds) — and the scopes' structure guarantees that nothing is released while a
 * task still runs: a container's scope kills and waits for its processes before it releases
 * what they used (newContainer).
 *
 * Every change to the container registry (create, start, exec, destroy, signals to all
 * processes) holds the registry lock; nothing slow runs under it (an exec finds, reads and
 * compiles its program before it takes the lock). A kill of every process of a container
 * (destroy, kill --all, the death of its namespace's init) closes the container's admission
 * (or its namespace's) before it enumerates them, so a process created concurrently, by a guest
 * or a client, is either killed by it or refused (invariant 5).
 */
import { type ExitStatus, isValidSignal, SIGKILL, signalName } from "@runsc/abi"
import {
  Kernel,
  type KernelOptions,
  type ModuleCacheStats,
  PidNamespace,
  type Pipe,
  terminalSignals,
  type ThreadGroup
} from "@runsc/kernel"
import {
  type Bundle,
  type BundleNotFound,
  type InvalidContainerId,
  InvalidSpec,
  loadBundle,
  memoryLimitOf,
  pidNamespace,
  validateContainerId
} from "@runsc/spec"
import { Context, Deferred, Effect, ExecutionStrategy, Exit, Layer, Scope } from "effect"
import * as Os from "node:os"
import { Container } from "./container.js"
import {
  AlreadyPaused,
  ContainerAlreadyStarted,
  ContainerExists,
  ContainerNotFound,
  ContainerNotStarted,
  ContainerStopped,
  InvalidPid,
  InvalidMount,
  InvalidRoot,
  InvalidSignal,
  NoSuchProcess,
  NoTerminal,
  NotPaused,
  ProcessInOtherContainer,
  SandboxPanicked
} from "./errors.js"
import { handleHostSignals } from "./hostSignals.js"
import {
  guestPathOf,
  type LaunchArgs,
  type LaunchError,
  maxFdsOf,
  prepareLaunch,
  type Stdio,
  startPrepared
} from "./launch.js"

export interface LoaderArgs {
  /** The root container's id. */
  readonly containerId: string
  /** The root container's bundle directory (its config.json is loaded), or a loaded bundle. */
  readonly bundle: string | Bundle
  /**
   * Run this host file as the root program (`runsc do`), instead of resolving
   * `process.args[0]` inside the container. The guest sees `process.args` with argv[0] where it
   * can see the file: its path inside the container when it lies in the root directory and no
   * mount hides it, else its file name.
   */
  readonly hostProgram?: string
  /** Host fds given to the root init as its fds 0, 1, 2 (default: this process's stdio). */
  readonly stdio?: Stdio
  /** Set HOME from the container's /etc/passwd (or "/") when the spec has none (default true). */
  readonly homeFromPasswd?: boolean
  /** Forward this process's signals to the root init (default false; the CLI sets it). */
  readonly forwardSignals?: boolean
  /** A host signal that dumps state and ends the sandbox instead of being forwarded. */
  readonly panicSignal?: number
  /** The kernel's options: strace, and the guest worker pool (warm, prestarted, adopted threads). */
  readonly kernel?: KernelOptions
}

/** ContainerStopped: its init could not join its PID namespace, whose init has died (or the sandbox is ending). */
export type StartError = ContainerNotFound | ContainerAlreadyStarted | ContainerStopped | InvalidRoot | InvalidMount | InvalidSpec | LaunchError

export interface SubcontainerArgs {
  readonly containerId: string
  /** The container's bundle directory, or a loaded bundle. */
  readonly bundle: string | Bundle
  readonly stdio?: Stdio
}

export interface ExecArgs {
  readonly containerId: string
  readonly argv: ReadonlyArray<string>
  /** Default: the container's spec env. */
  readonly env?: ReadonlyArray<string>
  /** Default: the container's spec cwd. */
  readonly cwd?: string
  /** Default: the container's spec user. */
  readonly uid?: number
  readonly stdio?: Stdio
  /** The stdio fds are a terminal the process controls (default: the container's spec). */
  readonly terminal?: boolean
}

/** runsc's signal delivery modes. */
export type SignalMode = "Process" | "AllProcesses" | "ProcessGroup" | "ForegroundProcessGroup"

/** A container's resource use, in runc's `events --stats` shape. */
export interface ContainerStats {
  /** CPU time of every process the container has run, in ns. */
  readonly cpu: { readonly usage: { readonly total: bigint } }
  /** Guest memory of its live processes, in bytes. */
  readonly memory: { readonly usage: { readonly usage: number } }
  readonly pids: { readonly current: number }
}

/** runsc's ContainerRuntimeState. */
export type RuntimeState = "creating" | "running" | "stopped"

export interface ProcessInfo {
  /** Root-namespace pid (what ps, kill --pid and exec's result use). */
  readonly pid: number
  readonly ppid: number
  /** Its process group. */
  readonly pgid: number
  /** The foreground process group of its controlling terminal (-1: it has none), as ps's TPGID. */
  readonly tpgid: number
  readonly uid: number
  readonly containerId: string
  readonly state: string
  readonly argv: ReadonlyArray<string>
  readonly syscalls: number
  /** Wall-clock nanoseconds at start. */
  readonly startedAt: bigint
}

export interface LoaderShape {
  /** The root container. */
  readonly containerId: string
  readonly bundle: Bundle
  /**
   * Runs the root container's init; fails if it was already started. Returns its pid. A start
   * that fails leaves the container stopped (so do startSubcontainer's).
   */
  readonly startRoot: Effect.Effect<number, StartError>
  /** Waits for the root init to exit; repeatable, any number of waiters get the same status. */
  readonly waitExit: Effect.Effect<ExitStatus, ContainerNotStarted | SandboxPanicked>
  /**
   * Waits until the root container has been started (by whoever drives the Loader: a control
   * call), then for its init to exit: what a sandbox process lives for.
   */
  readonly awaitRootExit: Effect.Effect<ExitStatus, SandboxPanicked>
  /**
   * What ended the root init, when a fault did: a wasm trap in words ("wasm trap: call stack
   * exhausted"). Undefined while it runs, and when it exited or a signal from outside ended it.
   */
  readonly rootFault: Effect.Effect<string | undefined>
  /** Sends a signal to the root init (runsc's Process mode with pid 0). */
  readonly signal: (signo: number) => Effect.Effect<void, ContainerNotStarted | InvalidSignal | NoSuchProcess>

  /** Registers a container, created but not started. */
  readonly createSubcontainer: (id: string) => Effect.Effect<void, ContainerExists | InvalidContainerId>
  /** Starts a created container's init; returns its root-namespace pid. */
  readonly startSubcontainer: (
    args: SubcontainerArgs
  ) => Effect.Effect<number, StartError | InvalidSpec | BundleNotFound>
  /**
   * SIGKILLs every process of the container, waits until each has exited, and forgets the
   * container. Idempotent: destroying an unknown or already destroyed container succeeds.
   */
  readonly destroySubcontainer: (id: string) => Effect.Effect<void>
  /** Starts a process in a running container; returns its root-namespace pid. */
  readonly execute: (
    args: ExecArgs
  ) => Effect.Effect<number, ContainerNotFound | ContainerNotStarted | ContainerStopped | LaunchError>
  /** Waits for a container's init; repeatable. */
  readonly wait: (id: string) => Effect.Effect<ExitStatus, ContainerNotFound | ContainerNotStarted>
  /**
   * Waits for a process of the container: an exec'd one is consumed by the first waitPid that
   * returns; any other process of the container can be waited without being consumed.
   */
  readonly waitPid: (
    id: string,
    pid: number
  ) => Effect.Effect<ExitStatus, ContainerNotFound | InvalidPid | NoSuchProcess | ProcessInOtherContainer>
  /** Signals processes of a container; signal 0 probes liveness. */
  readonly signalContainer: (
    id: string,
    pid: number,
    signo: number,
    mode: SignalMode
  ) => Effect.Effect<
    void,
    | ContainerNotFound
    | ContainerNotStarted
    | InvalidPid
    | InvalidSignal
    | NoSuchProcess
    | ProcessInOtherContainer
    | NoTerminal
  >
  /** The container's live processes, by root-namespace pid. */
  readonly processes: (id: string) => Effect.Effect<ReadonlyArray<ProcessInfo>, ContainerNotFound>
  /** Every live process of the sandbox, by root-namespace pid. */
  readonly allProcesses: Effect.Effect<ReadonlyArray<ProcessInfo>>
  readonly runtimeState: (id: string) => Effect.Effect<RuntimeState, ContainerNotFound>
  /** The container's resource use (runsc's Event). */
  readonly event: (id: string) => Effect.Effect<ContainerStats, ContainerNotFound>
  /**
   * Stops every task of the sandbox, all containers, at its next syscall boundary (a guest
   * computing without syscalls runs on until its next one); fails if already paused.
   */
  readonly pause: Effect.Effect<void, AlreadyPaused>
  /** Lets every task of the sandbox go on; fails if it was not paused. */
  readonly resume: Effect.Effect<void, NotPaused>
  readonly isPaused: Effect.Effect<boolean>
  /**
   * Live processes of the sandbox, exited ones nobody has reaped yet (zombies), and the guest
   * worker threads that exist and are idle (leak checks).
   */
  readonly sandboxStats: Effect.Effect<{
    readonly processes: number
    readonly unreaped: number
    readonly workerThreads: number
    readonly idleWorkers: number
    /** The sandbox's memory (bytes) and what its guests hold of it (see KernelShape.memory). */
    readonly memory: { readonly total: number; readonly used: number }
    /** The compiled-module cache: modules, their bytes, how many a live process uses. */
    readonly modules: ModuleCacheStats
  }>
  /**
   * A pipe inside the sandbox: give its ends as `stdio` to started processes (`a | b` between
   * two execs), or read and write them from the host side (`read.read(n)`, `write.write(bytes)`).
   * An end is closed when the last process given it exits; close an end no process got yourself.
   */
  readonly pipe: Effect.Effect<Pipe>
  /** A human-readable dump of every process (what --panic-signal and the watchdog print). */
  readonly dumpState: Effect.Effect<string>
}

export class Loader extends Context.Tag("@runsc/loader/Loader")<Loader, LoaderShape>() {
  /**
   * The sandbox's memory (its /proc/meminfo total, the ceiling of what its guests hold: guest
   * memory, a share per process, in-memory files) is the root container's
   * `linux.resources.memory.limit` when set, capped at the host's, as runsc sizes its sandbox by
   * the pod's cgroup; else half the host's (defaultTotalMemory); `kernel.totalMemory` overrides it.
   */
  static layer(args: LoaderArgs): Layer.Layer<Loader, InvalidContainerId | InvalidSpec | BundleNotFound> {
    return Layer.unwrapEffect(Effect.map(
      typeof args.bundle === "string" ? loadBundle(args.bundle) : Effect.succeed(args.bundle),
      (bundle) => {
        const limit = memoryLimitOf(bundle.spec)
        const totalMemory = args.kernel?.totalMemory ?? (limit !== undefined ? Math.min(limit, Os.totalmem()) : undefined)
        return Layer.scoped(Loader, makeLoader({ ...args, bundle })).pipe(
          Layer.provide(Kernel.layer({ ...args.kernel, ...(totalMemory !== undefined ? { totalMemory } : {}) }))
        )
      }
    ))
  }

  /** Starts the root container and waits for it: what `runsc run` does. */
  static readonly run: Effect.Effect<ExitStatus, StartError | ContainerNotStarted | SandboxPanicked, Loader> = Effect
    .flatMap(
      Loader,
      (loader) => Effect.zipRight(loader.startRoot, loader.waitExit)
    )
}

/** What ps shows of a process; pids are root-namespace pids (`root`). */
const describeProcess = (root: PidNamespace<ThreadGroup>) => (tg: ThreadGroup): ProcessInfo => ({
  pid: tg.rootPid,
  ppid: tg.parent?.rootPid ?? 0,
  pgid: tg.group.idIn(root),
  tpgid: tg.group.session.terminal?.foreground?.idIn(root) ?? -1,
  uid: tg.uid,
  containerId: tg.containerId,
  state: tg.state,
  argv: tg.argv,
  syscalls: tg.syscalls,
  startedAt: tg.startedAt
})

const byPid = (a: ProcessInfo, b: ProcessInfo) => a.pid - b.pid

const makeLoader = (args: LoaderArgs & { readonly bundle: Bundle }) =>
  Effect.gen(function*() {
    const kernel = yield* Kernel
    const rootId = yield* validateContainerId(args.containerId)
    const rootBundle = args.bundle
    const containers = new Map<string, Container>()
    const registry = yield* Effect.makeSemaphore(1)
    const locked = registry.withPermits(1)
    // Every container's scope is a child of this one, forked before the sandbox's own
    // kill-and-wait finalizer below is added: finalizers run in reverse, so at teardown every
    // process is dead before any container releases what its processes used. Containers close
    // in reverse order of creation: the root last.
    const containersScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const newContainer = (id: string) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(containersScope, ExecutionStrategy.sequential)
        // Forked first, so closed last: what the container's processes use.
        const resources = yield* Scope.fork(scope, ExecutionStrategy.sequential)
        // Made after, so released first: closing the container kills its processes and waits for them.
        const tasks = yield* kernel.taskSet(id).pipe(Scope.extend(scope))
        return new Container(id, scope, resources, tasks)
      })

    const rootContainer = yield* newContainer(rootId)
    containers.set(rootId, rootContainer)
    const rootStarted = yield* Deferred.make<void>()

    const find = (id: string) =>
      Effect.suspend(() => {
        const container = containers.get(id)
        return container ? Effect.succeed(container) : Effect.fail(new ContainerNotFound({ id }))
      })

    /**
     * Whether a process may be exec'd into `container`: still registered (not destroyed),
     * started, its init alive, and no kill of all its processes under way.
     */
    const runnable = (container: Container): Effect.Effect<void, ContainerNotFound | ContainerNotStarted | ContainerStopped> =>
      Effect.suspend((): Effect.Effect<void, ContainerNotFound | ContainerNotStarted | ContainerStopped> => {
        if (containers.get(container.id) !== container) return Effect.fail(new ContainerNotFound({ id: container.id }))
        if (container.state === "created") return Effect.fail(new ContainerNotStarted({ id: container.id }))
        if (container.state === "stopped" || !container.init?.isAlive || !container.tasks.isOpen) {
          return Effect.fail(new ContainerStopped({ id: container.id }))
        }
        return Effect.void
      })

    const initOf = (container: Container) =>
      container.init ? Effect.succeed(container.init) : Effect.fail(new ContainerNotStarted({ id: container.id }))

    /** Every process of the sandbox not yet reaped (zombies included; reaping releases the pid). */
    const everyProcess = () => kernel.rootPidNamespace.processes.map(([, tg]) => tg)
    /** A container's processes, including those its guests spawned; zombies included. */
    const processesOf = (container: Container) => container.tasks.processes
    const liveProcessesOf = (container: Container) => container.tasks.live

    /** The sandbox ends: no process may start any more, and every one is killed. */
    const killAll = Effect.suspend(() => {
      kernel.rootPidNamespace.refuseNew()
      return Effect.flatMap(kernel.processes, (all) => Effect.forEach(all, (tg) => kernel.signal(tg, SIGKILL), { discard: true }))
    })

    const awaitAll = Effect.flatMap(kernel.processes, (all) =>
      Effect.forEach(all, (tg) => Deferred.await(tg.exitStatus), { discard: true }))

    const dumpState = Effect.map(kernel.processes, (all) =>
      [
        `sandbox ${rootId}: ${containers.size} container(s), ${all.length} process(es)`,
        ...[...containers.values()].map((c) => `  container ${c.id}: ${c.state}`),
        ...all.map((tg) =>
          `  pid ${tg.rootPid} [${tg.containerId}] ${tg.state}${tg.killedBy ? ` (${signalName(tg.killedBy)})` : ""} ` +
          `syscalls=${tg.syscalls} argv=${JSON.stringify(tg.argv)}`
        )
      ].join("\n"))

    // Teardown: SIGKILL, wait for every process to exit; the kernel (provided below this
    // layer) is released only after this finalizer has returned.
    yield* Effect.addFinalizer(() => Effect.zipRight(killAll, awaitAll))

    /**
     * The init of `container` has exited: the container stops (its own PID namespace dies with
     * it, as the kernel ends a namespace whose init dies); the root's ends the sandbox.
     */
    const onInitExit = (container: Container, init: ThreadGroup) =>
      Effect.gen(function*() {
        yield* Deferred.await(init.exitStatus)
        yield* locked(Effect.gen(function*() {
          container.state = "stopped"
          // The sandbox lives exactly as long as its root init.
          if (container === rootContainer) yield* killAll
        }))
      })

    /**
     * Starts a created container's init (the registry lock is held). A start that fails leaves
     * the container stopped, as runc does, having given back all it took.
     */
    const startContainer = (
      container: Container,
      bundle: Bundle,
      stdio: Stdio,
      root: { hostProgram?: string | undefined; homeFromPasswd?: boolean | undefined } = {}
    ) =>
      Effect.gen(function*() {
        if (container.state !== "created") return yield* new ContainerAlreadyStarted({ id: container.id })
        // What the start takes (its trees' host descriptors, their memory) is held in a scope
        // of its own within the container's: closed with the container, or at once if the start fails.
        const started = yield* Scope.fork(container.resources, ExecutionStrategy.sequential)
        return yield* launchInit(container, bundle, stdio, root, started).pipe(
          Effect.onError((cause) =>
            Effect.zipRight(
              Scope.close(started, Exit.failCause(cause)),
              Effect.sync(() => {
                container.state = "stopped"
              })
            )
          )
        )
      })

    /** What startContainer does once the container is known to be created; `started` holds what it takes. */
    const launchInit = (
      container: Container,
      bundle: Bundle,
      stdio: Stdio,
      root: { hostProgram?: string | undefined; homeFromPasswd?: boolean | undefined },
      started: Scope.Scope
    ) =>
      Effect.gen(function*() {
        const { spec } = bundle
        const process = spec.process
        // loadBundle refuses such a spec; one given in memory is refused here, as runc does.
        if (process === undefined) return yield* new InvalidSpec({ path: "process", reason: "required field is missing" })
        // What it holds (host trees, in-memory files) goes back when the container is destroyed.
        const { root: rootDentry, mounts } = yield* kernel.mountNamespace({ spec, bundleDir: bundle.dir, rootPath: bundle.rootPath }).pipe(
          Scope.extend(started),
          Effect.mapError((e) =>
            e._tag === "InvalidRoot"
              ? new InvalidRoot({ path: e.path, reason: e.reason })
              : new InvalidMount({ destination: e.destination, reason: e.reason })
          )
        )
        // Run before the above: the container's structure (newContainer) has every process of it
        // dead by now. Should one live, it is a sentry bug, said loudly.
        yield* Scope.addFinalizer(started, Effect.suspend(() => {
          const alive = liveProcessesOf(container).length
          return alive === 0 ? Effect.void : Effect.logError(`sentry bug: container ${container.id} releases its filesystems under ${alive} live process(es)`)
        }))
        // runsc's rule: no pid namespace → the root one; a path used by an earlier container →
        // join it; otherwise a new child of the root namespace.
        const wanted = pidNamespace(spec)
        const joined = wanted._tag === "New" && wanted.path !== undefined
          ? [...containers.values()].find((c) => c.pidNamespacePath === wanted.path)?.pidNamespace
          : undefined
        const namespace = wanted._tag === "Shared"
          ? kernel.rootPidNamespace
          : joined ?? new PidNamespace<ThreadGroup>(kernel.rootPidNamespace)
        const uid = process.user?.uid ?? 0
        const launchArgs: LaunchArgs = {
          root: rootDentry,
          argv: process.args,
          env: process.env ?? [],
          cwd: process.cwd,
          uid,
          stdio,
          syntheticMounts: mounts,
          maxFds: maxFdsOf(process),
          pidNamespace: namespace,
          terminal: process.terminal ?? false,
          hostProgram: root.hostProgram === undefined ? undefined : {
            hostPath: root.hostProgram,
            guestPath: guestPathOf(root.hostProgram, bundle.rootPath, mounts.map((m) => m.path))
          },
          homeFromPasswd: root.homeFromPasswd,
          tasks: container.tasks
        }
        const tg = yield* Effect.scoped(Effect.flatMap(prepareLaunch(kernel, launchArgs), (prepared) => startPrepared(kernel, prepared))).pipe(
          Effect.catchTag("ProcessCreationRefused", () => new ContainerStopped({ id: container.id }))
        )
        container.spec = spec
        container.root = rootDentry
        container.mounts = mounts
        container.pidNamespace = namespace
        container.pidNamespacePath = wanted._tag === "New" ? wanted.path : undefined
        container.init = tg
        container.state = "running"
        if (container === rootContainer) yield* Deferred.succeed(rootStarted, undefined)
        yield* Effect.forkIn(onInitExit(container, tg), container.scope)
        return tg.rootPid
      })

    const signalProcess = (tg: ThreadGroup, signo: number) =>
      tg.isAlive ? kernel.signal(tg, signo) : Effect.fail(new NoSuchProcess({ pid: tg.rootPid }))

    /** Signals the live members of a group; NoSuchProcess when none is left. */
    const signalGroup = (members: Iterable<ThreadGroup>, signo: number, pid: number) =>
      Effect.suspend(() => {
        const live = [...members].filter((tg) => tg.isAlive)
        if (live.length === 0) return Effect.fail(new NoSuchProcess({ pid }))
        return Effect.forEach(live, (tg) => kernel.signal(tg, signo), { discard: true })
      })

    const checkSignal = (signo: number) =>
      signo === 0 || isValidSignal(signo) ? Effect.void : Effect.fail(new InvalidSignal({ signal: signo }))

    /** A process of `container` by root-namespace pid. */
    const processOf = (container: Container, pid: number) =>
      Effect.suspend((): Effect.Effect<ThreadGroup, NoSuchProcess | ProcessInOtherContainer> => {
        const tg = kernel.rootPidNamespace.get(pid)
        if (tg === undefined) return Effect.fail(new NoSuchProcess({ pid }))
        if (!container.tasks.has(tg)) {
          return Effect.fail(new ProcessInOtherContainer({ pid, id: container.id, owner: tg.containerId }))
        }
        return Effect.succeed(tg)
      })

    const shape: LoaderShape = {
      containerId: rootId,
      bundle: rootBundle,

      startRoot: locked(
        startContainer(rootContainer, rootBundle, args.stdio ?? {}, {
          hostProgram: args.hostProgram,
          homeFromPasswd: args.homeFromPasswd
        })
      ),

      waitExit: Effect.gen(function*() {
        const init = yield* initOf(rootContainer)
        const status = yield* Effect.raceFirst(
          Deferred.await(init.exitStatus),
          Effect.flatMap(kernel.panicked, (reason) => Effect.fail(new SandboxPanicked({ reason })))
        )
        yield* killAll
        return status
      }),

      awaitRootExit: Effect.raceFirst(
        Deferred.await(rootStarted),
        Effect.flatMap(kernel.panicked, (reason) => Effect.fail(new SandboxPanicked({ reason })))
      ).pipe(
        Effect.zipRight(Effect.suspend(() => shape.waitExit)),
        // Started: waitExit cannot fail ContainerNotStarted any more.
        Effect.catchTag("ContainerNotStarted", () => Effect.dieMessage("root container started without an init"))
      ),

      rootFault: Effect.sync(() => rootContainer.init?.fault),

      signal: (signo) =>
        Effect.gen(function*() {
          yield* checkSignal(signo)
          yield* signalProcess(yield* initOf(rootContainer), signo)
        }),

      createSubcontainer: (id) =>
        Effect.flatMap(validateContainerId(id), (id) =>
          locked(Effect.gen(function*() {
            if (containers.has(id)) return yield* new ContainerExists({ id })
            containers.set(id, yield* newContainer(id))
          }))),

      startSubcontainer: ({ bundle, containerId, stdio }) =>
        Effect.gen(function*() {
          // A bundle that cannot be loaded fails the start too: a created container is then stopped.
          const stopIfCreated = locked(Effect.sync(() => {
            const container = containers.get(containerId)
            if (container?.state === "created") container.state = "stopped"
          }))
          const loaded = typeof bundle === "string" ? yield* Effect.tapError(loadBundle(bundle), () => stopIfCreated) : bundle
          return yield* locked(Effect.flatMap(
            find(containerId),
            (container) => startContainer(container, loaded, stdio ?? {})
          ))
        }),

      // Uninterruptible: once begun, a destroy completes (an interrupted caller waits for it).
      destroySubcontainer: (id) =>
        Effect.uninterruptible(Effect.gen(function*() {
          // Under the lock: forget the container, close its admission and SIGKILL all of its
          // processes, so that no start or exec can add one after the kill, nor a guest spawn one
          // (refused, or registered before and killed).
          const container = yield* locked(Effect.gen(function*() {
            const found = containers.get(id)
            if (found === undefined) return undefined
            containers.delete(id)
            found.tasks.close()
            yield* Effect.forEach(liveProcessesOf(found), (tg) => kernel.signal(tg, SIGKILL), { discard: true })
            return found
          }))
          if (container === undefined) return
          container.state = "stopped"
          // Closing its scope waits for every process to exit, then releases what they used.
          yield* Scope.close(container.scope, Exit.void)
        })),

      // The program is found, read and compiled before the registry lock is taken (a compile
      // takes long, and would stall every container's lifecycle); under the lock the container
      // is checked again and the process started, its module found in the cache.
      execute: (exec) =>
        Effect.scoped(Effect.gen(function*() {
          const container = yield* find(exec.containerId)
          yield* runnable(container)
          const process = container.spec!.process!
          const launchArgs: LaunchArgs = {
            root: container.root!,
            argv: exec.argv,
            env: exec.env ?? process.env ?? [],
            cwd: exec.cwd ?? process.cwd,
            uid: exec.uid ?? process.user?.uid ?? 0,
            stdio: exec.stdio ?? {},
            syntheticMounts: container.mounts,
            maxFds: maxFdsOf(process),
            pidNamespace: container.pidNamespace!,
            terminal: exec.terminal ?? false,
            tasks: container.tasks
          }
          const prepared = yield* prepareLaunch(kernel, launchArgs).pipe(
            // A destroy meanwhile closes the trees the preparation reads: what failed is the container.
            Effect.tapError(() => runnable(container))
          )
          return yield* locked(Effect.gen(function*() {
            yield* runnable(container)
            const tg = yield* startPrepared(kernel, prepared).pipe(
              Effect.catchTag("ProcessCreationRefused", () => new ContainerStopped({ id: container.id }))
            )
            container.execs.set(tg.rootPid, tg)
            return tg.rootPid
          }))
        })),

      wait: (id) =>
        Effect.gen(function*() {
          const init = yield* initOf(yield* find(id))
          return yield* Deferred.await(init.exitStatus)
        }),

      waitPid: (id, pid) =>
        Effect.gen(function*() {
          if (!Number.isInteger(pid) || pid <= 0) return yield* new InvalidPid({ pid, reason: "must be positive" })
          const container = yield* find(id)
          const exec = container.execs.get(pid)
          if (exec !== undefined) {
            const status = yield* Deferred.await(exec.exitStatus)
            // The first waiter to return consumes the exec'd process.
            if (container.execs.delete(pid)) yield* kernel.reap(exec)
            return status
          }
          const tg = yield* processOf(container, pid)
          return yield* Deferred.await(tg.exitStatus)
        }),

      signalContainer: (id, pid, signo, mode) =>
        Effect.gen(function*() {
          yield* checkSignal(signo)
          const container = yield* find(id)
          const init = yield* initOf(container)
          switch (mode) {
            case "Process":
              return yield* signalProcess(pid === 0 ? init : yield* processOf(container, pid), signo)
            case "AllProcesses":
              if (pid !== 0) return yield* new InvalidPid({ pid, reason: "AllProcesses takes pid 0" })
              // The container's admission is held closed while every process is signalled, and
              // for SIGKILL until each has exited: a process created meanwhile (a guest's spawn,
              // an exec) is registered before the sweep enumerates the container, and signalled
              // with it, or refused. The call returns once the signals are sent, as runc's kill
              // does: the wait for the exits is the container's (its scope), not the caller's,
              // whose answer would otherwise be cut off when the root's exit ends the sandbox.
              return yield* Effect.uninterruptibleMask((restore) =>
                Effect.gen(function*() {
                  const { release, signalled } = yield* locked(Effect.sync(() => ({
                    release: container.tasks.hold(),
                    signalled: liveProcessesOf(container)
                  })))
                  yield* restore(Effect.forEach(signalled, (tg) => kernel.signal(tg, signo), { discard: true })).pipe(
                    Effect.onError(() => Effect.sync(release))
                  )
                  if (signo !== SIGKILL) return release()
                  const exited = Effect.forEach(signalled, (tg) => Deferred.await(tg.exitStatus), { discard: true })
                  yield* Effect.forkIn(Effect.ensuring(exited, Effect.sync(release)), container.scope)
                })
              )
            case "ProcessGroup": {
              // The whole group the process belongs to, as kill(-pgid) would reach it.
              const member = yield* processOf(container, pid)
              return yield* signalGroup(member.group.members, signo, member.rootPid)
            }
            case "ForegroundProcessGroup": {
              // The foreground group of the terminal the process's session controls.
              const member = pid === 0 ? init : yield* processOf(container, pid)
              const terminal = member.group.session.terminal
              if (terminal === undefined) return yield* new NoTerminal({ id, pid })
              const foreground = terminal.foreground
              // No foreground group (it has ended): the signal reaches nobody, as on Linux.
              if (foreground === undefined) return
              return yield* signalGroup(foreground.members, signo, member.rootPid)
            }
          }
        }),

      processes: (id) =>
        Effect.map(find(id), (container) => liveProcessesOf(container).map(describeProcess(kernel.rootPidNamespace)).sort(byPid)),

      allProcesses: Effect.sync(() =>
        everyProcess().filter((tg) => tg.isAlive).map(describeProcess(kernel.rootPidNamespace)).sort(byPid)
      ),

      runtimeState: (id) =>
        Effect.map(find(id), (container) =>
          container.state === "created" ? "creating"
          : container.state === "running" && container.init?.isAlive ? "running"
          : "stopped"),

      event: (id) =>
        Effect.gen(function*() {
          const container = yield* find(id)
          const usages = yield* Effect.forEach(processesOf(container), (tg) => kernel.usage(tg))
          return {
            cpu: { usage: { total: usages.reduce((sum, u) => sum + u.cpuNs, 0n) } },
            memory: { usage: { usage: usages.reduce((sum, u) => sum + u.memoryBytes, 0) } },
            pids: { current: liveProcessesOf(container).length }
          }
        }),

      pause: Effect.flatMap(kernel.pause, (done) => (done ? Effect.void : Effect.fail(new AlreadyPaused({ id: rootId })))),
      resume: Effect.flatMap(kernel.resume, (done) => (done ? Effect.void : Effect.fail(new NotPaused({ id: rootId })))),
      isPaused: kernel.isPaused,
      sandboxStats: Effect.map(kernel.workerStats, (workers) => ({
        processes: everyProcess().filter((tg) => tg.isAlive).length,
        unreaped: everyProcess().filter((tg) => !tg.isAlive).length,
        workerThreads: workers.threads,
        idleWorkers: workers.idle,
        memory: { total: kernel.memory.total, used: kernel.memory.used },
        modules: kernel.modules.stats
      })),

      pipe: kernel.makePipe,
      dumpState
    }

    yield* handleHostSignals({
      forward: args.forwardSignals ?? false,
      panicSignal: args.panicSignal,
      deliver: (signo) => {
        const init = rootContainer.init
        if (init === undefined) return Effect.void
        // What a host terminal generates (^C, ^Z, ...) is for the job in its foreground.
        const foreground = init.group.session.terminal?.foreground
        if (foreground !== undefined && terminalSignals.has(signo)) {
          return Effect.forEach(foreground.members, (tg) => kernel.signal(tg, signo), { discard: true })
        }
        return kernel.signal(init, signo)
      },
      panic: (signo) =>
        Effect.gen(function*() {
          yield* Effect.logError(`panic signal ${signalName(signo)} received\n${yield* dumpState}`)
          yield* kernel.panic(`panic signal ${signalName(signo)} (--panic-signal)`)
        })
    })

    return shape
  })
