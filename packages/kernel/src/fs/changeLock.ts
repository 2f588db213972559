/**
 * A lock that lets one change run at a time, sync-first (see settled.ts): a change asked for
 * while none runs is made at once, on the caller's stack; if it completes there (its answer is
 * settled), nothing can have come between its steps and the lock is free again before the
 * caller sees the answer, with no fiber step. A change asked for while another runs waits for
 * its turn as a fiber.
 *
 * A change that starts at once but must wait part way (its answer is not settled) holds the
 * lock until that answer, run, ends: the caller must run the answer it gets, as the syscall
 * server runs every handler's. Over the sentry's own layers (the gofer, tmpfs) no change waits.
 */
import { Effect } from "effect"
import { isSettled } from "../settled.js"

export class ChangeLock {
  private busy = false
  /** Fibers waiting for the lock to be free: woken all at once, each looks again. */
  private readonly waiting = new Set<() => void>()

  /** Makes `change` (called once, under the lock) and answers what it answers. */
  run<A, E>(change: () => Effect.Effect<A, E>): Effect.Effect<A, E> {
    if (!this.busy) {
      const outcome = this.enter(change)
      return isSettled(outcome) ? outcome : Effect.ensuring(outcome, this.leave)
    }
    return Effect.uninterruptibleMask((restore) => this.waitAndEnter(change, restore))
  }

  /** Waits for the lock (interruptibly) and makes `change` in the step that finds it free. */
  private waitAndEnter<A, E>(
    change: () => Effect.Effect<A, E>,
    restore: <X, Y, R>(effect: Effect.Effect<X, Y, R>) => Effect.Effect<X, Y, R>
  ): Effect.Effect<A, E> {
    return Effect.flatMap(restore(this.turn), () => {
      // Taken again between the wake-up and this step (the fiber may yield between two steps).
      if (this.busy) return this.waitAndEnter(change, restore)
      const outcome = this.enter(change)
      return isSettled(outcome) ? outcome : Effect.ensuring(restore(outcome), this.leave)
    })
  }

  /** Takes the lock and calls `change`; gives the lock back at once if its answer is settled (or it throws). */
  private enter<A, E>(change: () => Effect.Effect<A, E>): Effect.Effect<A, E> {
    this.busy = true
    let outcome: Effect.Effect<A, E>
    try {
      outcome = change()
    } catch (defect) {
      this.release()
      throw defect
    }
    if (isSettled(outcome)) this.release()
    return outcome
  }

  private release(): void {
    this.busy = false
    for (const wake of [...this.waiting]) wake()
  }

  private readonly leave = Effect.sync(() => this.release())

  /** Resolves when the lock is free (not taken: the caller takes it in the same step). */
  private readonly turn: Effect.Effect<void> = Effect.suspend(() =>
    !this.busy ? Effect.void : Effect.zipRight(
      Effect.async<void>((resume) => {
        const wake = () => {
          this.waiting.delete(wake)
          resume(Effect.void)
        }
        this.waiting.add(wake)
        return Effect.sync(() => this.waiting.delete(wake))
      }),
      this.turn
    )
  )
}
