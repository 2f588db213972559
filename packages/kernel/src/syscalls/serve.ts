/**
 * Serving one task's syscalls: wait for a request on its channel, run the handler, publish the
 * response. Runs as a fiber in the kernel's scope for as long as the task runs.
 *
 * Sync-first: a handler whose answer is settled (an Exit: it did not have to wait, see
 * settled.ts) is answered in plain JS, with no fiber step; so are the requests that follow it
 * while the adaptive poll catches them, up to BATCH in a row. The fiber takes over only to wait
 * for a request (`Atomics.waitAsync`), to run a handler that waits (pipes, poll, proc wait,
 * stdin), to hold a stopped task or a paused sandbox at the syscall boundary, and to yield
 * after a batch, so that other tasks' servers and the event loop take turns. The fiber is
 * interruptible at each of those points, which is where the kernel finds it when the task ends
 * (its worker then makes no more requests).
 *
 * The wait re-checks the STATE word before arming `Atomics.waitAsync`, so a request that
 * arrived while the previous one was being answered is served without a wake-up. A handler
 * failing with a defect, or throwing, is a sentry bug: it is logged and the guest sees EIO, so
 * that no guest input can take the sentry down.
 *
 * While a handler runs, the task's ThreadGroup records which syscall it is inside and since
 * when (one Clock read per syscall); the watchdog reads that to find tasks stuck in the kernel.
 */
import { Errno, type SyscallName, syscallNames } from "@runsc/abi"
import { Cause, Deferred, Effect } from "effect"
import { isSettled } from "../settled.js"
import { AdaptiveSpin, publish, State, Word } from "../platform/channel.js"
import type { Handler, SyscallContext } from "./context.js"
import { type StraceOptions, straceEnter, straceExit } from "./strace.js"

/** Requests served in a row in plain JS before the server yields to other fibers. */
const BATCH = 64

/**
 * Whether the worker has published a request: at once, or after a short adaptive poll (a
 * syscall-heavy guest's next call). Undefined if so; else the STATE value to wait for a change of.
 */
const pollRequest = (words: Int32Array, spin: AdaptiveSpin): number | undefined => {
  if (spin.poll(words, State.REQUEST)) return undefined
  const state = Atomics.load(words, Word.STATE)
  // Arrived after the poll: waiting for a change from REQUEST would wait for the next one.
  return state === State.REQUEST ? undefined : state
}

/**
 * Resolves when STATE changes from `state` (or has already). The SENTRY_PARKED flag is cleared
 * by the server's own continuation, never by the wait's callback: a server interrupted while
 * parked leaves its waitAsync armed, and that stale wait's callback may run after the channel's
 * next server has parked; clearing the flag then would make the worker skip the wake-up that
 * server needs.
 */
const stateChange = (words: Int32Array, state: number): Effect.Effect<void> =>
  Effect.zipRight(
    Effect.async<void>((resume) => {
      Atomics.store(words, Word.SENTRY_PARKED, 1)
      const wait = Atomics.waitAsync(words, Word.STATE, state)
      if (wait.async) wait.value.then(() => resume(Effect.void))
      else resume(Effect.void)
    }),
    Effect.sync(() => Atomics.store(words, Word.SENTRY_PARKED, 0))
  )

/** Resolves once the worker has published a request (see pollRequest). */
const awaitRequest = (words: Int32Array, spin: AdaptiveSpin): Effect.Effect<void> =>
  Effect.suspend(() => {
    const state = pollRequest(words, spin)
    return state === undefined ? Effect.void : Effect.zipRight(stateChange(words, state), awaitRequest(words, spin))
  })

const respond = (words: Int32Array, errno: number): void => {
  words[Word.ERRNO] = errno
  publish(words, State.RESPONSE, Word.WORKER_PARKED)
}

/** A handler's defect: logged, and the guest sees EIO. */
const sentryBug = (n: number, c: SyscallContext, cause: Cause.Cause<unknown>): Effect.Effect<number> =>
  Effect.as(Effect.logError(`sentry bug in ${syscallNames[n]} (task ${c.tg.rootPid}); guest sees EIO`, cause), Errno.IO)

/** The errno a handler's outcome gives the guest (interruption passes through). */
const errnoOf = (n: number, c: SyscallContext, outcome: Effect.Effect<void, { readonly errno: number }>): Effect.Effect<number> =>
  Effect.matchCauseEffect(outcome, {
    onSuccess: () => Effect.succeed(Errno.SUCCESS),
    onFailure: (cause) => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "Some") return Effect.succeed(failure.value.errno)
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause) as never
      return sentryBug(n, c, cause)
    }
  })

/**
 * Calls syscall `n`'s handler: its errno when its answer is settled, else the effect that
 * gives it (a handler that waits, or a sentry bug to log).
 */
