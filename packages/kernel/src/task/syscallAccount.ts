/**
 * A task's time inside the kernel, as the syscall server records it: which call the sentry is
 * serving for it and since when, whether that call waits for what the guest chose to wait for
 * (a sleep, input on a stream) rather than for the sentry, and how many calls it has served.
 * Changed by the server alone, on every call (so plain methods, no Effect); read by state
 * dumps, the kill of a task (is it inside a call?) and the watchdog (is it stuck in one?).
 */
export class SyscallAccount {
  private served = 0
  private call = -1
  private since = 0n
  private waiting = false

  /** Calls the sentry has served for the task. */
  get syscalls(): number {
    return this.served
  }

  /** The number of the call being served, or -1 when the task is not inside the kernel. */
  get current(): number {
    return this.call
  }

  /** Clock nanoseconds at which the sentry started serving `current` (meaningful while it is ≥ 0). */
  get enteredAt(): bigint {
    return this.since
  }

  /** The current call waits for what the guest chose to wait for: the watchdog does not count it as stuck. */
  get blocked(): boolean {
    return this.waiting
  }

  /** The sentry starts serving call `n` at `now`. */
  enter(n: number, now: bigint): void {
    this.served++
    this.since = now
    this.waiting = false
    this.call = n
  }

  /** The call's answer is published (or its server ended): the task is out of the kernel. */
  leave(): void {
    this.call = -1
  }

  /** From now until `unblock`, the current call waits for what the guest chose to wait for. */
  block(): void {
    this.waiting = true
  }

  unblock(): void {
    this.waiting = false
  }
}
