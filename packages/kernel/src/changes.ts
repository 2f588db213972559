/**
 * Waking whoever waits for some state to change (a pipe's contents, a process's children, a
 * relayed stream): `next` resolves at the next `notify`. Waiters look at the state again when
 * they wake, so a change that happened before they started waiting is never missed as long as
 * they take `next` after looking.
 */
import { Deferred, type Effect, Exit, FiberId } from "effect"

export class Changes {
  private current = Deferred.unsafeMake<void>(FiberId.none)

  /** Resolves at the next notify after this getter is read. */
  get next(): Effect.Effect<void> {
    return Deferred.await(this.current)
  }

  notify(): void {
    const done = this.current
    this.current = Deferred.unsafeMake(FiberId.none)
    Deferred.unsafeDone(done, Exit.void)
  }
}
