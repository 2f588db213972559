/**
 * A scripted platform: guest threads that run no wasm, so that property tests can drive the
 * real kernel and loader through thousands of lifecycles in seconds. A "guest" follows its
 * argv (the program's basename, then arguments), the way the fixture programs behave:
 *
 *   exit [code]   ends with proc_exit(code) (default 0) on the next turn
 *   trap          traps (unreachable) on the next turn
 *   task_tree D W spawns W children running `task_tree D-1 W` (found on PATH=/bin) when
 *                 D > 0, through proc_spawn on its channel as a wasm guest would, then runs
 *                 until it is killed (the C fixture of the same name, minus its sleep)
 *   anything else runs until it is killed (sleep, spin, servers)
 *
 * Killing (terminate) ends a running guest at once, as terminating a worker does. Apart from
 * task_tree's spawns, scripted guests make no syscalls, so stops and pauses (which act at
 * syscall boundaries) do not reach them — the same as a compute-bound wasm guest.
 */
import { Errno } from "@runsc/abi"
import { Deferred, Effect, Exit, FiberId } from "effect"
import { ChannelViews, KILLED, publish, State, type ToWorker, Word } from "./channel.js"
import type { GuestPlatform, GuestThread, RunOutcome } from "./pool.js"
import { argPlace, plan, type SyscallPlan } from "./syscallAbi.js"

const encoder = new TextEncoder()

/**
 * One syscall from the guest's side of the channel, without blocking the thread (the sentry
 * runs on the same one): publish the request, wait asynchronously for the response.
 */
const channelCall = (channel: ChannelViews, p: SyscallPlan, args: ReadonlyArray<readonly [place: number, value: number]>): Effect.Effect<number> =>
  Effect.suspend(() => {
    const words = channel.words
    for (const [place, value] of args) words[place] = value
    words[Word.NARGS] = p.nargs
    words[Word.SYSCALL] = p.number
    publish(words, State.REQUEST, Word.SENTRY_PARKED)
    const response: Effect.Effect<number> = Effect.suspend(() => {
      if (Atomics.load(words, Word.STATE) === State.RESPONSE) {
        words[Word.STATE] = State.IDLE
        return Effect.succeed(words[Word.ERRNO]!)
      }
      return Effect.async<void>((resume) => {
        // Parked, as a worker in Atomics.wait is: the sentry wakes only a parked end. The flag
        // is cleared by this fiber's continuation (see serve.ts's stateChange).
        Atomics.store(words, Word.WORKER_PARKED, 1)
        const wait = Atomics.waitAsync(words, Word.STATE, State.REQUEST)
        if (wait.async) wait.value.then(() => resume(Effect.void))
        else resume(Effect.void)
      }).pipe(
        Effect.zipRight(Effect.sync(() => Atomics.store(words, Word.WORKER_PARKED, 0))),
        Effect.zipRight(response)
      )
    })
    return response
  })

/** proc_spawn of `argv` (argv[0] searched on PATH=/bin), stdio inherited. */
const spawnChild = (channel: ChannelViews, argv: ReadonlyArray<string>): Effect.Effect<number> =>
  Effect.suspend(() => {
    const path = encoder.encode(argv[0]!)
    const args = encoder.encode(argv.map((a) => `${a}\0`).join(""))
    const env = encoder.encode("PATH=/bin\0")
    channel.data.set(path, 0)
    channel.data.set(args, path.length)
    channel.data.set(env, path.length + args.length)
    return channelCall(channel, plan("proc_spawn"), [
      [argPlace("proc_spawn", "path"), path.length],
      [argPlace("proc_spawn", "argv"), args.length],
      [argPlace("proc_spawn", "envp"), env.length],
      [argPlace("proc_spawn", "nfds"), 0],
      [argPlace("proc_spawn", "pgid"), -1],
      [argPlace("proc_spawn", "flags"), 1]
    ])
  })

class ScriptedThread implements GuestThread {
  readonly channel = ChannelViews.allocate()
  readonly cpuTime = 0n
  readonly lastCpuTime = 0n
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
      if (end !== undefined) return Effect.raceFirst(Deferred.await(outcome), Effect.as(Effect.yieldNow(), end))
      if (program !== "task_tree" || !(Number(message.args[1]) > 0)) return Deferred.await(outcome)
      const depth = Number(message.args[1])
      const width = Number(message.args[2] ?? 1)
      const spawns = Effect.forEach(Array.from({ length: width }), () =>
        Effect.flatMap(spawnChild(this.channel, ["task_tree", `${depth - 1}`, `${width}`]), (errno) =>
          // Answered KILLED: the sentry unwinds the guest, as the worker shim does.
          errno === KILLED ? Effect.sync(() => Deferred.unsafeDone(outcome, Exit.succeed({ _tag: "Guest", end: { _tag: "Killed" } })))
          : errno === Errno.SUCCESS || errno === Errno.AGAIN ? Effect.void
          : Effect.sync(() =>
            Deferred.unsafeDone(outcome, Exit.succeed({ _tag: "Guest", end: { _tag: "Crash", message: `proc_spawn: errno ${errno}` } }))
          )), { discard: true })
      return Effect.raceFirst(Deferred.await(outcome), Effect.zipRight(spawns, Effect.never))
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
