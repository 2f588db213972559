/**
 * The Kernel: a scoped service that owns every process of the sandbox — the PID namespaces, the
 * worker pool, the module cache and one fiber per task serving its syscalls. This module only
 * composes the kernel's parts, each of which owns one concept:
 *   - task/: a process's birth (lifecycle), its task (runTask), the process tree and reaping
 *     (processTree), proc_spawn (spawn), the sandbox-wide pause (pause);
 *   - signal/: delivery with default actions, stop and continue (deliver), fatal signals and
 *     the end of a killed task (kill), the kernel panic (panic);
 *   - platform/: worker threads (pool), the channel, the fast paths lent to workers;
 *   - syscalls/: the handlers and the loop that serves them.
 *
 * Invariants: a process's exit status is completed only after its worker has stopped running
 * guest code and its fds are closed; closing the kernel's scope interrupts every task fiber,
 * each of which terminates its worker, before the pool's finalizer terminates the rest.
 */
import { Clock, Context, Effect, FiberSet, Layer, type Scope } from "effect"
import { Errno } from "@runsc/abi"
import { fail, type InvalidModule, type ProcessCreationRefused, type SandboxOutOfMemory } from "./errors.js"
import { ContentCache } from "./fs/contentCache.js"
import { DescriptionRefs } from "./fs/fdTable.js"
import { HostFdBudget } from "./fs/hostFds.js"
import { HostSocketFiles } from "./fs/hostSocketFiles.js"
import { type MakeMountNamespace, makeMountNamespaces } from "./fs/mountNamespace.js"
import { makePipe, type Pipe, PIPE_CAPACITY } from "./fs/pipe.js"
import type { SystemInfo } from "./fs/procfs.js"
import { defaultHeapShare, defaultTotalMemory, MemoryAccount, PROCESS_BUDGET, WASM_PAGE } from "./memoryAccount.js"
import { offThread } from "./platform/instrumenter.js"
import { ModuleCache } from "./platform/moduleCache.js"
import { type GuestPlatform, makeWorkerPool, type WorkerPoolStats } from "./platform/pool.js"
import type { StartingThread } from "./platform/startThread.js"
import { makeSignal } from "./signal/deliver.js"
import { makeKill } from "./signal/kill.js"
import { oomKill } from "./task/oomKiller.js"
import type { Network, SocketOwner } from "./net/socket.js"
import { makePanic } from "./signal/panic.js"
import type { KernelServices } from "./syscalls/context.js"
import type { StraceOptions } from "./syscalls/strace.js"
import { makeSyscallTable } from "./syscalls/table.js"
import { growMemory } from "./task/guestMemory.js"
import { makeStartProcess, type ProcessArgs } from "./task/lifecycle.js"
import { SandboxPause } from "./task/pause.js"
import { PidNamespace } from "./task/pidNamespace.js"
import { makeProcessTree, newGroup } from "./task/processTree.js"
import { makeTaskRunner } from "./task/runTask.js"
import { makeSpawn, type Spawn } from "./task/spawn.js"
import type { TaskSet, ThrottleReason } from "./task/taskSet.js"
import type { ThreadGroup } from "./task/threadGroup.js"
import { makeWatchdog, type WatchdogOptions } from "./watchdog/watchdog.js"

export type { ProcessArgs }

