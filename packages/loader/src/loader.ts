/**
 * The Loader: one sandbox. It builds the kernel and the host signal handling, registers the
 * root container, and then serves the container lifecycle — runsc's containerManager — to
 * whoever drives it: the CLI, the control server, or an Effect app.
 *
 * Lifetime: the sandbox lives as long as the root container's init. When it exits, every other
 * process is killed. Closing the layer's scope is the teardown — SIGKILL every process, wait
 * until each has exited, stop the container actors, close every container (the root last), then
 * release the kernel (workers, pool, fds) — and the scopes' structure guarantees that nothing is
 * released while a task still runs: a container's scope kills and waits for its processes
 * before it releases what they used (Container.make).
 *
 * Each container is an actor (container.ts) that serializes its own lifecycle requests; the
 * registry of actors is read without a lock and changes only when a container is created or a
 * destroyed one forgotten, so no container's start, exec or destroy waits for another's. A kill
 * of every process of a container (destroy, kill --all, the death of its namespace's init)
 * closes the container's admission (or its namespace's) and marks them all killed in one step,
 * so a process created concurrently, by a guest or a client, is either killed by it or refused
 * (invariant 5).
 */
import { type ExitStatus, isValidSignal, signalName } from "@runsc/abi"
import {
  Kernel,
  type KernelOptions,
  type ModuleCacheStats,
  PidNamespace,
  type Pipe,
  type Network,
  type NetworkTraffic,
  terminalSignals,
  type ThreadGroup
} from "@runsc/kernel"
import {
  type Bundle,
  type BundleNotFound,
  EGRESS_ANNOTATION,
  egressRulesOf,
  type InvalidContainerId,
  InvalidSpec,
  PUBLISH_ANNOTATION,
  publishedPortsOf,
  loadBundle,
  memoryLimitOf,
  type Spec,
  validateContainerId
} from "@runsc/spec"
import { Context, Deferred, Effect, ExecutionStrategy, FiberSet, Layer, Scope, SynchronizedRef } from "effect"
import * as Net from "node:net"
import * as Os from "node:os"
import { Container, type CreatedWith, type Sandbox, type StartError } from "./container.js"
import { makeCpuShares } from "./cpuShares.js"
import { listenOn, makeHostNetwork, makeLoopbackNetwork, makeSandboxNetwork, type PublishedPort, publishPort, PublishFailed } from "@runsc/netstack"

export type { StartError }
import {
  AlreadyPaused,
  ContainerExists,
  ContainerNotFound,
  ContainerNotStarted,
  ContainerStopped,
  PidsLimitReached,
  InvalidPid,
  InvalidSignal,
  NoSuchProcess,
  NoTerminal,
  NotPaused,
  ProcessInOtherContainer,
  SandboxPanicked
} from "./errors.js"
import { handleHostSignals } from "./hostSignals.js"
import { type LaunchError, prepareLaunch, type Stdio } from "./launch.js"

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
  /**
   * Whether the root container's published ports may listen beyond the host's loopback (0.0.0.0,
   * a host interface). Default false: a spec's annotations may come from an image, and an image
   * must not open the host's network to its guest.
   */
  readonly publishBeyondLoopback?: boolean
  /**
   * runsc's `--network`: `sandbox` (default) is the sandbox's loopback, ports the root container
   * publishes, and TCP egress where its EGRESS_ANNOTATION allows; `none` is the loopback alone
   * (a spec that publishes or allows egress is refused); `host`, for trusted workloads, is the
   * host's network for TCP (netstack's makeHostNetwork). Ignored when `kernel.network` is given.
   */
  readonly networkMode?: "none" | "sandbox" | "host"
  /** Log each connection at debug level (the CLI's --debug); off, a connect stays on the syscall fast path. */
  readonly logConnections?: boolean
  /** The kernel's options: strace, and the guest worker pool (warm, prestarted, adopted threads). */
  readonly kernel?: KernelOptions
}


