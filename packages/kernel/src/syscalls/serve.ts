/**
 * Serving one task's syscalls: wait for a request on its channel, run the handler, publish the
 * response. Runs as a fiber in the kernel's scope for as long as the task runs.
 *
 * The wait re-checks the STATE word before arming `Atomics.waitAsync`, so a request that
 * arrived while the previous one was being answered is served without a wake-up. A handler
 * failing with a defect is a sentry bug: it is logged and the guest sees EIO, so that no guest
 * input can take the sentry down.
 */
import { Errno, type SyscallName, syscallNames } from "@runsc/abi"
import { Cause, Clock, Deferred, Effect } from "effect"
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
): Effect.Effect<never> => {
  const words = c.channel.words
  const spin = new AdaptiveSpin()
  const serveOne = Effect.gen(function*() {
    yield* awaitRequest(words, spin)
    const stopped = c.tg.continued
    if (stopped) yield* Deferred.await(stopped)
    const n = words[Word.SYSCALL]!
    c.tg.syscalls++
    if (strace === undefined) {
      respond(words, yield* runHandler(table, n, c))
      return
    }
    const name = (syscallNames[n] ?? `syscall_${n}`) as SyscallName
    const call = straceEnter(strace, name, c)
    const start = yield* Clock.currentTimeNanos
    const errno = yield* runHandler(table, n, c)
    if (call) straceExit(strace, call, name, c, errno, (yield* Clock.currentTimeNanos) - start)
    respond(words, errno)
  })
  return Effect.forever(serveOne)
}

/** Wakes a stale `waitAsync` left armed on a channel whose task has ended. */
export const releaseChannel = (words: Int32Array): Effect.Effect<void> =>
  Effect.sync(() => {
    Atomics.store(words, Word.STATE, State.IDLE)
    Atomics.notify(words, Word.STATE)
  })