export interface KernelOptions {
  /** Idle workers kept started ahead of need (default 1). */
  readonly warmWorkers?: number
  /** Workers started with the kernel (default: warmWorkers). */
  readonly prestartWorkers?: number
  /** Worker threads started before the kernel (`startGuestThread`), for its pool to adopt. */
  readonly startedThreads?: ReadonlyArray<StartingThread>
  /** Where guest threads come from (default: worker threads). */
  readonly platform?: GuestPlatform
  /** Runs the watchdog; its "panic" action panics the kernel. */
  readonly watchdog?: Omit<WatchdogOptions, "onPanic">
  readonly strace?: StraceOptions
  /**
   * Processes the sandbox may hold at once, zombies included (default 512, and never more than
   * its memory holds of small processes, totalMemory / PROCESS_BUDGET, nor than the worker
   * threads its host descriptors hold beside the guests' files and the control plane's reserve,
   * HostFdBudget.workerThreads): past it proc_spawn fails EAGAIN, so a fork bomb exhausts the
   * sandbox's budget and not the host's threads, memory or the control plane's descriptors.
   */
  readonly maxProcesses?: number
  /**
   * The sandbox's memory, in bytes: the ceiling of its memory account (guest memory, in-memory
   * files, a share per process; see MemoryAccount) and /proc/meminfo's total. Default: half the
   * host's memory (defaultTotalMemory).
   */
  readonly totalMemory?: number
  /**
   * Bytes of the sentry's JS heap that guests may fill with what they make there (tmpfs inodes
   * and names), sandbox-wide; past it such a change fails ENOSPC. Default: half of V8's heap
   * limit (defaultHeapShare), so that no guest can abort the sandbox process with a full heap.
   */
  readonly heapShare?: number
  /** Bytes of compiled modules no process uses that the module cache keeps (default 128 MiB). */
  readonly moduleCacheBytes?: number
  /** The host descriptors guests may hold (default: HostFdBudget.ofProcess, half the process's RLIMIT_NOFILE). */
  readonly hostFds?: HostFdBudget
  /** The sandbox's network (packages/netstack), where guests' sockets are made; without one, sock_open fails EAFNOSUPPORT. */
  readonly network?: Network
}

const DEFAULT_MAX_PROCESSES = 512

export interface KernelShape {
  readonly rootPidNamespace: PidNamespace<ThreadGroup>
  /** The memory the sandbox has (/proc/meminfo's total; the ceiling of `memory`). */
  readonly totalMemory: number
  /**
   * What the sandbox's guests hold of its memory: the processes' guest memory and share, and the
   * file data of every in-memory filesystem made with it (tmpfs mounts, overlay upper layers).
   */
  readonly memory: MemoryAccount
  /**
   * Gives a container's set its own memory account within the sandbox's, of `limit` bytes. At
   * the limit a charge is refused (memory.grow returns -1, a tmpfs write ENOSPC); with `kill`, a
   * guest memory grow past it OOM-kills the set's largest process instead (task/oomKiller.ts).
   */
  readonly limitMemory: (set: TaskSet, limit: number, atLimit: "refuse" | "kill") => Effect.Effect<void>
  /** The host descriptors the sandbox's guests may hold (the gofer's files and trees; ENFILE past it). */
  readonly hostFds: HostFdBudget
  readonly modules: ModuleCache
  /** Files the sentry reads whole for itself (programs, /etc/passwd), cached by identity. */
  readonly files: ContentCache
  /**
   * A container's root filesystem and mounts, built from its spec (see fs/mountNamespace.ts):
   * held, with the host descriptors and the sandbox's memory they use, until the scope closes.
   */
  readonly mountNamespace: MakeMountNamespace
  /**
   * Creates a process and starts its task; returns once it is running. SandboxOutOfMemory when
   * the sandbox's memory cannot hold its worker's share and its initial guest memory;
   * ProcessCreationRefused when its container's admission is closed, its PID namespace refuses
   * new processes or its parent has been killed (checked as it is registered: see TaskSet).
   */
  readonly startProcess: (args: ProcessArgs) => Effect.Effect<ThreadGroup, InvalidModule | SandboxOutOfMemory | ProcessCreationRefused>
  /**
   * A set for the processes of one container. Closing the scope it is made in SIGKILLs every
   * process of the set, waits for each to exit (children they spawn included) and reaps them;
   * only then does that scope release what it acquired before the set.
   */
  readonly taskSet: (containerId: string) => Effect.Effect<TaskSet, never, Scope.Scope>
  /**
   * SIGKILLs every process of `members` as one step: each is marked killed before anything else
   * runs (nothing it does meanwhile changes how it ends). Returns once the kills are sent.
   */
  readonly killAll: (members: Iterable<ThreadGroup>) => Effect.Effect<void>
  /** Delivers a signal with its default action (WASI guests install no handlers). */
  readonly signal: (tg: ThreadGroup, signo: number) => Effect.Effect<void>
  /** Every process not yet reaped, by root-namespace pid. */
  readonly processes: Effect.Effect<ReadonlyArray<ThreadGroup>>
  /** Releases an exited process's pids. */
  readonly reap: (tg: ThreadGroup) => Effect.Effect<void>
  /** Ends the sandbox: SIGKILLs every process and records why (watchdog panic, panic signal). */
  readonly panic: (reason: string) => Effect.Effect<void>
  /** Waits until the kernel panics; yields the reason. */
  readonly panicked: Effect.Effect<string>
  /**
   * Stops every task of the sandbox at its next syscall boundary or preemption point (and every
   * task started while paused at its first); false when it was already paused.
   */
  readonly pause: Effect.Effect<boolean>
  /** Lets every task go on; false when the sandbox was not paused. */
  readonly resume: Effect.Effect<boolean>
  readonly isPaused: Effect.Effect<boolean>
  /**
   * Holds every process of a container's set at its next syscall or preemption point while a
   * CPU limit (`reason`) holds it, or lets them go on once no limit does; false when the set's
   * gate did not change. A process that joins the set while it is throttled is held at its
   * first call.
   */
  readonly throttle: (set: TaskSet, reason: ThrottleReason, throttled: boolean) => Effect.Effect<boolean>
  /** The guest worker threads that exist, and how many are idle in the pool. */
  readonly workerStats: Effect.Effect<WorkerPoolStats>
  /** What a process uses: CPU time of its task (ns) and its guest memory (bytes, 0 once ended). */
  readonly usage: (tg: ThreadGroup) => Effect.Effect<ProcessUsage>
  /**
   * A pipe inside the sandbox, to give as stdio to processes the runtime starts. Each end is
   * closed when the last process holding it has exited (an end given to no process stays open
   * until its `close`).
   */
  readonly makePipe: Effect.Effect<Pipe>
}