export interface SubcontainerArgs {
  readonly containerId: string
  /**
   * The container's bundle directory, or a loaded bundle; ignored when its create gave one,
   * required otherwise.
   */
  readonly bundle?: string | Bundle
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
  /**
   * What its memory account holds (its processes' guest memory and shares, its in-memory files),
   * its limit, and how many charges its limit refused (cgroup v1's `failcnt`), in bytes.
   */
  readonly memory: { readonly usage: { readonly usage: number; readonly limit: number; readonly failcnt: number } }
  readonly pids: { readonly current: number }
  /**
   * What its processes' sockets carried since it started: bytes and datagrams each way,
   * connections its listeners accepted and it made, and connects the egress policy refused.
   * runc reports per network interface; a connection-level stack has none, so this is runsc's own.
   */
  readonly network: {
    readonly rx_bytes: number
    readonly tx_bytes: number
    readonly rx_packets: number
    readonly tx_packets: number
    readonly accepted: number
    readonly connected: number
    readonly refused: number
  }
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
  /** CPU time used (ns): its worker thread's. */
  readonly cpuTime: bigint
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
  /**
   * Prepares the root container's init for `startRoot`, as runc's create does: its filesystems,
   * PID namespace and program (found, read, compiled), so that a program that is missing or not
   * wasm fails here, at create, and the start only starts the process. Optional: a start with
   * nothing prepared prepares first.
   */
  readonly prepareRoot: Effect.Effect<void, StartError>
  /** Waits for the root init to exit; repeatable, any number of waiters get the same status. */
  readonly waitExit: Effect.Effect<ExitStatus, ContainerNotStarted | SandboxPanicked>
  /**
   * Waits until the root container has been started (by whoever drives the Loader: a control
   * call), then for its init to exit, or until a signal stops it before its start: what a
   * sandbox process lives for.
   */
  readonly awaitRootExit: Effect.Effect<ExitStatus, SandboxPanicked>
  /**
   * What ended the root init, when a fault did: a wasm trap in words ("wasm trap: call stack
   * exhausted"). Undefined while it runs, and when it exited or a signal from outside ended it.
   */
  readonly rootFault: Effect.Effect<string | undefined>
  /** Sends a signal to the root init (runsc's Process mode with pid 0). */
  readonly signal: (signo: number) => Effect.Effect<void, ContainerNotStarted | InvalidSignal | NoSuchProcess>

  /**
   * Registers a container, created but not started; optionally with its bundle and the host
   * trees its creator opened for it (see `CreatedWith`), which it then owns.
   */
  readonly createSubcontainer: (id: string, created?: CreatedWith) => Effect.Effect<void, ContainerExists | InvalidContainerId>
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
  ) => Effect.Effect<number, ContainerNotFound | ContainerNotStarted | ContainerStopped | PidsLimitReached | LaunchError>
  /**
   * Waits for a container's init; repeatable. A container a signal stopped before its start has
   * that signal as its status.
   */
  readonly wait: (id: string) => Effect.Effect<ExitStatus, ContainerNotFound | ContainerNotStarted>
  /**
   * Waits for a container from its create: until it has started, then for its init's exit
   * (`wait`); ContainerNotStarted when it stopped without a start (its start failed, or it
   * was destroyed).
   */
  readonly awaitExit: (id: string) => Effect.Effect<ExitStatus, ContainerNotFound | ContainerNotStarted>
  /**
   * Waits for a process of the container: an exec'd one is consumed by the first waitPid that
   * returns; any other process of the container can be waited without being consumed.
   */
  readonly waitPid: (
    id: string,
    pid: number
  ) => Effect.Effect<ExitStatus, ContainerNotFound | InvalidPid | NoSuchProcess | ProcessInOtherContainer>
  /**
   * Signals processes of a container; signal 0 probes liveness. Process (pid 0) and
   * AllProcesses reach a created container's init too: one whose default action ends a
   * process stops the container (Container.signalInit).
   */
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
   * Stops every task of the sandbox, all containers, at its next syscall boundary or preemption
   * point (a guest computing without syscalls reaches one every ~100 µs); fails if already paused.
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
  /**
   * Publishes a port of the sandbox's loopback on the host until the scope closes (runsc
   * port-forward): the caller chose the host address, so any is taken. Fails when the host
   * refuses it, or when the sandbox's network is `none`.
   */
  readonly forward: (port: PublishedPort) => Effect.Effect<void, PublishFailed, Scope.Scope>
}

