/**
 * A thread group (process): its pids, its fd table, its filesystem view and how it ended.
 * With WASI preview1 a group has exactly one task (one worker running one instance); the
 * structure keeps the group/task split of the kernel so threads can come later.
 *
 * Its state is private: other modules read it through getters and change it only through the
 * methods below, each of which is one transition of the process's life (stop, continue, the
 * start and end of its task, an exit, a reparent, a reap) and keeps the fields it touches
 * consistent with each other. The methods are synchronous and only record: what a transition
 * sets off elsewhere (a worker to end, a parent to signal, pids to release) is for the kernel's
 * modules that call them (signal/, task/processTree.ts, task/runTask.ts).
 *
 * Invariant: `exitStatus` is completed exactly once, after the task's worker has stopped
 * running guest code and the fd table has been closed.
 */
import { type ExitStatus, SIGKILL, signaled } from "@runsc/abi"
import { Deferred, Exit, type Fiber, FiberId, type FiberSet } from "effect"
import { Changes } from "../changes.js"
import type { NetworkTraffic } from "../net/socket.js"
import type { FdTable } from "../fs/fdTable.js"
import { type MemoryAccount, WASM_PAGE } from "../memoryAccount.js"
import type { SyntheticMount } from "../fs/synthetic.js"
import type { Dentry } from "../fs/resolve.js"
import type { GuestThread } from "../platform/pool.js"
import type { PidNamespace } from "./pidNamespace.js"
import type { ControllingTerminal, ProcessGroup } from "./session.js"
import { SyscallAccount } from "./syscallAccount.js"

export type ProcessState = "running" | "stopped" | "exiting" | "exited"

/**
 * What a process and the kernel need of the task set of its container (a TaskSet, which
 * implements it): declared here, with the member, so that the set can name its members and a
 * member its set without the two modules importing each other.
 */
export interface Membership {
  /** The container's id (state dumps, errors). */
  readonly containerId: string
  /** Where the tasks of its processes run. */
  readonly fibers: FiberSet.FiberSet
  /** Whether a new process may join now (invariant 5). */
  readonly isOpen: boolean
  /** Whether it holds as many processes as its limit allows (a new one is refused, EAGAIN). */
  readonly isFull: boolean
  readonly limit: number | undefined
  /** While a CPU limit holds it: completed when it may run again (Kernel.throttle). */
  readonly throttled: Deferred.Deferred<void> | undefined
  /** Its container's memory account, when it has one of its own; else the sandbox's is charged. */
  readonly memory: MemoryAccount | undefined
  /** Whether a grow past its memory limit OOM-kills rather than fails (task/oomKiller.ts). */
  readonly oomKill: boolean
  /** The process its OOM killer last chose, and how many it has killed. */
  oomVictim: ThreadGroup | undefined
  oomKills: number
  /** What its processes' sockets carried; undefined where nobody counts (a bare Membership). */
  readonly traffic?: NetworkTraffic
  /** Its processes that are running or stopped. */
  readonly live: ReadonlyArray<ThreadGroup>
  add(tg: ThreadGroup): void
  remove(tg: ThreadGroup): void
}

/** Where a new process stands in the process tree and its job control, and what it inherits. */
export interface Placement {
  /** The process that waits for it (proc_join); undefined for the runtime's own processes. */
  readonly parent: ThreadGroup | undefined
  readonly group: ProcessGroup<ThreadGroup>
  readonly ignoredSignals: ReadonlySet<number>
}

/** What the sandbox's memory holds for a process when it is created (see MemoryAccount). */
export interface MemoryCharge {
  /** Bytes for the rest of the process: its worker's share, its tables. */
  readonly share: number
  /** Pages of guest memory it starts with. */
  readonly pages: number
  /** Pages its memory may grow to (the module's declared maximum). */
  readonly maximumPages: number
}

export class ThreadGroup {
  private _state: ProcessState = "running"
  private _killedBy: number | undefined
  private _fault: string | undefined
  private _worker: GuestThread | undefined
  private _server: Fiber.RuntimeFiber<never> | undefined
  private _continued: Deferred.Deferred<void> | undefined
  private _memoryPages: number
  private _memoryShare: number
  private _cpuAtStart = 0n
  private _cpuUsed: bigint | undefined
  private _parent: ThreadGroup | undefined
  private readonly _children = new Set<ThreadGroup>()
  private _autoReap = false
  private _reaped = false
  private _unreportedStop: number | undefined
  private _group!: ProcessGroup<ThreadGroup>
  private _ignoredSignals: ReadonlySet<number> = new Set()

  readonly exitStatus: Deferred.Deferred<ExitStatus> = Deferred.unsafeMake(FiberId.none)
  /** A child exited or stopped: what a blocked proc_join waits on. */
  readonly childEvents = new Changes()
  /** Pages its memory may grow to (the module's declared maximum). */
  readonly maximumMemoryPages: number

