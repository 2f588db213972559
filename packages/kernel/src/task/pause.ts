/**
 * Pausing the whole sandbox (runsc pause/resume): every task stops at its next syscall
 * boundary, and every task started while paused at its first, until resume.
 *
 * How a task learns it must stop: the ATTENTION word of its channel makes its worker enter the
 * sentry at its next call, even one it would serve itself (a lent fast path), or at its next
 * preemption point (platform/instrument.ts); the serve loop then holds the task while the
 * sandbox is paused, the process is stopped (SIGSTOP) or its container's CPU quota is spent
 * (throttled). Invariant: a running task's ATTENTION is set exactly while one of these holds.
 */
import { Deferred, Exit, FiberId } from "effect"
import { Word } from "../platform/channel.js"
import type { PidNamespace } from "./pidNamespace.js"
import type { TaskSet, ThrottleReason } from "./taskSet.js"
import type { ThreadGroup } from "./threadGroup.js"

export class SandboxPause {
  // While paused: completed by resume. Tasks wait on it at syscall boundaries.
  private gate: Deferred.Deferred<void> | undefined

  constructor(
    /** The root PID namespace: every process of the sandbox. */
    private readonly processes: PidNamespace<ThreadGroup>
  ) {}

  /** While the sandbox is paused: completed when it resumes. */
  get paused(): Deferred.Deferred<void> | undefined {
    return this.gate
  }

  /** Publishes to `tg`'s worker whether it must enter the sentry at its next call (paused, stopped or throttled). */
  setAttention(tg: ThreadGroup): void {
    if (tg.worker) Atomics.store(tg.worker.channel.words, Word.ATTENTION, this.gate || tg.continued || tg.tasks.throttled ? 1 : 0)
  }

  /** False when the sandbox was paused already. */
  pause(): boolean {
    if (this.gate) return false
    this.gate = Deferred.unsafeMake(FiberId.none)
    for (const [, tg] of this.processes.processes) this.setAttention(tg)
    return true
  }

  /**
   * Holds every process of `set` at its next syscall or preemption point while any `reason`
   * holds it (its CPU quota is spent, or its share of a contended CPU is), or lets them go on
   * once none does; false when the set's gate did not change.
   */
  throttle(set: TaskSet, reason: ThrottleReason, throttled: boolean): boolean {
    if (throttled) set.throttledBy.add(reason)
    else set.throttledBy.delete(reason)
    const gate = set.throttled
    if ((gate !== undefined) === set.throttledBy.size > 0) return false
    set.throttled = set.throttledBy.size > 0 ? Deferred.unsafeMake(FiberId.none) : undefined
    for (const tg of set.processes) this.setAttention(tg)
    if (gate !== undefined) Deferred.unsafeDone(gate, Exit.void)
    return true
  }

  /** False when the sandbox was not paused. */
  resume(): boolean {
    const gate = this.gate
    if (!gate) return false
    this.gate = undefined
    for (const [, tg] of this.processes.processes) this.setAttention(tg)
    Deferred.unsafeDone(gate, Exit.void)
    return true
  }
}
