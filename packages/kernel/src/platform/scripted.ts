/**
 * A scripted platform: guest threads that run no wasm, so that property tests can drive the
 * real kernel and loader through thousands of lifecycles in seconds. A "guest" follows its
 * argv (the program's basename, then arguments), the way the fixture programs behave:
 *
 *   exit [code]   ends with proc_exit(code) (default 0) on the next turn
 *   trap          traps (unreachable) on the next turn
 *   anything else runs until it is killed (sleep, spin, servers)
 *
 * Killing (terminate) ends a running guest at once, as terminating a worker does. Scripted
 * guests make no syscalls, so stops and pauses (which act at syscall boundaries) do not reach
 * them — the same as a compute-bound wasm guest.
 */
import { Deferred, Effect, Exit, FiberId } from "effect"
import { ChannelViews, type ToWorker } from "./channel.js"
import type { GuestPlatform, GuestThread, RunOutcome } from "./pool.js"

class ScriptedThread implements GuestThread {
  readonly channel = ChannelViews.allocate()
  readonly cpuTime = 0n
  private alive = true
  private current: Deferred.Deferred<RunOutcome> | undefined
  private readonly goneListeners: Array<() => void> = []

  get isAlive(): boolean {
    return this.alive
  }

  run(message: ToWorker): Effect.Effect<Effect.Effect<RunOutcome>> {
    return Effect.sync(() => {
      const outcome = Deferred.unsafeMake<RunOutcome>(FiberId.none)
      this.current = outcome
      if (!this.alive) Deferred.unsafeDone(outcome, Exit.succeed({ _tag: "WorkerDied", reason: "thread is gone" }))
      const program = (message.args[0] ?? "").split("/").pop()
      const end: RunOutcome | undefined = program === "exit"
        ? { _tag: "Guest", end: { _tag: "ProcExit", code: Number(message.args[1] ?? 0) & 0xff } }
        : program === "trap"
        ? { _tag: "Guest", end: { _tag: "Trap", kind: "unreachable", message: "unreachable" } }
        : undefined
      // Ending "on the next turn" leaves room for whatever races the end (signals, destroys).
      return end === undefined
        ? Deferred.await(outcome)
        : Effect.raceFirst(Deferred.await(outcome), Effect.as(Effect.yieldNow(), end))
    })
  }

  get terminate(): Effect.Effect<void> {
    return Effect.sync(() => {
      if (!this.alive) return
      this.alive = false
      if (this.current) Deferred.unsafeDone(this.current, Exit.succeed({ _tag: "WorkerDied", reason: "terminated" }))
      for (const f of this.goneListeners.splice(0)) f()
    })
  }

  onGone(f: () => void): void {
    if (this.alive) this.goneListeners.push(f)
    else f()
  }
}

export const scriptedPlatform: GuestPlatform = {
  spawn: () => {
    const thread = new ScriptedThread()
    return { ready: Effect.succeed(thread), kill: thread.terminate }
  }
}
