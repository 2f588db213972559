/**
 * Fatal signals: a process killed by a signal is marked exiting at once, and its task is ended
 * in the background; the task's own fiber (task/runTask.ts) completes the exit status, which is
 * what waiters wait for, once the guest has stopped running.
 */
import { SIGKILL } from "@runsc/abi"
import { Effect, Fiber, FiberSet } from "effect"
import { KILLED, State, Word } from "../platform/channel.js"
import type { GuestThread } from "../platform/pool.js"
import type { ThreadGroup } from "../task/threadGroup.js"

/** How long a guest answered KILLED has to end before its thread is terminated. */
const KILL_GRACE = "100 millis"

export interface Kill {
  /** Kills a process with `signo` as its status (nothing when it is exiting or exited already). */
  (tg: ThreadGroup, signo: number): Effect.Effect<void>
  /**
   * SIGKILLs every process of `members` as one step: each is marked killed before the fiber
   * can yield, so none of them can see an effect of the kill (a spawn refused by a namespace
   * closed with it) and still end some other way.
   */
  readonly all: (members: Iterable<ThreadGroup>) => Effect.Effect<void>
}

/**
 * Ends a killed task. One parked in a syscall (the worker waits in Atomics.wait for the
 * answer) is answered KILLED: its worker unwinds the guest and goes back to the pool, with
 * no thread to terminate and start again. One running guest code has its thread terminated;
 * so has one that does not end within KILL_GRACE of its KILLED answer (a guest can catch the
 * unwind with wasm exception handling; it cannot survive terminate).
 */
const endTask = (tg: ThreadGroup, worker: GuestThread): Effect.Effect<void> =>
  Effect.gen(function*() {
    const server = tg.server
    if (server !== undefined && tg.inKernel.current >= 0) {
      yield* Fiber.interrupt(server)
      const words = worker.channel.words
      // Still unanswered: only the sentry changes REQUEST, so this answer cannot race one.
      if (Atomics.load(words, Word.STATE) === State.REQUEST) {
        words[Word.ERRNO] = KILLED
        Atomics.store(words, Word.STATE, State.RESPONSE)
        Atomics.notify(words, Word.STATE)
        yield* Effect.sleep(KILL_GRACE)
        // The task's fiber detaches the worker as soon as the guest has ended.
        if (tg.worker !== worker) return
      }
    }
    yield* worker.terminate
  })

/** `kill`, whose task-ending fibers run in `fibers` (the kernel's: they outlive the caller). */
export const makeKill = (fibers: FiberSet.FiberSet): Kill => {
  // Starts ending the task and returns: the task's own fiber completes the exit status, which
  // is what waiters wait for, once the guest has stopped running.
  const end = (tg: ThreadGroup): Effect.Effect<void> =>
    tg.worker ? Effect.asVoid(FiberSet.run(fibers, endTask(tg, tg.worker))) : Effect.void
  const kill = (tg: ThreadGroup, signo: number) => Effect.suspend(() => (tg.markKilled(signo) ? end(tg) : Effect.void))
  const all = (members: Iterable<ThreadGroup>) =>
    Effect.suspend(() => {
      const killed = [...members].filter((tg) => tg.markKilled(SIGKILL))
      return Effect.forEach(killed, end, { discard: true })
    })
  return Object.assign(kill, { all })
}
