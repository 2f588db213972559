/**
 * Guest worker threads: started ahead of need and reused.
 *
 * Starting a worker costs tens of milliseconds; starting a process should not. The pool starts
 * `prestart` workers at once and keeps up to `warm` idle ones; `acquire` takes one (or the
 * oldest one still starting, or starts one). Every worker comes back through `release`: one
 * whose guest ended is kept idle (beyond `warm` idle ones, only for a little while before it is
 * retired); a dead one is replaced if the pool fell below `warm`. Closing the
 * pool's scope terminates every worker, idle or busy — terminate() works even on a thread
 * parked in Atomics.wait.
 */
import { Deferred, Effect, Exit, FiberId, FiberSet, Scope } from "effect"
import { readFileSync } from "node:fs"
import type { Worker } from "node:worker_threads"
import { GoferUnavailable } from "../errors.js"
import { loadGoferCore } from "../fs/goferCore.js"
import type { ChannelViews, FromWorker, GuestEnd, ToWorker } from "./channel.js"
import { type StartingThread, startGuestThread, ThreadExited } from "./startThread.js"

/** How a run ended: the guest's own end, or the thread died (terminated or crashed). */
export type RunOutcome = { readonly _tag: "Guest"; readonly end: GuestEnd } | { readonly _tag: "WorkerDied"; readonly reason: string }

/**
 * A thread that runs guests, one at a time: a worker thread (`GuestWorker`), or a stand-in of
 * another platform (the scripted one the property tests run thousands of lifecycles on).
 */
export interface GuestThread {
  readonly channel: ChannelViews
  readonly isAlive: boolean
  /** CPU time the thread has used, in ns (0 where unknown). */
  readonly cpuTime: bigint
  /**
   * `cpuTime` as of its last read (read now if it never was). A thread parked in the pool uses
   * no CPU, so the value read when its last guest ended stands for its time at the next start.
   */
  readonly lastCpuTime: bigint
  /** Starts a guest; the returned effect waits for how it ended. */
  run(message: ToWorker): Effect.Effect<Effect.Effect<RunOutcome>>
  /** Ends the thread wherever it is; a guest it was running ends as WorkerDied. */
  readonly terminate: Effect.Effect<void>
  /** Calls `f` once the thread no longer exists. */
  onGone(f: () => void): void
}

/** Where guest threads come from. */
export interface GuestPlatform {
  /** Starts a thread now (synchronously: the pool accounts for it from this moment). */
  readonly spawn: () => SpawnedThread
}

/** A thread being started. */
export interface SpawnedThread {
  /** The thread once it can run guests; interrupted if it died first. */
  readonly ready: Effect.Effect<GuestThread>
  /** Ends the thread, ready or not. */
  readonly kill: Effect.Effect<void>
}

export class GuestWorker implements GuestThread {
  private outcome: Deferred.Deferred<RunOutcome> | undefined
  private alive = true

  /** `tid`: the thread's Linux tid (0 if unknown), whose CPU time /proc reports. */
  constructor(readonly thread: Worker, readonly channel: ChannelViews, readonly tid: number) {
    thread.on("message", (message: FromWorker) => {
      if (message._tag === "Ended" && this.outcome) Deferred.unsafeDone(this.outcome, Exit.succeed({ _tag: "Guest", end: message.end }))
    })
    thread.on("error", (error) => this.died(`worker error: ${error.message}`))
    thread.on("exit", (code) => this.died(`worker exited (${code})`))
  }

  private died(reason: string): void {
    this.alive = false
    if (this.outcome) Deferred.unsafeDone(this.outcome, Exit.succeed({ _tag: "WorkerDied", reason }))
  }

  get isAlive(): boolean {
    return this.alive
  }

  /** Starts a guest; the returned effect waits for how it ended. */
  run(message: ToWorker): Effect.Effect<Effect.Effect<RunOutcome>> {
    return Effect.sync(() => {
      const outcome = Deferred.unsafeMake<RunOutcome>(FiberId.none)
      this.outcome = outcome
      if (!this.alive) Deferred.unsafeDone(outcome, Exit.succeed({ _tag: "WorkerDied", reason: "worker is gone" }))
      else this.thread.postMessage(message)
      return Deferred.await(outcome)
    })
  }