export class Loader extends Context.Tag("@runsc/loader/Loader")<Loader, LoaderShape>() {
  /**
   * The sandbox's memory (its /proc/meminfo total, the ceiling of what its guests hold: guest
   * memory, a share per process, in-memory files) is the root container's
   * `linux.resources.memory.limit` when set, capped at the host's, as runsc sizes its sandbox by
   * the pod's cgroup; else half the host's (defaultTotalMemory); `kernel.totalMemory` overrides it.
   */
  static layer(args: LoaderArgs): Layer.Layer<Loader, InvalidContainerId | InvalidSpec | BundleNotFound | PublishFailed> {
    return Layer.unwrapEffect(Effect.map(
      typeof args.bundle === "string" ? loadBundle(args.bundle) : Effect.succeed(args.bundle),
      (bundle) => {
        const limit = memoryLimitOf(bundle.spec)
        const totalMemory = args.kernel?.totalMemory ?? (limit !== undefined ? Math.min(limit, Os.totalmem()) : undefined)
        return Layer.unwrapScoped(Effect.map(networkOf(args, bundle.spec), (network) =>
          Layer.scoped(Loader, makeLoader({ ...args, bundle, network })).pipe(
            Layer.provide(Kernel.layer({
              network,
              ...args.kernel,
              ...(totalMemory !== undefined ? { totalMemory } : {})
            }))
          )))
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

/** 127.0.0.0/8, ::1 or localhost: a host address only this host reaches. */
const isLoopbackHost = (address: string): boolean =>
  address === "localhost" || address === "::1" || (Net.isIPv4(address) && address.startsWith("127."))

/** What ps shows of a process; pids are root-namespace pids (`root`). */
const describeProcess = (root: PidNamespace<ThreadGroup>) => (tg: ThreadGroup): ProcessInfo => ({
  pid: tg.rootPid,
  ppid: tg.parent?.rootPid ?? 0,
  pgid: tg.group.idIn(root),
  tpgid: tg.terminal?.foreground?.idIn(root) ?? -1,
  uid: tg.uid,
  containerId: tg.containerId,
  state: tg.state,
  argv: tg.argv,
  syscalls: tg.inKernel.syscalls,
  startedAt: tg.startedAt,
  cpuTime: tg.cpuTime
})

const byPid = (a: ProcessInfo, b: ProcessInfo) => a.pid - b.pid

/**
 * The sandbox's one network namespace, shared by its containers (a pod's localhost), for the
 * enclosing scope (the egress's host connections end with it): `args.networkMode`, with the
 * root container's egress policy.
 */
const networkOf = (args: LoaderArgs, spec: Spec): Effect.Effect<Network, InvalidSpec, Scope.Scope> => {
  if (args.kernel?.network !== undefined) return Effect.succeed(args.kernel.network)
  const egress = egressRulesOf(spec)
  const egressPath = `annotations["${EGRESS_ANNOTATION}"]`
  if ("reason" in egress) return Effect.fail(new InvalidSpec({ path: egressPath, reason: egress.reason }))
  const logConnections = args.logConnections ?? false
  if (args.networkMode === "host") return makeHostNetwork({ logConnections })
  if (args.networkMode !== "none") return makeSandboxNetwork(egress.rules, { logConnections })
  const published = publishedPortsOf(spec)
  const refused = egress.rules.length > 0 ? egressPath : "ports" in published && published.ports.length > 0 ? PUBLISH_PATH : undefined
  return refused === undefined
    ? Effect.succeed(makeLoopbackNetwork({ logConnections }))
    : Effect.fail(new InvalidSpec({ path: refused, reason: "the sandbox's network is none (loopback only): nothing is published and nothing is reached beyond it" }))
}

const PUBLISH_PATH = `annotations["${PUBLISH_ANNOTATION}"]`

const trafficOf = (traffic: NetworkTraffic): ContainerStats["network"] => ({
  rx_bytes: traffic.receivedBytes,
  tx_bytes: traffic.sentBytes,
  rx_packets: traffic.receivedDatagrams,
  tx_packets: traffic.sentDatagrams,
  accepted: traffic.accepted,
  connected: traffic.connected,
  refused: traffic.refused
})

const makeLoader = (args: LoaderArgs & { readonly bundle: Bundle; readonly network: Network }) =>
  Effect.gen(function*() {
    const kernel = yield* Kernel
    const rootId = yield* validateContainerId(args.containerId)
    const rootBundle = args.bundle
    // The registry: a lookup reads it, with no lock; creating an id and forgetting a destroyed
    // container are its only changes. Everything else of a container is its actor's.
    const registry = yield* SynchronizedRef.make<ReadonlyMap<string, Container>>(new Map())
    // Every container's scope is a child of this one, forked before the sandbox's own
    // kill-and-wait finalizer below is added: finalizers run in reverse, so at teardown every
    // process is dead before any container releases what its processes used. Containers close
    // in reverse order of creation: the root last.
    const containersScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    // The containers' actors: made after, so interrupted before the containers close.
    const actors = yield* FiberSet.make()
    /** The root container has started, or a signal has stopped it before its start. */
    const rootSettled = yield* Deferred.make<void>()
    // Weighs the containers' CPU time while they contend (their specs' cpu.shares).
    const cpuShares = yield* makeCpuShares(kernel)

    /** A container's published ports (PUBLISH_ANNOTATION), listened on for the enclosing scope. */
    const publishPortsOf = (spec: Spec): Effect.Effect<void, InvalidSpec | PublishFailed, Scope.Scope> =>
      Effect.gen(function*() {
        const published = publishedPortsOf(spec)
        if ("reason" in published) return yield* new InvalidSpec({ path: PUBLISH_PATH, reason: published.reason })
        if (published.ports.length > 0 && args.networkMode === "none") {
          return yield* new InvalidSpec({ path: PUBLISH_PATH, reason: "the sandbox's network is none (loopback only): nothing is published" })
        }
        const beyond = published.ports.find((port) => !isLoopbackHost(port.hostAddress))
        if (beyond !== undefined && args.publishBeyondLoopback !== true) {
          return yield* new InvalidSpec({ path: PUBLISH_PATH, reason: `${beyond.hostAddress} is not a loopback address of the host: publishing beyond it is not allowed here` })
        }
        yield* Effect.forEach(published.ports, (port) => publishPort(args.network, port, { memory: kernel.memory }), { discard: true })
      })

    const sandbox: Sandbox = {
      kernel,
      cpuShares,
      // A sub-container's published ports, until it is destroyed (the root's are the sandbox's,
      // published at its start); a port the host cannot give fails its start, typed as a listen's.
      publish: (container, spec) =>
        container === rootContainer
          ? Effect.void
          : Effect.catchTag(publishPortsOf(spec), "PublishFailed", (e) => new InvalidSpec({ path: PUBLISH_PATH, reason: e.message })),
      listen: (tasks, address) =>
        listenOn(args.network, { memory: tasks.memory ?? kernel.memory, traffic: tasks.traffic, containerId: tasks.containerId }, address),
      namespaceAt: (path) =>
        Effect.map(SynchronizedRef.get(registry), (map) => [...map.values()].find((c) => c.pidNamespacePath === path)?.pidNamespace),
      started: (container) => container === rootContainer ? Deferred.succeed(rootSettled, undefined) : Effect.void,
      // The sandbox lives exactly as long as its root init.
      stopped: (container) => container === rootContainer ? Effect.zipRight(Deferred.succeed(rootSettled, undefined), killAll) : Effect.void,
      destroyed: (container) =>
        SynchronizedRef.update(registry, (map) => {
          if (map.get(container.id) !== container) return map
          const rest = new Map(map)
          rest.delete(container.id)
          return rest
        })
    }

    const newContainer = (id: string, created?: CreatedWith) => Container.make(id, sandbox, containersScope, actors, created)

    const rootContainer = yield* newContainer(rootId)
    yield* SynchronizedRef.set(registry, new Map([[rootId, rootContainer]]))

    const find = (id: string) =>
      Effect.flatMap(SynchronizedRef.get(registry), (map) => {
        const container = map.get(id)
        return container ? Effect.succeed(container) : Effect.fail(new ContainerNotFound({ id }))
      })

    const initOf = (container: Container) =>
      container.init ? Effect.succeed(container.init) : Effect.fail(new ContainerNotStarted({ id: container.id }))

    /** The sandbox ends: no process may start any more, and every one is killed. */
    const killAll = Effect.suspend(() => {
      kernel.rootPidNamespace.refuseNew()
      return Effect.flatMap(kernel.processes, kernel.killAll)
    })

    const awaitAll = Effect.flatMap(kernel.processes, (all) =>
      Effect.forEach(all, (tg) => Deferred.await(tg.exitStatus), { discard: true }))

    const dumpState = Effect.gen(function*() {
      const all = yield* kernel.processes
      const containers = [...(yield* SynchronizedRef.get(registry)).values()]
      return [
        `sandbox ${rootId}: ${containers.length} container(s), ${all.length} process(es)`,
        ...containers.map((c) => `  container ${c.id}: ${c.state}`),
        ...all.map((tg) =>
          `  pid ${tg.rootPid} [${tg.containerId}] ${tg.state}${tg.killedBy ? ` (${signalName(tg.killedBy)})` : ""} ` +
          `syscalls=${tg.inKernel.syscalls} argv=${JSON.stringify(tg.argv)}`
        )
      ].join("\n")
    })

    // Teardown: SIGKILL, wait for every process to exit; the kernel (provided below this
    // layer) is released only after this finalizer has returned.
    yield* Effect.addFinalizer(() => Effect.zipRight(killAll, awaitAll))

    // The root container's published ports, listened on from now until the sandbox ends (their
    // finalizers run before the kill above: no host connection is bridged to a dying guest).
    yield* publishPortsOf(rootBundle.spec)

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

    const rootOptions = { hostProgram: args.hostProgram, homeFromPasswd: args.homeFromPasswd }

    const shape: LoaderShape = {
      containerId: rootId,
      bundle: rootBundle,

      startRoot: rootContainer.start(Effect.succeed(rootBundle), args.stdio ?? {}, rootOptions).pipe(
        // Its bundle was loaded with the layer.
        Effect.catchTag("BundleNotFound", (e) => Effect.die(e))
      ),

      prepareRoot: rootContainer.prepare(Effect.succeed(rootBundle), args.stdio ?? {}, rootOptions).pipe(
        Effect.catchTag("BundleNotFound", (e) => Effect.die(e))
      ),

      waitExit: Effect.gen(function*() {
        const status = yield* Effect.raceFirst(
          rootContainer.exitStatus,
          Effect.flatMap(kernel.panicked, (reason) => Effect.fail(new SandboxPanicked({ reason })))
        )
        yield* killAll
        return status
      }),

      awaitRootExit: Effect.raceFirst(
        Deferred.await(rootSettled),
        Effect.flatMap(kernel.panicked, (reason) => Effect.fail(new SandboxPanicked({ reason })))
      ).pipe(
        Effect.zipRight(Effect.suspend(() => shape.waitExit)),
        // Settled: waitExit cannot fail ContainerNotStarted any more.
        Effect.catchTag("ContainerNotStarted", () => Effect.dieMessage("root container settled with no exit status"))
      ),

      rootFault: Effect.sync(() => rootContainer.init?.fault),

      signal: (signo) =>
        Effect.gen(function*() {
          yield* checkSignal(signo)
          yield* signalProcess(yield* initOf(rootContainer), signo)
        }),

      // The registry's one sandbox-wide step: making the container's scope, task set and actor.
      // A create that fails owns nothing: the trees it was given are closed.
      createSubcontainer: (id, created) =>
        Effect.flatMap(validateContainerId(id), (id) =>
          SynchronizedRef.updateEffect(registry, (map) =>
            map.has(id)
              ? Effect.fail(new ContainerExists({ id }))
              : Effect.map(newContainer(id, created), (container) => new Map([...map, [id, container]])))).pipe(
            Effect.tapError(() => Effect.sync(() => created?.trees?.close()))
          ),

      // The bundle is read in the container's turn: one that cannot be loaded fails the start,
      // and a created container is then stopped.
      startSubcontainer: ({ bundle, containerId, stdio }) =>
        Effect.flatMap(find(containerId), (container) => {
          const given = container.created?.bundle
          const loaded = given !== undefined
            ? Effect.succeed(given)
            : bundle === undefined
            ? Effect.fail(new InvalidSpec({ path: "", reason: `container ${containerId} was given no bundle at its create, nor at its start` }))
            : typeof bundle === "string"
            ? loadBundle(bundle)
            : Effect.succeed(bundle)
          return container.start(loaded, stdio ?? {})
        }),

      // Uninterruptible: once sent, a destroy completes, and its caller returns when it has.
      destroySubcontainer: (id) =>
        Effect.uninterruptible(Effect.flatMap(find(id), (container) => container.destroy)).pipe(
          Effect.catchTag("ContainerNotFound", () => Effect.void)
        ),

      // The program is found, read and compiled outside the container's turn (a compile takes
      // long); in its turn the container is checked again and the process started, its module
      // found in the cache.
      execute: (exec) =>
        Effect.scoped(Effect.gen(function*() {
          const container = yield* find(exec.containerId)
          const base = yield* container.execBase
          const process = base.spec.process!
          const prepared = yield* prepareLaunch(kernel, {
            ...base,
            argv: exec.argv,
            env: exec.env ?? process.env ?? [],
            cwd: exec.cwd ?? process.cwd,
            uid: exec.uid ?? process.user?.uid ?? 0,
            stdio: exec.stdio ?? {},
            terminal: exec.terminal ?? false
          }).pipe(
            // A destroy meanwhile closes the trees the preparation reads: what failed is the container.
            Effect.tapError(() => container.execBase)
          )
          return yield* container.exec(prepared)
        })),

      wait: (id) => Effect.flatMap(find(id), (container) => container.exitStatus),
      awaitExit: (id) => Effect.flatMap(find(id), (container) => Effect.zipRight(container.settled, container.exitStatus)),

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
          // A container with no init yet is signalled in its turn, where the signal may stop
          // it (or find it stopped: NoSuchProcess); started meanwhile, its init (then its only
          // process) gets the signal.
          if (container.init === undefined && pid === 0 && (mode === "Process" || mode === "AllProcesses")) {
            return yield* container.signalInit(signo)
          }
          const init = yield* initOf(container)
          switch (mode) {
            case "Process":
              return yield* signalProcess(pid === 0 ? init : yield* processOf(container, pid), signo)
            case "AllProcesses":
              if (pid !== 0) return yield* new InvalidPid({ pid, reason: "AllProcesses takes pid 0" })
              // A process created meanwhile (a guest's spawn, an exec) is signalled with the rest
              // or refused (Container.signalAll).
              return yield* container.signalAll(signo)
            case "ProcessGroup": {
              // The whole group the process belongs to, as kill(-pgid) would reach it.
              const member = yield* processOf(container, pid)
              return yield* signalGroup(member.group.members, signo, member.rootPid)
            }
            case "ForegroundProcessGroup": {
              // The foreground group of the terminal the process's session controls.
              const member = pid === 0 ? init : yield* processOf(container, pid)
              const terminal = member.terminal
              if (terminal === undefined) return yield* new NoTerminal({ id, pid })
              const foreground = terminal.foreground
              // No foreground group (it has ended): the signal reaches nobody, as on Linux.
              if (foreground === undefined) return
              return yield* signalGroup(foreground.members, signo, member.rootPid)
            }
          }
        }),

      processes: (id) =>
        Effect.map(find(id), (container) => container.tasks.live.map(describeProcess(kernel.rootPidNamespace)).sort(byPid)),

      allProcesses: Effect.map(kernel.processes, (all) => all.filter((tg) => tg.isAlive).map(describeProcess(kernel.rootPidNamespace))),

      runtimeState: (id) =>
        Effect.map(find(id), (container) =>
          container.state === "created" ? "creating"
          : container.state === "running" && container.init?.isAlive ? "running"
          : "stopped"),

      event: (id) =>
        Effect.gen(function*() {
          const container = yield* find(id)
          return {
            // Every process it has had, reaped ones included, as a cgroup's cpuacct counts.
            cpu: { usage: { total: container.tasks.cpuTime } },
            // What its account holds: its processes' guest memory and shares, its in-memory files.
            memory: {
              usage: {
                usage: container.tasks.memory?.used ?? 0,
                limit: container.tasks.memory?.total ?? kernel.memory.total,
                failcnt: container.tasks.memory?.failures ?? 0
              }
            },
            pids: { current: container.tasks.live.length },
            network: trafficOf(container.tasks.traffic)
          }
        }),

      pause: Effect.flatMap(kernel.pause, (done) => (done ? Effect.void : Effect.fail(new AlreadyPaused({ id: rootId })))),
      resume: Effect.flatMap(kernel.resume, (done) => (done ? Effect.void : Effect.fail(new NotPaused({ id: rootId })))),
      isPaused: kernel.isPaused,
      sandboxStats: Effect.zipWith(kernel.workerStats, kernel.processes, (workers, all) => ({
        processes: all.filter((tg) => tg.isAlive).length,
        unreaped: all.filter((tg) => !tg.isAlive).length,
        workerThreads: workers.threads,
        idleWorkers: workers.idle,
        memory: { total: kernel.memory.total, used: kernel.memory.used },
        modules: kernel.modules.stats
      })),

      pipe: kernel.makePipe,
      forward: (port) =>
        args.networkMode === "none"
          ? Effect.fail(new PublishFailed({ address: `${port.hostAddress}:${port.hostPort}`, reason: "the sandbox's network is none" }))
          : publishPort(args.network, port, { memory: kernel.memory }),
      dumpState
    }

    yield* handleHostSignals({
      forward: args.forwardSignals ?? false,
      panicSignal: args.panicSignal,
      deliver: (signo) => {
        const init = rootContainer.init
        // Created, not started: as `runsc kill` of it, and as runc's waiting init takes a
        // signal sent to its pid, a terminating signal ends the container (and the sandbox).
        if (init === undefined) return Effect.ignore(rootContainer.signalInit(signo))
        // What a host terminal generates (^C, ^Z, ...) is for the job in its foreground.
        const foreground = init.terminal?.foreground
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
