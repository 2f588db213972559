/**
 * Serving one task's syscalls: wait for a request on its channel, run the handler, publish the
 * response. Runs as a fiber in the kernel's scope for as long as the task runs.
 *
 * The wait re-checks the STATE word before arming `Atomics.waitAsync`, so a request that
 * arrived while the previous one was being answered is served without a wake-up. A handler
 * failing with a defect is a sentry bug: it is logged and the guest sees EIO, so that no guest
 * input can take the sentry down.
 *
 * While a handler runs, the task's ThreadGroup records which syscall it is inside and since
 * when (one Clock read per syscall); the watchdog reads that to find tasks stuck in the kernel.
 */
import { Errno, type SyscallName, syscallNames } from "@runsc/abi"
import { Cause, Deferred, Effect } from "effect"
import { AdaptiveSpin, State, Word } from "../platform/channel.js"
import type { Handler, SyscallContext } from "./context.js"
import { type StraceOptions, straceEnter, straceExit } from "./strace.js"

/**
 * Resolves once the worker has published a request: at once if it already has, after a short
 * adaptive poll if it does so soon (a syscall-heavy guest's next call), else on a wake-up.
 */
const awaitRequest = (words: Int32Array, spin: AdaptiveSpin): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (spin.poll(words, State.REQUEST)) return Effect.void
    const state = Atomics.load(words, Word.STATE)
    // Arrived after the poll: waiting for a change from REQUEST would wait for the next one.
    if (state === State.REQUEST) return Effect.void
    return Effect.async<void>((resume) => {
      const wait = Atomics.waitAsync(words, Word.STATE, state)
      if (wait.async) wait.value.then(() => resume(Effect.void))
      else resume(Effect.void)
    }).pipe(Effect.zipRight(awaitRequest(words, spin)))
  })

const respond = (words: Int32Array, errno: number): void => {
  words[Word.ERRNO] = errno
  Atomics.store(words, Word.STATE, State.RESPONSE)
  Atomics.notify(words, Word.STATE)
}

const runHandler = (table: ReadonlyArray<Handler>, n: number, c: SyscallContext): Effect.Effect<number> => {
  const handler = table[n]
  if (handler === undefined) return Effect.succeed(Errno.NOSYS)
  return Effect.matchCauseEffect(handler(c), {
    onSuccess: () => Effect.succeed(Errno.SUCCESS),
    onFailure: (cause) => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "Some") return Effect.succeed(failure.value.errno)
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause) as never
      return Effect.as(
        Effect.logError(`sentry bug in ${syscallNames[n]} (task ${c.tg.rootPid}); guest sees EIO`, cause),
        Errno.IO
      )
    }
  })
}

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
    // Syscall boundary: a stopped task, or a paused sandbox, goes no further.
    const boundary = Effect.suspend(() => {
      const stopped = tg.continued
      const paused = c.paused()
      return Effect.zipRight(stopped ? Deferred.await(stopped) : Effect.void, paused ? Deferred.await(paused) : Effect.void)
    })
    const serveOne = Effect.gen(function*() {
      yield* awaitRequest(words, spin)
      if (tg.continued !== undefined || c.paused() !== undefined) yield* boundary
      const n = words[Word.SYSCALL]!
      tg.syscalls++
      // The task is inside the kernel from here until the response is published (watchdog).
      tg.syscallEnteredAt = clock.unsafeCurrentTimeNanos()
      tg.syscallBlocked = false
      tg.currentSyscall = n
      if (strace === undefined) {
        const errno = yield* runHandler(table, n, c)
        tg.currentSyscall = -1
        // A task stopped (or a sandbox paused) while it was blocked in the call stays held
        // until it may go on: the call returns only then.
        if (tg.continued !== undefined || c.paused() !== undefined) yield* boundary
        respond(words, errno)
        return
      }
      const name = (syscallNames[n] ?? `syscall_${n}`) as SyscallName
      const call = straceEnter(strace, name, c)
      // strace times the handler alone (not its own entry line); strace is not the hot path.
      const start = clock.unsafeCurrentTimeNanos()
      const errno = yield* runHandler(table, n, c)
      if (call) straceExit(strace, call, name, c, errno, clock.unsafeCurrentTimeNanos() - start)
      tg.currentSyscall = -1
      if (tg.continued !== undefined || c.paused() !== undefined) yield* boundary
      respond(words, errno)
    })
    // Interrupted mid-syscall (the task ended): the task is no longer inside the kernel.
    return Effect.forever(serveOne).pipe(Effect.ensuring(Effect.sync(() => (tg.currentSyscall = -1))))
  })

/** Wakes a stale `waitAsync` left armed on a channel whose task has ended. */
export const releaseChannel = (words: Int32Array): Effect.Effect<void> =>
  Effect.sync(() => {
    Atomics.store(words, Word.STATE, State.IDLE)
    Atomics.notify(words, Word.STATE)
  })

