/**
 * A process's task: it runs the guest on a worker of the pool while a fiber serves its
 * syscalls, and at the guest's end gives back everything the process held (its worker, its
 * memory, its module, its fds) before it completes the exit status and leaves the process tree.
 *
 * Invariants: a process's exit status is completed only after its worker has stopped running
 * guest code and its fds are closed; the task is uninterruptible but for its wait on the guest,
 * so an interrupt (the kernel's teardown) still terminates the worker and completes the status.
 */
import { type ExitStatus, SIGKILL, signaled } from "@runsc/abi"
import { Cause, Effect, Exit, Fiber } from "effect"
import type { DescriptionRefs } from "../fs/fdTable.js"
import type { MemoryAccount } from "../memoryAccount.js"
import { State, Word } from "../platform/channel.js"
import { lendFastPaths } from "../platform/lendFastPaths.js"
import type { CachedModule } from "../platform/moduleCache.js"
import type { RunOutcome, WorkerPool } from "../platform/pool.js"
import type { Signal } from "../signal/deliver.js"
import type { Handler, KernelServices, SyscallContext } from "../syscalls/context.js"
import { releaseChannel, serveSyscalls } from "../syscalls/serve.js"
import type { StraceOptions } from "../syscalls/strace.js"
import { exitStatusOf, faultOf } from "./exitStatus.js"
import type { SandboxPause } from "./pause.js"
import type { ThreadGroup } from "./threadGroup.js"

export interface TaskRunnerDeps {
  readonly pool: WorkerPool
  readonly memory: MemoryAccount
  readonly descriptionRefs: DescriptionRefs
  readonly pause: SandboxPause
  readonly signal: Signal
  /** What the process calls need from the kernel. */
  readonly services: KernelServices
  readonly syscallTable: ReadonlyArray<Handler>
  readonly strace: StraceOptions | undefined
  /** After the process has exited: its place in the process tree (ProcessTree.leave). */
  readonly leaveProcessTree: (tg: ThreadGroup) => Effect.Effect<void>
}

/** The observer of an ended task's fd table. */
const ignoreFdChanges = (): void => {}

/** Runs a registered process's task to its end; `program` is the module it holds. */
export type RunTask = (tg: ThreadGroup, program: CachedModule) => Effect.Effect<void>

export const makeTaskRunner = (deps: TaskRunnerDeps): RunTask => {
  const { pool, memory, pause, signal, services, strace } = deps
  // strace must see every call: no worker serves any itself.
  const fastPaths = strace === undefined

  /** The end of a task whose guest no longer runs: its memory, its worker's share, its module and its fds go back; its status is final. */
  const releaseTask = (tg: ThreadGroup, program: CachedModule, status: ExitStatus): Effect.Effect<void> =>
    Effect.gen(function*() {
      ;(tg.tasks.memory ?? memory).release(tg.releaseMemory())
      program.release()
      yield* tg.fdTable.closeAll
      tg.markExited(status)
      yield* deps.leaveProcessTree(tg)
    })

  return (tg, program) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const acquired = yield* Effect.exit(pool.acquire)
        if (Exit.isFailure(acquired)) {
          // No thread to run it on: the kernel is shutting down, or a worker's script cannot
          // load (a broken install), which no retry cures. The process dies as killed and says why.
          const why = Cause.squash(acquired.cause)
          const fault = Cause.isInterruptedOnly(acquired.cause) ? undefined : `no worker thread: ${why instanceof Error ? why.message : String(why)}`
          tg.taskEnded({ fault })
          if (fault !== undefined) yield* Effect.logError(`pid ${tg.rootPid}: ${fault}`)
          return yield* releaseTask(tg, program, signaled(SIGKILL))
        }
        const worker = acquired.value
        const words = worker.channel.words
        Atomics.store(words, Word.STATE, State.IDLE)
        tg.attachWorker(worker, worker.lastCpuTime)
        pause.setAttention(tg)
        lendFastPaths(tg, worker, deps.descriptionRefs, fastPaths)
        const context: SyscallContext = {
          tg,
          channel: worker.channel,
          raise: (signo) => signal(tg, signo),
          paused: () => pause.paused,
          services
        }
        // Forked from an uninterruptible region, the server would inherit it; it must stay interruptible.
        const server = yield* Effect.fork(Effect.interruptible(serveSyscalls(deps.syscallTable, context, strace)))
        tg.attachServer(server)
        const started = tg.killedBy === undefined
        const waited = started
          ? yield* Effect.exit(restore(Effect.flatten(worker.run({ _tag: "Run", module: program.module, args: tg.argv, env: tg.env, fastPaths }))))
          : Exit.succeed<RunOutcome>({ _tag: "WorkerDied", reason: "killed before it ran" })
        // Interrupted while the guest ran: the kernel is shutting down; the worker must not outlive the task.
        const outcome: RunOutcome = Exit.isSuccess(waited) ? waited.value : { _tag: "WorkerDied", reason: "kernel shut down" }
        // From here the status is decided and the worker no longer belongs to this process: a
        // signal arriving now must neither rewrite the status nor reach the worker's next guest.
        const status = exitStatusOf(outcome, tg.killedBy)
        // A killed worker's thread may be gone from /proc already: its time then counts as 0.
        const cpu = worker.cpuTime - tg.cpuAtStart
        tg.taskEnded({ fault: faultOf(outcome, tg.killedBy), cpuUsed: cpu > 0n ? cpu : 0n })
        yield* Fiber.interrupt(server)
        yield* releaseChannel(words)
        // A function from outside this scope: a closure made here would keep the whole task
        // (its module, its worker) alive for as long as the process is a zombie.
        tg.fdTable.observe(ignoreFdChanges)
        // A dead thread is gone before the exit is reported; a guest that ended (even unwound
        // by a kill) leaves a healthy worker, which goes back to the pool.
        if (outcome._tag === "WorkerDied") yield* worker.terminate
        yield* pool.release(worker)
        yield* releaseTask(tg, program, status)
      })
    )
}
