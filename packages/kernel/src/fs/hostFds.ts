/**
 * The host descriptors the gofer holds for guests (host files they have open, mounted trees),
 * counted sandbox-wide and bounded, so that guests together can never take the descriptors the
 * sandbox process needs for itself: its control socket and the connections on it, stdio relays,
 * log files, its worker threads (a few descriptors each), the heartbeat monitor.
 *
 * Invariant: `inUse` is the number of host descriptors the gofer holds for guests, never more
 * than `limit`; past it an open fails ENFILE ("too many open files in system"), as Linux says
 * when its file table is full. Descriptors a single host call opens and closes are not counted:
 * the reserve covers them.
 */
import { Effect } from "effect"
import { goferCore } from "./goferCore.js"

/** Descriptors a guest process's worker thread holds (4 measured: its event loop's), doubled for margin. */
export const FDS_PER_WORKER = 8
/** Descriptors kept for the control plane: the control socket, its connections, relays, logs, the heartbeat. */
export const CONTROL_RESERVE = 128

export class HostFdBudget {
  private held = 0

  /**
   * `limit`: host descriptors guests may hold as files; `processLimit`: the sandbox process's own
   * RLIMIT_NOFILE, of which the rest is the sandbox's.
   */
  constructor(readonly limit: number, readonly processLimit: number = limit * 2) {}

  get inUse(): number {
    return this.held
  }

  /**
   * Worker threads (one per guest process) the rest of the process's descriptors hold, after the
   * control plane's reserve: the sandbox's process limit must stay below it, or a fork bomb would
   * take the descriptors the control plane needs.
   */
  get workerThreads(): number {
    return Math.max(1, Math.floor((this.processLimit - this.limit - CONTROL_RESERVE) / FDS_PER_WORKER))
  }

  /** Counts one more held descriptor; false (nothing counted) when the budget is spent. */
  take(): boolean {
    if (this.held >= this.limit) return false
    this.held++
    return true
  }

  give(): void {
    this.held--
  }

  /**
   * This process's budget: half of its RLIMIT_NOFILE, whose soft limit is first raised to the
   * hard one (as runsc does). The other half stays with the sandbox itself: each guest process
   * is a worker thread holding a few descriptors, and the control plane needs its own.
   * Without the gofer's core no host file can be opened anyway; the budget is then nominal.
   */
  static readonly ofProcess: Effect.Effect<HostFdBudget> = goferCore.pipe(
    Effect.map((core) => core.raiseFdLimit()),
    Effect.orElseSucceed(() => -1),
    Effect.map((limit) => (limit > 0 ? limit : 1024)),
    Effect.map((limit) => new HostFdBudget(Math.max(16, Math.floor(limit / 2)), limit))
  )
}