  /**
   * CPU time the thread has used (user + system), in ns: from the thread's CPU clock (the
   * gofer's core, which the permission model of a confined sandbox does not stop), else from
   * /proc's per-thread stat (in USER_HZ = 100 ticks per second). A thread that has ended (or
   * cannot be read) reports its last reading (its tid may name another thread by now); 0 where
   * none was made.
   */
  get cpuTime(): bigint {
    if (this.tid === 0 || !this.isAlive) return this.lastRead ?? 0n
    const core = loadGoferCore()
    if (!(core instanceof GoferUnavailable)) {
      const ns = core.threadCpuTime(this.tid)
      if (typeof ns === "bigint") return (this.lastRead = ns)
    }
    try {
      const stat = readFileSync(`/proc/self/task/${this.tid}/stat`, "utf8")
      // Fields after the command (which may contain spaces) start at ") ": utime and stime are fields 14 and 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      this.lastRead = (BigInt(fields[11]!) + BigInt(fields[12]!)) * 10_000_000n
      return this.lastRead
    } catch {
      return this.lastRead ?? 0n
    }
  }

  private lastRead: bigint | undefined

  get lastCpuTime(): bigint {
    return this.lastRead ?? this.cpuTime
  }

  onGone(f: () => void): void {
    this.thread.once("exit", f)
  }

  /** Ends the thread wherever it is (running guest code, parked in Atomics.wait). */
  get terminate(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.alive = false
      return Effect.promise(() => this.thread.terminate().then(() => undefined, () => undefined))
    })
  }
}

/**
 * A worker thread being started (by the pool, or before it by the CLI's executable). One that
 * was terminated first is an interruption; one whose script failed is a defect of the install,
 * which no retry would cure: every process start fails with it instead of waiting forever.
 */
const spawnedWorker = (starting: StartingThread): SpawnedThread => ({
  ready: Effect.flatMap(
    Effect.promise(() => starting.ready.then((tid) => tid, (error: unknown) => (error instanceof ThreadExited ? undefined : error as Error))),
    (tid) =>
      tid === undefined
        ? Effect.interrupt
        : typeof tid === "number"
        ? Effect.succeed(new GuestWorker(starting.thread, starting.channel, tid))
        : Effect.dieMessage(`a guest worker thread failed to start: ${tid.message}`)
  ),
  kill: Effect.promise(() => starting.thread.terminate().then(() => undefined, () => undefined))
})

/** Worker threads (the default platform). */
export const workerPlatform: GuestPlatform = { spawn: () => spawnedWorker(startGuestThread()) }

/** How long a surplus idle worker (beyond `warm`) is kept before it is terminated. */
const RETIRE_AFTER = "2 seconds"

export interface WorkerPool {
  readonly acquire: Effect.Effect<GuestThread>
  /** Returns a worker whose guest ended normally; surplus workers are terminated. */
  release(worker: GuestThread): Effect.Effect<void>
  /** Worker threads that exist (started and not yet exited), and how many of them are idle. */
  readonly stats: Effect.Effect<WorkerPoolStats>
}

export interface WorkerPoolStats {
  readonly threads: number
  readonly idle: number
}

export interface WorkerPoolOptions {
  /** Idle workers kept ready: refilled when a worker dies, retired after a while beyond it. */
  readonly warm: number
  /** Workers started when the pool is made (default: `warm`); a one-shot sandbox starts one and keeps none. */
  readonly prestart?: number
  /** Threads started before the pool existed (`startGuestThread`); they count towards `prestart`. */
  readonly adopt?: ReadonlyArray<StartingThread>
  /** Where new threads come from (default: worker threads). */
  readonly platform?: GuestPlatform
}

