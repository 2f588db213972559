/**
 * A thread group (process): its pids, its fd table, its filesystem view and how it ended.
 * With WASI preview1 a group has exactly one task (one worker running one instance); the
 * structure keeps the group/task split of the kernel so threads can come later.
 *
 * Invariant: `exitStatus` is completed exactly once, after the task's worker has stopped
 * running guest code and the fd table has been closed.
 */
import type { ExitStatus } from "@runsc/abi"
import { Deferred, type Fiber, FiberId } from "effect"
import { Changes } from "../changes.js"
import type { FdTable } from "../fs/fdTable.js"
import type { SyntheticMount } from "../fs/synthetic.js"
import type { Dentry } from "../fs/resolve.js"
import type { GuestThread } from "../platform/pool.js"
import type { PidNamespace } from "./pidNamespace.js"
import type { ProcessGroup } from "./session.js"
import type { TaskSet } from "./taskSet.js"

export type ProcessState = "running" | "stopped" | "exiting" | "exited"

export class ThreadGroup {
  state: ProcessState = "running"
  /** The signal that is ending this group, once one is. */
  killedBy: number | undefined
  /**
   * Why the guest faulted, when a fault ended it (a wasm trap, or an exception out of its
   * instance that is not one), in words: "wasm trap: call stack exhausted". Set with the exit
   * status.
   */
  fault: string | undefined
  worker: GuestThread | undefined
  /** The fiber serving the task's syscalls, while it runs. */
  server: Fiber.RuntimeFiber<never> | undefined
  /** While stopped: completed by SIGCONT; the task waits on it at its next syscall. */
  continued: Deferred.Deferred<void> | undefined
  readonly exitStatus: Deferred.Deferred<ExitStatus> = Deferred.unsafeMake(FiberId.none)
  /** Syscalls the sentry has served for the group (state dumps). */
  syscalls = 0
  /**
   * The syscall (its number) the sentry is serving for this group's task, or -1 when the task
   * is not inside the kernel. Set when the sentry starts serving a request, cleared when it
   * publishes the response (and when the serving fiber ends). Read by the watchdog.
   */
  currentSyscall = -1
  /** Clock nanoseconds at which the sentry started serving `currentSyscall` (meaningful while it is ≥ 0). */
  syscallEnteredAt = 0n
  /**
   * The current syscall waits for something the guest chose to wait for (a sleep, input on a
   * stream), not for the sentry: the watchdog does not count it as stuck, as runsc counts only
   * tasks running in the kernel.
   */
  syscallBlocked = false
  /** Pages of guest memory charged to the sandbox's memory for this process (its memory's size). */
  memoryPages = 0
  /** Bytes charged to the sandbox's memory for the rest of the process: its worker's share, its tables. */
  memoryShare = 0
  /** Pages its memory may grow to (the module's declared maximum). */
  maximumMemoryPages = 0
  /** CPU time (ns) the group's worker thread had used when the task started on it. */
  cpuAtStart = 0n
  /** CPU time (ns) the task used, once it has ended. */
  cpuUsed: bigint | undefined

  /**
   * The process that waits for this one (proc_join); undefined for processes the runtime
   * started (container inits, execs: the Loader waits for them) and for orphans no init of
   * their container adopted (the sentry reaps those itself).
   */
  parent: ThreadGroup | undefined
  /** Children not yet reaped (running, stopped or zombies). */
  readonly children = new Set<ThreadGroup>()
  /** The sentry reaps this process as soon as it exits: nobody in the sandbox will wait for it. */
  autoReap = false
  /** Set once the process's pids have been released (it is gone from every listing). */
  reaped = false
  /** A child exited or stopped: what a blocked proc_join waits on. */
  readonly childEvents = new Changes()
  /** The signal of a stop not yet reported to a proc_join with WAKE_STOPPED. */
  unreportedStop: number | undefined
  /** Assigned when the process is created. */
  group!: ProcessGroup<ThreadGroup>
  /** Signals whose disposition is "ignore" (proc_sigignore): discarded when sent. */
  ignoredSignals: ReadonlySet<number> = new Set()

  constructor(
    /** Pid in each namespace of the lineage, innermost first. */
    readonly ids: ReadonlyMap<PidNamespace<ThreadGroup>, number>,
    readonly pidNamespace: PidNamespace<ThreadGroup>,
    /** The processes of its container, its children's too. */
    readonly tasks: TaskSet,
    readonly argv: ReadonlyArray<string>,
    readonly env: ReadonlyArray<string>,
    readonly root: Dentry,
    readonly cwd: Dentry,
    readonly fdTable: FdTable,
    /** Wall-clock nanoseconds at creation (ps's STIME). */
    readonly startedAt: bigint,
    readonly uid: number,
    /** Where the process sees procfs; its children see it in the same places. */
    readonly syntheticMounts: ReadonlyArray<SyntheticMount>
  ) {}

  get containerId(): string {
    return this.tasks.containerId
  }

  /** The pid in the group's own namespace (what the guest would see as its pid). */
  get pid(): number {
    return this.ids.get(this.pidNamespace)!
  }

  /** The pid in the root namespace (what the host-side tools show). */
  get rootPid(): number {
    let pid = this.pid
    for (const [ns, id] of this.ids) if (ns.parent === undefined) pid = id
    return pid
  }

  /** The pid of this process as seen from `ns` (0 when it has none there). */
  pidIn(ns: PidNamespace<ThreadGroup>): number {
    return this.ids.get(ns) ?? 0
  }

  get isAlive(): boolean {
    return this.state === "running" || this.state === "stopped"
  }
}