  /** The syscall server's record of the task's calls (read by state dumps, kill and the watchdog). */
  readonly inKernel = new SyscallAccount()

  constructor(
    /** Pid in each namespace of the lineage, innermost first. */
    readonly ids: ReadonlyMap<PidNamespace<ThreadGroup>, number>,
    readonly pidNamespace: PidNamespace<ThreadGroup>,
    /** The processes of its container, its children's too. */
    readonly tasks: Membership,
    readonly argv: ReadonlyArray<string>,
    readonly env: ReadonlyArray<string>,
    readonly root: Dentry,
    readonly cwd: Dentry,
    readonly fdTable: FdTable,
    /** Wall-clock nanoseconds at creation (ps's STIME). */
    readonly startedAt: bigint,
    readonly uid: number,
    /** Where the process sees procfs; its children see it in the same places. */
    readonly syntheticMounts: ReadonlyArray<SyntheticMount>,
    memory: MemoryCharge
  ) {
    this._memoryShare = memory.share
    this._memoryPages = memory.pages
    this.maximumMemoryPages = memory.maximumPages
  }

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

  get state(): ProcessState {
    return this._state
  }

  get isAlive(): boolean {
    return this._state === "running" || this._state === "stopped"
  }

  /** The signal that is ending this group, once one is. */
  get killedBy(): number | undefined {
    return this._killedBy
  }

  /**
   * Why the guest faulted, when a fault ended it (a wasm trap, or an exception out of its
   * instance that is not one), in words: "wasm trap: call stack exhausted". Set with the exit
   * status.
   */
  get fault(): string | undefined {
    return this._fault
  }

  /** The worker thread running the task, while it runs. */
  get worker(): GuestThread | undefined {
    return this._worker
  }

  /** The fiber serving the task's syscalls, while it runs. */
  get server(): Fiber.RuntimeFiber<never> | undefined {
    return this._server
  }

  /** While stopped: completed by SIGCONT; the task waits on it at its next syscall. */
  get continued(): Deferred.Deferred<void> | undefined {
    return this._continued
  }

  /** Pages of guest memory charged to the sandbox's memory for this process (its memory's size). */
  get memoryPages(): number {
    return this._memoryPages
  }

  /** Bytes charged to the sandbox's memory for the rest of the process: its worker's share, its tables. */
  get memoryShare(): number {
    return this._memoryShare
  }

  /** CPU time (ns) the group's worker thread had used when the task started on it. */
  get cpuAtStart(): bigint {
    return this._cpuAtStart
  }

  /** CPU time (ns) the task used, once it has ended. */
  get cpuUsed(): bigint | undefined {
    return this._cpuUsed
  }

  /** CPU time (ns) the task has used: read from its worker thread while it runs, kept once it has ended. */
  get cpuTime(): bigint {
    const worker = this.worker
    if (worker === undefined) return this._cpuUsed ?? 0n
    const cpu = worker.cpuTime - this._cpuAtStart
    return cpu > 0n ? cpu : 0n
  }

  /**
   * The process that waits for this one (proc_join); undefined for processes the runtime
   * started (container inits, execs: the Loader waits for them) and for orphans no init of
   * their container adopted (the sentry reaps those itself).
   */
  get parent(): ThreadGroup | undefined {
    return this._parent
  }

  /** Children not yet reaped (running, stopped or zombies). */
  get children(): ReadonlySet<ThreadGroup> {
    return this._children
  }

  /** The sentry reaps this process as soon as it exits: nobody in the sandbox will wait for it. */
  get autoReap(): boolean {
    return this._autoReap
  }

  /** Set once the process's pids have been released (it is gone from every listing). */
  get reaped(): boolean {
    return this._reaped
  }

  /** The signal of a stop not yet reported to a proc_join with WAKE_STOPPED. */
  get unreportedStop(): number | undefined {
    return this._unreportedStop
  }

  /** Its process group (assigned when the process is placed, see `place`). */
  get group(): ProcessGroup<ThreadGroup> {
    return this._group
  }

  /** The terminal its session controls, if any (job control: its foreground group). */
  get terminal(): ControllingTerminal<ThreadGroup> | undefined {
    return this._group.session.terminal
  }

  /** Signals whose disposition is "ignore" (proc_sigignore): discarded when sent. */
  get ignoredSignals(): ReadonlySet<number> {
    return this._ignoredSignals
  }

  // ---- the process tree and job control ---------------------------------------------------------

  /** Places a newly registered process under its parent and in its group. */
  place(placement: Placement): void {
    this._parent = placement.parent
    placement.parent?._children.add(this)
    this._ignoredSignals = placement.ignoredSignals
    this._group = placement.group
    placement.group.add(this)
  }

  /** setpgid, setsid: leaves its group for `group` (the old group ends with its last member). */
  moveToGroup(group: ProcessGroup<ThreadGroup>): void {
    if (this._group === group) return
    const old = this._group
    group.add(this)
    this._group = group
    old.remove(this)
  }