export const makeWorkerPool = (
  { adopt: adopted = [], platform = workerPlatform, prestart, warm }: WorkerPoolOptions
): Effect.Effect<WorkerPool, never, Scope.Scope> =>
  Effect.gen(function*() {
    const idle: Array<GuestThread> = []
    // Workers being started for the pool, oldest first: an acquire that finds no idle worker
    // takes the oldest of these rather than starting yet another thread (on a 2-core machine a
    // second start only slows the first).
    const starting: Array<Deferred.Deferred<GuestThread>> = []
    const all = new Set<GuestThread>()
    // Threads until they are gone: what "no worker left" is checked against.
    const threads = new Set<GuestThread>()
    // Every thread spawned and not yet gone, ready or not: teardown kills all of them. Spawning
    // checks `closed` and records the thread in one synchronous step, so no thread can be
    // started after teardown or escape it.
    const spawned = new Set<SpawnedThread>()
    let closed = false
    const fibers = yield* FiberSet.make()

    // Runs before the fiber set is interrupted (finalizers run in reverse order).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        return Effect.zipRight(
          Effect.forEach([...all], (w) => w.terminate, { concurrency: "unbounded", discard: true }),
          Effect.forEach([...spawned], (s) => s.kill, { concurrency: "unbounded", discard: true })
        )
      })
    )

    const started = (thread?: StartingThread) =>
      Effect.suspend(() => {
        if (closed) return Effect.interrupt
        const s = thread ? spawnedWorker(thread) : platform.spawn()
        spawned.add(s)
        return Effect.tap(s.ready, (w) =>
          Effect.sync(() => {
            all.add(w)
            threads.add(w)
            w.onGone(() => {
              threads.delete(w)
              spawned.delete(s)
            })
          }))
      })

    /**
     * Starts a worker for the pool. Claimed by an acquire meanwhile, it is handed over; else it
     * becomes idle — a refill only while fewer than `warm` are idle (workers that came back in
     * the meantime may have filled the pool), a prestarted one always.
     */
    const startOne = (thread?: StartingThread, prestarted = false) => Effect.gen(function*() {
      const slot = yield* Deferred.make<GuestThread>()
      starting.push(slot)
      yield* FiberSet.run(
        fibers,
        // Interruptible for the same reason as the retire wait: a refill may start from a task's end.
        Effect.interruptible(Effect.flatMap(started(thread), (w) =>
          Effect.suspend(() => {
            Deferred.unsafeDone(slot, Exit.succeed(w))
            const i = starting.indexOf(slot)
            if (i < 0) return Effect.void
            starting.splice(i, 1)
            if (prestarted || idle.length < warm) {
              idle.push(w)
              return Effect.void
            }
            all.delete(w)
            return w.terminate
          })).pipe(
          // No worker came of it (the thread died first, or teardown): whoever waits for the
          // slot must not wait forever.
          Effect.onExit((exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit)) return
              const i = starting.indexOf(slot)
              if (i >= 0) starting.splice(i, 1)
              Deferred.unsafeDone(slot, Exit.interrupt(FiberId.none))
            })
          )
        ))
      )
    })

    const topUp = Effect.suspend(() => {
      const missing = warm - idle.length - starting.length
      return Effect.forEach(Array.from({ length: Math.max(0, missing) }), () => startOne(), { discard: true })
    })

    yield* Effect.forEach(adopted, (thread) => startOne(thread, true), { discard: true })
    const more = (prestart ?? warm) - adopted.length
    yield* Effect.forEach(Array.from({ length: Math.max(0, more) }), () => startOne(undefined, true), { discard: true })

    // An acquire does not start a replacement: the worker usually comes back (a clean exit
    // returns it), and starting one now would only be terminated as surplus then. Workers are
    // started when none is idle, and to replace one that was terminated.
    const acquire: Effect.Effect<GuestThread> = Effect.suspend(() => {
      let worker: GuestThread | undefined
      while ((worker = idle.pop()) !== undefined && !worker.isAlive) all.delete(worker)
      if (worker) return Effect.succeed(worker)
      const pending = starting.shift()
      // A start that came to nothing hands over no worker: acquire again (at teardown, started()
      // refuses and the acquire is interrupted).
      return pending ? Effect.catchAllCause(Deferred.await(pending), () => acquire) : started()
    })

    /** Terminates `worker` if it is still idle and surplus (beyond `warm`). */
    const retire = (worker: GuestThread) =>
      Effect.suspend(() => {
        const i = idle.indexOf(worker)
        if (i < 0 || idle.length <= warm) return Effect.void
        idle.splice(i, 1)
        all.delete(worker)
        return worker.terminate
      })

    const release = (worker: GuestThread) =>
      Effect.suspend(() => {
        if (!worker.isAlive) {
          // Dead (terminated): replace it if the pool fell below `warm`.
          all.delete(worker)
          return topUp
        }
        idle.push(worker)
        if (idle.length <= warm) return Effect.void
        // Surplus: retired after RETIRE_AFTER unless taken again. Terminating a thread costs the
        // main thread a join (~5 ms); many released at once (a destroy of a busy container)
        // should neither pay that on the spot nor start as many again for the next burst.
        // Interruptible: release runs in a task's uninterruptible end, whose forks would inherit
        // it, and then teardown could not interrupt the wait (a one-shot sandbox would wait it out).
        return Effect.asVoid(FiberSet.run(fibers, Effect.interruptible(Effect.zipRight(Effect.sleep(RETIRE_AFTER), retire(worker)))))
      })

    return { acquire, release, stats: Effect.sync(() => ({ threads: threads.size, idle: idle.length })) }
  })