export interface ProcessUsage {
  readonly cpuNs: bigint
  readonly memoryBytes: number
}

export class Kernel extends Context.Tag("@runsc/kernel/Kernel")<Kernel, KernelShape>() {
  static layer(options: KernelOptions = {}): Layer.Layer<Kernel> {
    return Layer.scoped(Kernel, makeKernel(options))
  }
}

const makeKernel = (options: KernelOptions): Effect.Effect<KernelShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pool = yield* makeWorkerPool({
      warm: options.warmWorkers ?? 1,
      ...(options.prestartWorkers !== undefined ? { prestart: options.prestartWorkers } : {}),
      ...(options.startedThreads ? { adopt: options.startedThreads } : {}),
      ...(options.platform ? { platform: options.platform } : {})
    })
    // Modules are rewritten on a thread of their own: never on the sentry's (instrumenter.ts).
    const modules = new ModuleCache(options.moduleCacheBytes, yield* offThread)
    const rootPidNamespace = new PidNamespace<ThreadGroup>(undefined)
    const descriptionRefs = new DescriptionRefs()
    const files = new ContentCache()
    const memory = new MemoryAccount(options.totalMemory ?? defaultTotalMemory(), undefined, options.heapShare ?? defaultHeapShare())
    const hostFds = options.hostFds ?? (yield* HostFdBudget.ofProcess)
    const maxProcesses = Math.min(options.maxProcesses ?? DEFAULT_MAX_PROCESSES, Math.floor(memory.total / PROCESS_BUDGET), hostFds.workerThreads)
    const system: SystemInfo = { bootTime: yield* Clock.currentTimeNanos, memory }
    let pipesMade = 0n
    // Runs after the task set is interrupted (finalizers run in reverse): a task interrupted
    // before it started never completed its exit status; no waiter may hang on it.
    yield* Effect.addFinalizer(() => Effect.sync(() => rootPidNamespace.processes.forEach(([, tg]) => tg.abandon())))
    // The fibers that end killed tasks (signal/kill.ts).
    const kill = makeKill(yield* FiberSet.make())
    const pause = new SandboxPause(rootPidNamespace)
    const signal = makeSignal(kill, (tg) => pause.setAttention(tg))
    const tree = makeProcessTree(kill, signal)
    // The processes of no container (a kernel used without a Loader): killed and waited for
    // at teardown, after new processes are refused (the finalizer below runs first).
    const ownTasks = yield* tree.taskSet("")
    // Runs first at teardown: from then on no process may start (its task could never run).
    let shutDown = false
    yield* Effect.addFinalizer(() => Effect.sync(() => (shutDown = true)))

    /** Whose a socket `tg` makes is: its container's memory, counters and name. */
    const socketOwner = (tg: ThreadGroup): SocketOwner => ({
      memory: tg.tasks.memory ?? memory,
      containerId: tg.tasks.containerId,
      ...(tg.tasks.traffic !== undefined ? { traffic: tg.tasks.traffic } : {})
    })
    const services: KernelServices = {
      // Made below, from startProcess, which the tasks this serves are started by.
      spawn: (parent, request) => spawn(parent, request),
      signal,
      reap: tree.reap,
      newGroup,
      memoryOf: (tg) => tg.tasks.memory ?? memory,
      // Charged to the container of the process that makes it, as its other memory is.
      newPipe: (tg) => {
        const account = tg.tasks.memory ?? memory
        if (!account.charge(PIPE_CAPACITY)) return undefined
        return makePipe(++pipesMade, () => account.release(PIPE_CAPACITY))
      },
      // Charged to the container of the process that opens it, as its pipes are.
      openSocket: (tg, family, kind) =>
        options.network === undefined ? fail(Errno.AFNOSUPPORT) : options.network.open(family, kind, socketOwner(tg)),
      pairSockets: (tg, family, kind) =>
        options.network === undefined ? fail(Errno.AFNOSUPPORT) : options.network.pair(family, kind, socketOwner(tg)),
      lookupHost: (name) => options.network?.lookupHost?.(name) ?? fail(Errno.NOENT),
      growMemory: growMemory(memory),
      oomKill: oomKill(kill)
    }
    const runTask = makeTaskRunner({
      pool,
      memory,
      descriptionRefs,
      pause,
      signal,
      services,
      syscallTable: makeSyscallTable(),
      strace: options.strace,
      leaveProcessTree: tree.leave
    })
    const startProcess = makeStartProcess({
      modules,
      memory,
      rootPidNamespace,
      descriptionRefs,
      system,
      ownTasks,
      runTask,
      kill,
      isShutDown: () => shutDown
    })
    const spawn: Spawn = makeSpawn({ startProcess, files, rootPidNamespace, maxProcesses })

    const { panic, panicked } = yield* makePanic(rootPidNamespace, kill)
    const processes = Effect.sync(() => rootPidNamespace.processes.map(([, tg]) => tg).sort((a, b) => a.rootPid - b.rootPid))
    if (options.watchdog) yield* makeWatchdog({ ...options.watchdog, onPanic: panic }, processes)

    return {
      rootPidNamespace,
      totalMemory: memory.total,
      memory,
      limitMemory: (set, limit, atLimit) =>
        Effect.sync(() => {
          set.memory = memory.child(limit)
          set.oomKill = atLimit === "kill"
        }),
      hostFds,
      modules,
      files,
      mountNamespace: makeMountNamespaces(memory, hostFds, new HostSocketFiles()),
      startProcess,
      taskSet: tree.taskSet,
      killAll: kill.all,
      signal,
      processes,
      reap: tree.reap,
      panic,
      panicked,
      pause: Effect.sync(() => pause.pause()),
      resume: Effect.sync(() => pause.resume()),
      isPaused: Effect.sync(() => pause.paused !== undefined),
      throttle: (set, reason, throttled) => Effect.sync(() => pause.throttle(set, reason, throttled)),
      workerStats: pool.stats,
      makePipe: Effect.sync(() => makePipe(++pipesMade)),
      usage: (tg) =>
        Effect.sync(() => ({ cpuNs: tg.cpuTime, memoryBytes: tg.worker === undefined ? 0 : tg.memoryPages * WASM_PAGE }))
    }
  })