  /**
   * Its parent has exited: it goes under `init`, which learns of it if it is a zombie already,
   * or, with no init to take it, nobody will wait for it and the sentry reaps it at its exit.
   */
  reparent(init: ThreadGroup | undefined): void {
    this._parent?._children.delete(this)
    this._parent = init
    if (init === undefined) {
      this._autoReap = true
      return
    }
    init._children.add(this)
    if (this._state === "exited") init.childEvents.notify()
  }

  /**
   * Forgets the process in the tree and its group: false when it was reaped already. The
   * caller releases its pids and its place in its task set.
   */
  markReaped(): boolean {
    if (this._reaped) return false
    this._reaped = true
    this._parent?._children.delete(this)
    this._group.remove(this)
    return true
  }

  // ---- signal dispositions and job-control stops -----------------------------------------------

  /** proc_sigignore: sets a signal's disposition to ignore, or back to its default. */
  setIgnored(signo: number, ignore: boolean): void {
    // A new set, not a change of this one: a child may share its parent's set (see `place`).
    const ignored = new Set(this._ignoredSignals)
    if (ignore) ignored.add(signo)
    else ignored.delete(signo)
    this._ignoredSignals = ignored
  }

  /**
   * A stop signal: a running process stops (its task waits at its next syscall until it is
   * continued), and its parent, joining with WAKE_STOPPED, learns of it once. False when it was
   * not running.
   */
  stop(signo: number): boolean {
    if (this._state !== "running") return false
    this._state = "stopped"
    this._continued = Deferred.unsafeMake(FiberId.none)
    this._unreportedStop = signo
    this._parent?.childEvents.notify()
    return true
  }

  /** SIGCONT: a stopped process goes on. False when it was not stopped. */
  continue(): boolean {
    if (this._state !== "stopped") return false
    this._state = "running"
    this._unreportedStop = undefined
    const gate = this._continued
    this._continued = undefined
    if (gate) Deferred.unsafeDone(gate, Exit.void)
    return true
  }

  /** proc_join with WAKE_STOPPED: the stop not yet reported, which counts as reported from now. */
  takeUnreportedStop(): number | undefined {
    const signo = this._unreportedStop
    this._unreportedStop = undefined
    return signo
  }

  /**
   * A fatal signal: the process is exiting and its status will say `signo`. A stopped task is
   * let go, so that it reaches its end: its gate opened and cleared, as by continue (the serve
   * loop's boundary takes a gate it finds for a closed one). False when it was exiting or
   * exited already.
   */
  markKilled(signo: number): boolean {
    if (!this.isAlive) return false
    this._killedBy = signo
    this._state = "exiting"
    const gate = this._continued
    this._continued = undefined
    if (gate) Deferred.unsafeDone(gate, Exit.void)
    return true
  }

  // ---- the task's life -------------------------------------------------------------------------

  /** Its task runs on `worker`, which had used `cpuAtStart` ns of CPU time until now. */
  attachWorker(worker: GuestThread, cpuAtStart: bigint): void {
    this._worker = worker
    this._cpuAtStart = cpuAtStart
  }

  /** The fiber serving its syscalls. */
  attachServer(server: Fiber.RuntimeFiber<never>): void {
    this._server = server
  }

  /**
   * The guest no longer runs: its exit status is decided, and the worker no longer belongs to
   * this process (a signal arriving now must neither rewrite the status nor reach the worker's
   * next guest).
   */
  taskEnded(end: { readonly fault: string | undefined; readonly cpuUsed?: bigint }): void {
    this._fault = end.fault
    if (end.cpuUsed !== undefined) this._cpuUsed = end.cpuUsed
    this._state = "exiting"
    this._worker = undefined
    this._server = undefined
  }

  /** memory_grow granted: its guest memory is now `pages` pages. */
  memoryGrewTo(pages: number): void {
    this._memoryPages = pages
  }

  /** Bytes it holds of the sandbox's memory: its share and its guest memory. */
  get memoryCharged(): number {
    return this._memoryShare + this._memoryPages * WASM_PAGE
  }

  /** Its task has ended: it holds none of the sandbox's memory any more; returns what it held. */
  releaseMemory(): number {
    const held = this.memoryCharged
    this._memoryPages = 0
    this._memoryShare = 0
    return held
  }

  /**
   * Its task's end is released (memory, module, fds): it is a zombie until reaped, and its
   * exit status is final.
   */
  markExited(status: ExitStatus): void {
    this._state = "exited"
    Deferred.unsafeDone(this.exitStatus, Exit.succeed(status))
  }

  /**
   * The kernel has shut down: a task interrupted before it started never completed its exit
   * status, and no waiter may hang on it (a status completed already stays as it is).
   */
  abandon(): void {
    Deferred.unsafeDone(this.exitStatus, Exit.succeed(signaled(SIGKILL)))
  }
}