const callHandler = (table: ReadonlyArray<Handler>, n: number, c: SyscallContext): number | Effect.Effect<number> => {
  const handler = table[n]
  if (handler === undefined) return Errno.NOSYS
  let outcome: Effect.Effect<void, { readonly errno: number }>
  try {
    outcome = handler(c)
  } catch (defect) {
    return sentryBug(n, c, Cause.die(defect))
  }
  if (!isSettled(outcome)) return errnoOf(n, c, outcome)
  if (outcome._tag === "Success") return Errno.SUCCESS
  const cause = outcome.cause
  if (cause._tag === "Fail") return cause.error.errno
  return errnoOf(n, c, outcome)
}

const runHandler = (table: ReadonlyArray<Handler>, n: number, c: SyscallContext): Effect.Effect<number> =>
  Effect.suspend(() => {
    const answer = callHandler(table, n, c)
    return typeof answer === "number" ? Effect.succeed(answer) : answer
  })

export const serveSyscalls = (
  table: ReadonlyArray<Handler>,
  c: SyscallContext,
  strace: StraceOptions | undefined
): Effect.Effect<never> =>
  // The Clock is looked up once: each syscall then reads it synchronously (no effect step).
  Effect.clockWith((clock) => {
    const words = c.channel.words
    const tg = c.tg
    const spin = new AdaptiveSpin()
    const mustHold = () => tg.continued !== undefined || c.paused() !== undefined || tg.tasks.throttled !== undefined
    // Syscall boundary: a stopped task, a paused sandbox or a throttled container goes no
    // further, until none of the three holds (each may close while another opens). Each gate is
    // cleared when it is opened (continue, markKilled, resume, throttle), so a gate found is closed.
    const boundary: Effect.Effect<void> = Effect.suspend(() => {
      const gate = tg.continued ?? c.paused() ?? tg.tasks.throttled
      return gate === undefined ? Effect.void : Effect.zipRight(Deferred.await(gate), boundary)
    })
    /** The task is inside the kernel from here until the response is published (watchdog). */
    const enter = (): number => {
      const n = words[Word.SYSCALL]!
      tg.inKernel.enter(n, clock.unsafeCurrentTimeNanos())
      return n
    }
    /**
     * Publishes `errno` once the task may go on: a task stopped (or a sandbox paused) while it
     * was in the call stays held until then, and the call returns only then.
     */
    const answer = (errno: number): Effect.Effect<void> => {
      tg.inKernel.leave()
      if (!mustHold()) {
        respond(words, errno)
        return Effect.void
      }
      return Effect.zipRight(boundary, Effect.sync(() => respond(words, errno)))
    }
    /**
     * Serves requests in plain JS while their handlers settle and the next request is already
     * there; returns what the fiber must run before the next batch.
     */
    const serveBatch = (): Effect.Effect<void> => {
      for (let served = 0; served < BATCH; served++) {
        const state = pollRequest(words, spin)
        if (state !== undefined) return stateChange(words, state)
        if (mustHold()) return Effect.zipRight(boundary, Effect.suspend(() => serveSlow(enter())))
        const n = enter()
        const errno = callHandler(table, n, c)
        if (typeof errno !== "number") return Effect.flatMap(errno, answer)
        tg.inKernel.leave()
        if (mustHold()) return answer(errno)
        respond(words, errno)
      }
      return Effect.yieldNow()
    }
    const serveSlow = (n: number): Effect.Effect<void> => {
      const errno = callHandler(table, n, c)
      return typeof errno === "number" ? answer(errno) : Effect.flatMap(errno, answer)
    }
    const serveTraced = (strace: StraceOptions) =>
      Effect.gen(function*() {
        yield* awaitRequest(words, spin)
        if (mustHold()) yield* boundary
        const n = enter()
        const name = (syscallNames[n] ?? `syscall_${n}`) as SyscallName
        const call = straceEnter(strace, name, c)
        // strace times the handler alone (not its own entry line); strace is not the hot path.
        const start = clock.unsafeCurrentTimeNanos()
        const errno = yield* runHandler(table, n, c)
        if (call) straceExit(strace, call, name, c, errno, clock.unsafeCurrentTimeNanos() - start)
        yield* answer(errno)
      })
    const serve = strace === undefined ? Effect.suspend(serveBatch) : serveTraced(strace)
    // Interrupted mid-syscall (the task ended): the task is no longer inside the kernel.
    return Effect.forever(serve).pipe(Effect.ensuring(Effect.sync(() => tg.inKernel.leave())))
  })

/** Wakes a stale `waitAsync` left armed on a channel whose task has ended. */
export const releaseChannel = (words: Int32Array): Effect.Effect<void> =>
  Effect.sync(() => {
    Atomics.store(words, Word.STATE, State.IDLE)
    Atomics.notify(words, Word.STATE)
  })

