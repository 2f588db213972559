/**
 * The processes of one container: membership is structural (a process joins its container's
 * set when the kernel registers it, a child joins its parent's, and it leaves when it is
 * reaped), never a filter on a name. The set's fibers run its processes' tasks, and closing the
 * scope that made it is SIGKILL, then a wait for every exit, then the release of every task:
 * whatever that scope acquired before the set is released only after no process of it lives.
 *
 * It is also what makes a kill of the whole set atomic with respect to process creation
 * (invariant 5): whoever kills every process of the set holds its admission closed first; the
 * kernel consults it in the same step as it registers a new process, so a process is either
 * registered before the kill enumerates the set, and killed with it, or refused.
 */
import type { Deferred, FiberSet } from "effect"
import type { MemoryAccount } from "../memoryAccount.js"
import { NetworkTraffic } from "../net/socket.js"
import type { Membership, ThreadGroup } from "./threadGroup.js"

/** Why a container's processes are held: its CPU quota is spent, or its share of a contended CPU. */
export type ThrottleReason = "quota" | "shares"

export class TaskSet implements Membership {
  private readonly members = new Set<ThreadGroup>()
  private holds = 0
  private closedForGood = false
  private reapedCpu = 0n
  /**
   * The most processes the set may hold at once, zombies included (as a pids cgroup counts
   * tasks until they are reaped): its container's `linux.resources.pids.limit`.
   */
  limit: number | undefined
  /** While a CPU limit holds it (Kernel.throttle): completed when it may run again. */
  throttled: Deferred.Deferred<void> | undefined
  /** Which CPU limits hold it now: `throttled` is set exactly while this is not empty. */
  readonly throttledBy = new Set<ThrottleReason>()
  /**
   * Its container's memory account (within the sandbox's), which its processes and in-memory
   * filesystems charge; undefined: they charge the sandbox's. Set before its first process.
   */
  memory: MemoryAccount | undefined
  /** Whether a grow past its memory limit OOM-kills (task/oomKiller.ts) rather than fails. */
  oomKill = false
  /** The process its OOM killer last chose, and how many it has killed. */
  oomVictim: ThreadGroup | undefined
  oomKills = 0
  /** What its processes' sockets carried (events --stats). */
  readonly traffic = new NetworkTraffic()

  constructor(
    /** The container's id (state dumps, errors). */
    readonly containerId: string,
    /** Where the tasks of its processes run; interrupted when the set's scope closes. */
    readonly fibers: FiberSet.FiberSet
  ) {}

  /** Every process of the set not yet reaped (zombies included), oldest first. */
  get processes(): ReadonlyArray<ThreadGroup> {
    return [...this.members]
  }

  /** The processes of the set that are running or stopped. */
  get live(): ReadonlyArray<ThreadGroup> {
    return this.processes.filter((tg) => tg.isAlive)
  }

  has(tg: ThreadGroup): boolean {
    return this.members.has(tg)
  }

  /** Whether a new process may join now. */
  get isOpen(): boolean {
    return this.holds === 0 && !this.closedForGood
  }

  /** Whether the set holds as many processes as its limit allows. */
  get isFull(): boolean {
    return this.limit !== undefined && this.members.size >= this.limit
  }

  /** Refuses new processes until the returned function is called (idempotent): a kill in progress. */
  hold(): () => void {
    this.holds++
    let released = false
    return () => {
      if (released) return
      released = true
      this.holds--
    }
  }

  /** Refuses new processes from now on: the set is being destroyed. */
  close(): void {
    this.closedForGood = true
  }

  /** The kernel registers a process (in the step that allocates its pids, after checking `isOpen`). */
  add(tg: ThreadGroup): void {
    this.members.add(tg)
  }

  /** The kernel reaps a process. */
  remove(tg: ThreadGroup): void {
    if (this.members.delete(tg)) this.reapedCpu += tg.cpuTime
  }

  /** CPU time (ns) its processes have used, reaped ones included. */
  get cpuTime(): bigint {
    let total = this.reapedCpu
    for (const tg of this.members) total += tg.cpuTime
    return total
  }
}
