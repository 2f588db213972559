/**
 * The Kernel: a scoped service that owns every process of the sandbox — the PID namespaces, the
 * worker pool, the module cache and one fiber per task serving its syscalls.
 *
 * Invariants: a process's exit status is completed only after its worker has stopped running
 * guest code and its fds are closed; closing the kernel's scope interrupts every task fiber,
 * each of which terminates its worker, before the pool's finalizer terminates the rest.
 */
import {
  ALL_RIGHTS,
  defaultAction,
  DIRECTORY_RIGHTS,
  Errno,
  type ExitStatus,
  exited,
  FdFlags,
  FileType,
  Rights,
  SIGFPE,
  SIGCHLD,
  SIGCONT,
  SIGILL,
  SIGKILL,
  SIGSEGV,
  signaled,
  SIGSYS
} from "@runsc/abi"
import { getEnv } from "@runsc/spec"
import { Cause, Clock, Context, Deferred, Effect, Exit, Fiber, FiberId, FiberSet, Layer, Scope } from "effect"
import * as Os from "node:os"
import {
  type ExecNotFound,
  fail,
  type InvalidModule,
  type NotWasm,
  ProcessCreationRefused,
  SandboxOutOfMemory,
  type SyscallError
} from "./errors.js"
import { DescriptionRefs, type FdEntry, FdTable } from "./fs/fdTable.js"
import { directoryDescription } from "./fs/directory.js"
import type { FileDescription, Inode } from "./fs/inode.js"
import { ContentCache } from "./fs/contentCache.js"
import { HostFdBudget } from "./fs/hostFds.js"
import { makePipe, type Pipe, PIPE_CAPACITY } from "./fs/pipe.js"
import { procfs, type SystemInfo } from "./fs/procfs.js"
import { devfs } from "./fs/devfs.js"
import type { SyntheticMount } from "./fs/synthetic.js"
import { Dentry, resolve } from "./fs/resolve.js"
import { FAST_NONBLOCK, FAST_WRITE_FDS, KILLED, State, Word } from "./platform/channel.js"
import { MemoryAccount, PROCESS_MEMORY } from "./memoryAccount.js"
import { type CachedModule, ModuleCache } from "./platform/moduleCache.js"
import { type GuestPlatform, type GuestThread, makeWorkerPool, type RunOutcome, type WorkerPoolStats } from "./platform/pool.js"
import type { StartingThread } from "./platform/startThread.js"
import type { KernelServices, SpawnRequest, SyscallContext } from "./syscalls/context.js"
import { releaseChannel, serveSyscalls } from "./syscalls/serve.js"
import type { StraceOptions } from "./syscalls/strace.js"
import { makeSyscallTable } from "./syscalls/table.js"
import { findExecutable, programFromBytes, readProgram } from "./task/exec.js"
import { TaskSet } from "./task/taskSet.js"
import { PidNamespace } from "./task/pidNamespace.js"
import { type ControllingTerminal, ProcessGroup, Session } from "./task/session.js"
import { makeWatchdog, type WatchdogOptions } from "./watchdog/watchdog.js"
import { ThreadGroup } from "./task/threadGroup.js"

export interface KernelOptions {
  /** Idle workers kept started ahead of need (default 1). */
  readonly warmWorkers?: number
  /** Workers started with the kernel (default: warmWorkers). */
  readonly prestartWorkers?: number
  /** Worker threads started before the kernel (`startGuestThread`), for its pool to adopt. */
  readonly startedThreads?: ReadonlyArray<StartingThread>
  /** Where guest threads come from (default: worker threads). */
  readonly platform?: GuestPlatform
  /** Runs the watchdog; its "panic" action panics the kernel. */
  readonly watchdog?: Omit<WatchdogOptions, "onPanic">
  readonly strace?: StraceOptions
  /**
   * Processes the sandbox may hold at once, zombies included (default 512, and never more than
   * its memory holds of small processes, totalMemory / PROCESS_BUDGET, nor than the worker
   * threads its host descriptors hold beside the guests' files and the control plane's reserve,
   * HostFdBudget.workerThreads): past it proc_spawn fails EAGAIN, so a fork bomb exhausts the
   * sandbox's budget and not the host's threads, memory or the control plane's descriptors.
   */
  readonly maxProcesses?: number
  /**
   * The sandbox's memory, in bytes: the ceiling of its memory account (guest memory, in-memory
   * files, a share per process; see MemoryAccount) and /proc/meminfo's total. Default: half the
   * host's memory (defaultTotalMemory).
   */
  readonly totalMemory?: number
  /** Bytes of compiled modules no process uses that the module cache keeps (default 128 MiB). */
  readonly moduleCacheBytes?: number
  /** The host descriptors guests may hold (default: HostFdBudget.ofProcess, half the process's RLIMIT_NOFILE). */
  readonly hostFds?: HostFdBudget
}

const DEFAULT_MAX_PROCESSES = 512

/**
 * What the process limit counts per process: its share (PROCESS_MEMORY) and a small guest's
 * memory (a C program starts with well under 1 MiB), so that a fork bomb of small processes meets
 * the process limit (EAGAIN) a little before the sandbox's memory is full (which is ENOMEM).
 */
export const PROCESS_BUDGET = PROCESS_MEMORY + 1024 * 1024

/**
 * The sandbox's memory when nobody sized it (no memory limit in the spec): half the host's.
 * Not all of it, since the host needs memory of its own and the sandbox process holds more
 * than what it charges (its own heap, compiled code); a fixed half, not what is free at boot, so
 * that the same bundle gets the same sandbox on a busy machine and on an idle one. The same
 * fraction Linux gives a tmpfs by default, but here for everything the sandbox's guests hold
 * together: every tmpfs, overlay, guest memory and process.
 */
export const defaultTotalMemory = (): number => Math.floor(Os.totalmem() / 2)

/** Bytes in a page of wasm memory. */
const WASM_PAGE = 65536

export interface ProcessArgs {
  readonly argv: ReadonlyArray<string>
  readonly env: ReadonlyArray<string>
  readonly root: Dentry
  readonly cwd: Dentry
  /** Path of the program inside the container (or on the host for `runsc do`), for errors. */
  readonly programPath: string
  readonly programBytes: Uint8Array
  /**
   * fds 0, 1 and 2: a description (given stdio rights), an fd entry another process shares
   * (a spawned child's inheritance), or nothing (closed).
   */
  readonly stdio: ReadonlyArray<FileDescription | FdEntry | undefined>
  readonly pidNamespace?: PidNamespace<ThreadGroup>
  /** Its RLIMIT_NOFILE (default: its parent's, else 1024). */
  readonly maxFds?: number
  /** Where the process sees procfs and devfs (from the spec's mounts). */
  readonly syntheticMounts?: ReadonlyArray<SyntheticMount>
  readonly uid?: number
  /**
   * The process that spawned it. Without one the process is the runtime's (a container init,
   * an exec): it leads a new session and process group, and the caller waits for it.
   */
  readonly parent?: ThreadGroup
  /** With a parent: the parent's group (default), or a new group the child leads. */
  readonly group?: ProcessGroup<ThreadGroup> | "new"
  /** With a parent: start with every signal's default action instead of the parent's ignores. */
  readonly resetSignals?: boolean
  /** A terminal the process gets as its session's controlling terminal (runtime processes only). */
  readonly terminal?: ControllingTerminal<ThreadGroup>
  /**
   * The processes of its container (default: its parent's, else the kernel's own set), which it
   * joins as it is registered; while the set's admission is closed it is refused
   * (ProcessCreationRefused).
   */
  readonly tasks?: TaskSet
}


export interface KernelShape {
  readonly rootPidNamespace: PidNamespace<ThreadGroup>
  /** The memory the sandbox has (/proc/meminfo's total; the ceiling of `memory`). */
  readonly totalMemory: number
  /**
   * What the sandbox's guests hold of its memory: the processes' guest memory and share, and the
   * file data of every in-memory filesystem made with it (tmpfs mounts, overlay upper layers).
   */
  readonly memory: MemoryAccount
  /** The host descriptors the sandbox's guests may hold (the gofer's files and trees; ENFILE past it). */
  readonly hostFds: HostFdBudget
  readonly modules: ModuleCache
  /** Files the sentry reads whole for itself (programs, /etc/passwd), cached by identity. */
  readonly files: ContentCache
  /**
   * Creates a process and starts its task; returns once it is running. SandboxOutOfMemory when
   * the sandbox's memory cannot hold its worker's share and its initial guest memory;
   * ProcessCreationRefused when its container's admission is closed, its PID namespace refuses
   * new processes or its parent has been killed (checked as it is registered: see TaskSet).
   */
  readonly startProcess: (args: ProcessArgs) => Effect.Effect<ThreadGroup, InvalidModule | SandboxOutOfMemory | ProcessCreationRefused>
  /**
   * A set for the processes of one container. Closing the scope it is made in SIGKILLs every
   * process of the set, waits for each to exit (children they spawn included) and reaps them;
   * only then does that scope release what it acquired before the set.
   */
  readonly taskSet: (containerId: string) => Effect.Effect<TaskSet, never, Scope.Scope>
  /** Delivers a signal with its default action (WASI guests install no handlers). */
  readonly signal: (tg: ThreadGroup, signo: number) => Effect.Effect<void>
  /** Every process not yet reaped, by root-namespace pid. */
  readonly processes: Effect.Effect<ReadonlyArray<ThreadGroup>>
  /** Releases an exited process's pids. */
  readonly reap: (tg: ThreadGroup) => Effect.Effect<void>
  /** Ends the sandbox: SIGKILLs every process and records why (watchdog panic, panic signal). */
  readonly panic: (reason: string) => Effect.Effect<void>
  /** Waits until the kernel panics; yields the reason. */
  readonly panicked: Effect.Effect<string>
  /**
   * Stops every task of the sandbox at its next syscall boundary (and every task started while
   * paused at its first); false when it was already paused.
   */
  readonly pause: Effect.Effect<boolean>
  /** Lets every task go on; false when the sandbox was not paused. */
  readonly resume: Effect.Effect<boolean>
  readonly isPaused: Effect.Effect<boolean>
  /** The guest worker threads that exist, and how many are idle in the pool. */
  readonly workerStats: Effect.Effect<WorkerPoolStats>
  /** What a process uses: CPU time of its task (ns) and its guest memory (bytes, 0 once ended). */
  readonly usage: (tg: ThreadGroup) => Effect.Effect<ProcessUsage>
  /**
   * A pipe inside the sandbox, to give as stdio to processes the runtime starts. Each end is
   * closed when the last process holding it has exited (an end given to no process stays open
   * until its `close`).
   */
  readonly makePipe: Effect.Effect<Pipe>
}

/** Linux's errno for each way finding a program fails, as proc_spawn reports it. */
const spawnErrno = (error: ExecNotFound | NotWasm | InvalidModule): Errno =>
  error._tag === "ExecNotFound" ? error.errno as Errno : Errno.NOEXEC

export interface ProcessUsage {
  readonly cpuNs: bigint
  readonly memoryBytes: number
}

/** A spawn path with no slash names a file in the working directory (no PATH search). */
const withSlash = (path: string) => (path.includes("/") ? path : `./${path}`)

/** How long a guest answered KILLED has to end before its thread is terminated. */
const KILL_GRACE = "100 millis"

const STDIO_RIGHTS = Rights.FD_READ | Rights.FD_WRITE | Rights.FD_FDSTAT_SET_FLAGS | Rights.FD_FILESTAT_GET |
  Rights.POLL_FD_READWRITE | Rights.FD_SYNC | Rights.FD_DATASYNC | Rights.FD_ADVISE
const SEEKABLE_RIGHTS = Rights.FD_SEEK | Rights.FD_TELL

/** The fault behind a trap's (or a crash's) signal, in words; undefined for other ends. */
const faultOf = (outcome: RunOutcome, killedBy: number | undefined): string | undefined => {
  if (killedBy !== undefined || outcome._tag !== "Guest") return undefined
  const end = outcome.end
  if (end._tag === "Crash") return `instance failed: ${end.message}`
  if (end._tag !== "Trap") return undefined
  // V8 says "Maximum call stack size exceeded" and "unreachable"; say what happened in wasm terms.
  const reason = end.kind === "stack" ? "call stack exhausted" : end.kind === "unreachable" ? "unreachable instruction executed" : end.message
  return `wasm trap: ${reason}`
}

/** The observer of an ended task's fd table. */
const ignoreFdChanges = (): void => {}

const exitStatusOf = (outcome: RunOutcome, killedBy: number | undefined): ExitStatus => {
  if (killedBy !== undefined) return signaled(killedBy)
  if (outcome._tag === "WorkerDied") return signaled(SIGKILL)
  const end = outcome.end
  switch (end._tag) {
    case "Returned":
      return exited(0)
    case "ProcExit":
      return exited(end.code)
    case "Trap":
      return signaled(end.kind === "unreachable" || end.kind === "other" ? SIGILL : end.kind === "divide" ? SIGFPE : SIGSEGV)
    case "Crash":
      return signaled(SIGSYS)
    case "Killed":
      // Only the sentry answers KILLED, and only after recording the signal.
      return signaled(SIGKILL)
  }
}

export class Kernel extends Context.Tag("@runsc/kernel/Kernel")<Kernel, KernelShape>() {
  static layer(options: KernelOptions = {}): Layer.Layer<Kernel> {
    return Layer.scoped(Kernel, makeKernel(options))
  }
}

const makeKernel = (options: KernelOptions): Effect.Effect<KernelShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pool = yield* makeWorkerPool({
      warm: options.warmWorkers ?? 1,
      ...(options.prestartWorkers !== undefined ? { prestart: options.prestartWorkers } : {}),
      ...(options.startedThreads ? { adopt: options.startedThreads } : {}),
      ...(options.platform ? { platform: options.platform } : {})
    })
    const modules = new ModuleCache(options.moduleCacheBytes)
    const rootPidNamespace = new PidNamespace<ThreadGroup>(undefined)
    const descriptionRefs = new DescriptionRefs()
    const files = new ContentCache()
    const memory = new MemoryAccount(options.totalMemory ?? defaultTotalMemory())
    const hostFds = options.hostFds ?? (yield* HostFdBudget.ofProcess)
    const maxProcesses = Math.min(options.maxProcesses ?? DEFAULT_MAX_PROCESSES, Math.floor(memory.total / PROCESS_BUDGET), hostFds.workerThreads)
    // Spawns past the limit check and not yet in the process table (loading their program):
    // counted with the table, so that concurrent spawns cannot pass the limit together.
    let spawning = 0
    const system: SystemInfo = { bootTime: yield* Clock.currentTimeNanos, memory }
    let pipesMade = 0n
    // Runs after the task set is interrupted (finalizers run in reverse): a task interrupted
    // before it started never completed its exit status; no waiter may hang on it.
    yield* Effect.addFinalizer(() =>
      Effect.forEach(rootPidNamespace.processes, ([, tg]) => Deferred.succeed(tg.exitStatus, signaled(SIGKILL)), {
        discard: true
      })
    )
    // The fibers that end killed tasks (endTask).
    const tasks = yield* FiberSet.make()
    // The processes of no container (a kernel used without a Loader): killed and waited for
    // at teardown, after new processes are refused (the finalizer below runs first).
    const ownTasks = yield* taskSet("")
    // Runs first at teardown: from then on no process may start (its task could never run).
    let shutDown = false
    yield* Effect.addFinalizer(() => Effect.sync(() => (shutDown = true)))
    const fastPaths = options.strace === undefined
    const syscallTable = makeSyscallTable()

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
        if (server !== undefined && tg.currentSyscall >= 0) {
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

    const kill = (tg: ThreadGroup, signo: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!tg.isAlive) return Effect.void
        tg.killedBy = signo
        tg.state = "exiting"
        if (tg.continued) Deferred.unsafeDone(tg.continued, Exit.void)
        // Starts ending the task and returns: the task's own fiber completes the exit status,
        // which is what waiters wait for, once the guest has stopped running.
        return tg.worker ? Effect.asVoid(FiberSet.run(tasks, endTask(tg, tg.worker))) : Effect.void
      })

    const signal = (tg: ThreadGroup, signo: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        // An ignored signal is discarded when it is sent (SIGKILL and SIGSTOP cannot be ignored);
        // SIGCONT continues a stopped process even so.
        if (signo === 0 || !tg.isAlive || (tg.ignoredSignals.has(signo) && signo !== SIGCONT)) return Effect.void
        switch (defaultAction(signo)) {
          case "terminate":
          case "core":
            return kill(tg, signo)
          case "ignore":
            return Effect.void
          case "stop":
            // Takes effect when the task next enters the sentry.
            if (tg.state === "running") {
              tg.state = "stopped"
              tg.continued = Deferred.unsafeMake(FiberId.none)
              setAttention(tg)
              // A parent joining with WAKE_STOPPED learns of it once.
              tg.unreportedStop = signo
              tg.parent?.childEvents.notify()
            }
            return Effect.void
          case "continue":
            if (tg.state === "stopped") {
              tg.state = "running"
              tg.unreportedStop = undefined
              const gate = tg.continued
              tg.continued = undefined
              setAttention(tg)
              if (gate) Deferred.unsafeDone(gate, Exit.void)
            }
            return Effect.void
        }
      })

    /**
     * Publishes which guest fds the worker may serve itself: writes to host stdio, and reads of a
     * read-only host file while that fd alone refers to its description (the worker then owns
     * the offset, in the channel; a dup, an inheriting child or a change of the fd takes it back).
     */
    const attachFastPaths = (tg: ThreadGroup, worker: GuestThread) => {
      const { fastRead, fastReadPosition, fastWrite } = worker.channel
      fastWrite.fill(0)
      fastRead.fill(0)
      if (!fastPaths) return
      const lent: Array<{ readonly description: FileDescription; readonly watch: { readonly cancel: () => void } } | undefined> = []
      const takeBack = (fd: number) => {
        const loan = lent[fd]
        if (loan === undefined) return
        lent[fd] = undefined
        fastRead[fd] = 0
        loan.watch.cancel()
        loan.description.workerReadable!.unshare()
      }
      tg.fdTable.observe((fd, entry) => {
        if (fd >= FAST_WRITE_FDS) return
        const hostFd = entry?.description.passthroughHostFd
        // An APPEND fd writes through the sentry, which appends (the host fd may not be O_APPEND).
        fastWrite[fd] = hostFd === undefined || (entry!.rightsBase & Rights.FD_WRITE) === 0n || (entry!.flags & FdFlags.APPEND) !== 0 ? 0
          : (hostFd + 1) | ((entry!.flags & FdFlags.NONBLOCK) !== 0 ? FAST_NONBLOCK : 0)
        takeBack(fd)
        const readable = entry?.description.workerReadable
        if (readable === undefined || (entry!.rightsBase & Rights.FD_READ) === 0n || !descriptionRefs.exclusive(entry!.description)) return
        readable.share(fastReadPosition, fd)
        fastRead[fd] = (readable.hostFd + 1) | ((entry!.flags & FdFlags.NONBLOCK) !== 0 ? FAST_NONBLOCK : 0)
        lent[fd] = { description: entry!.description, watch: descriptionRefs.whenShared(entry!.description, () => takeBack(fd)) }
      })
    }

    /** What a process holds of the sandbox's memory from its start to its exit. */
    const processCharge = (tg: ThreadGroup) => tg.memoryShare + tg.memoryPages * WASM_PAGE

    /** memory_grow: the guest's memory grows from `current` pages by `pages` if the sandbox's memory holds them. */
    const growMemory = (tg: ThreadGroup, current: number, pages: number): boolean => {
      const wanted = current + pages
      if (wanted > tg.maximumMemoryPages) return false
      // Relative to what is charged, not to `current`: a grow granted earlier that V8 then
      // could not make is charged until the next one.
      const change = (wanted - tg.memoryPages) * WASM_PAGE
      if (change > 0 && !memory.charge(change)) return false
      if (change < 0) memory.release(-change)
      tg.memoryPages = wanted
      return true
    }

    const runTask = (tg: ThreadGroup, program: CachedModule): Effect.Effect<void> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const acquired = yield* Effect.exit(pool.acquire)
          if (Exit.isFailure(acquired)) {
            // No thread to run it on: the kernel is shutting down, or a worker's script cannot
            // load (a broken install), which no retry cures. The process dies as killed and says why.
            const why = Cause.squash(acquired.cause)
            tg.fault = Cause.isInterruptedOnly(acquired.cause) ? undefined : `no worker thread: ${why instanceof Error ? why.message : String(why)}`
            if (tg.fault !== undefined) yield* Effect.logError(`pid ${tg.rootPid}: ${tg.fault}`)
            tg.state = "exiting"
            return yield* releaseTask(tg, program, signaled(SIGKILL))
          }
          const worker = acquired.value
          const words = worker.channel.words
          Atomics.store(words, Word.STATE, State.IDLE)
          tg.worker = worker
          tg.cpuAtStart = worker.lastCpuTime
          setAttention(tg)
          attachFastPaths(tg, worker)
          const context: SyscallContext = {
            tg,
            channel: worker.channel,
            raise: (signo) => signal(tg, signo),
            paused: () => pausedGate,
            services
          }
          // Forked from an uninterruptible region, the server would inherit it; it must stay interruptible.
          const server = yield* Effect.fork(Effect.interruptible(serveSyscalls(syscallTable, context, options.strace)))
          tg.server = server
          const started = tg.killedBy === undefined
          const waited = started
            ? yield* Effect.exit(restore(Effect.flatten(worker.run({ _tag: "Run", module: program.module, args: tg.argv, env: tg.env, fastPaths }))))
            : Exit.succeed<RunOutcome>({ _tag: "WorkerDied", reason: "killed before it ran" })
          // Interrupted while the guest ran: the kernel is shutting down; the worker must not outlive the task.
          const outcome: RunOutcome = Exit.isSuccess(waited) ? waited.value : { _tag: "WorkerDied", reason: "kernel shut down" }
          // From here the status is decided and the worker no longer belongs to this process: a
          // signal arriving now must neither rewrite the status nor reach the worker's next guest.
          const status = exitStatusOf(outcome, tg.killedBy)
          tg.fault = faultOf(outcome, tg.killedBy)
          // A killed worker's thread may be gone from /proc already: its time then counts as 0.
          const cpu = worker.cpuTime - tg.cpuAtStart
          tg.cpuUsed = cpu > 0n ? cpu : 0n
          tg.state = "exiting"
          tg.worker = undefined
          tg.server = undefined
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

    /** The end of a task whose guest no longer runs: its memory, its worker's share, its module and its fds go back; its status is final. */
    const releaseTask = (tg: ThreadGroup, program: CachedModule, status: ExitStatus): Effect.Effect<void> =>
      Effect.gen(function*() {
        memory.release(processCharge(tg))
        tg.memoryPages = 0
        tg.memoryShare = 0
        program.release()
        yield* tg.fdTable.closeAll
        tg.state = "exited"
        yield* Deferred.succeed(tg.exitStatus, status)
        yield* leaveProcessTree(tg)
      })

    /**
     * After a process has exited: its children go to the init of their namespace when that init
     * is alive in the same container (else nobody will wait for them: the sentry reaps them);
     * its parent learns of the exit (SIGCHLD, a wake-up of proc_join); an orphan is reaped now.
     */
    const leaveProcessTree = (tg: ThreadGroup): Effect.Effect<void> =>
      Effect.gen(function*() {
        // As on Linux, the death of a PID namespace's init (of a namespace below the root's)
        // ends the namespace: no process may join it any more, and every process in it is killed.
        const ns = tg.pidNamespace
        if (ns.parent !== undefined && ns.get(1) === tg) {
          ns.refuseNew()
          yield* Effect.forEach(ns.processes, ([, member]) => kill(member, SIGKILL), { discard: true })
        }
        for (const child of tg.children) {
          tg.children.delete(child)
          const init = child.pidNamespace.get(1)
          if (init !== undefined && init !== tg && init.isAlive && init.tasks === child.tasks) {
            child.parent = init
            init.children.add(child)
            if (child.state === "exited") init.childEvents.notify()
          } else {
            child.parent = undefined
            child.autoReap = true
            if (child.state === "exited") yield* reap(child)
          }
        }
        const parent = tg.parent
        if (parent !== undefined) {
          yield* signal(parent, SIGCHLD)
          parent.childEvents.notify()
        } else if (tg.autoReap) {
          yield* reap(tg)
        }
      })

    const startProcess = (args: ProcessArgs): Effect.Effect<ThreadGroup, InvalidModule | SandboxOutOfMemory | ProcessCreationRefused> =>
      // Uninterruptible between the steps, so that the module and the memory charged are always
      // either given back here or owned by the task (runTask gives them back at its end).
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          if (shutDown) return yield* Effect.dieMessage("startProcess on a kernel that has shut down")
          const program = yield* restore(modules.acquire(args.programPath, args.programBytes))
          const share = PROCESS_MEMORY + program.memory.tableBytes
          const needed = share + program.memory.initialPages * WASM_PAGE
          if (!memory.charge(needed)) {
            program.release()
            return yield* new SandboxOutOfMemory({ path: args.programPath, needed, free: memory.free, total: memory.total })
          }
          // Not interruptible: once it has registered the process, only its task ends it.
          const tg = yield* Effect.onError(createProcess(args, program, share), () =>
            Effect.sync(() => {
              memory.release(needed)
              program.release()
            }))
          // The task fiber is owned by the kernel, not by the caller: it outlives this call.
          // runTask is uninterruptible, so an interrupt of the set after it started still
          // terminates the worker and completes the exit status; forked from this uninterruptible
          // region it would inherit that, and its wait for the guest must stay interruptible.
          yield* FiberSet.run(tg.tasks.fibers, Effect.interruptible(runTask(tg, program)))
          // A parent killed since the child was registered (a kill of it alone racing this spawn)
          // takes its new child along: nothing outlives a kill of every process that existed
          // when it was sent. Here, not in spawn, so that the interrupt of the killed parent's
          // syscall cannot skip it.
          if (args.parent?.killedBy !== undefined) yield* kill(tg, SIGKILL)
          return tg
        })
      )

    /** A new process, with its pids, place in the process tree and fds; its task is not started. */
    const createProcess = (args: ProcessArgs, program: CachedModule, share: number): Effect.Effect<ThreadGroup, ProcessCreationRefused> =>
      Effect.gen(function*() {
        const pidNamespace = args.pidNamespace ?? rootPidNamespace
        const ids = new Map<PidNamespace<ThreadGroup>, number>()
        // A child keeps its parent's fd limit, as across fork and exec.
        const fdTable = new FdTable(descriptionRefs, args.maxFds ?? args.parent?.fdTable.limit)
        // The process's own view of the container root: the same tree, with the mounts that
        // depend on who looks (procfs's `self`, its namespace's pids).
        const mounts = new Map<string, Inode>()
        const root = Dentry.root(args.root.inode, mounts)
        const cwd = args.cwd.isRoot ? root : yield* resolve(root, root, args.cwd.path, { followFinal: true }).pipe(
          Effect.orElseSucceed(() => root)
        )
        const taskSet = args.tasks ?? args.parent?.tasks ?? ownTasks
        const tg = new ThreadGroup(
          ids,
          pidNamespace,
          taskSet,
          args.argv,
          args.env,
          root,
          cwd,
          fdTable,
          yield* Clock.currentTimeNanos,
          args.uid ?? args.parent?.uid ?? 0,
          args.syntheticMounts ?? []
        )
        tg.memoryShare = share
        tg.memoryPages = program.memory.initialPages
        tg.maximumMemoryPages = program.memory.maximumPages
        for (const mount of tg.syntheticMounts) {
          const shared = mount.fs === "tmpfs" || mount.fs === "bind"
          mounts.set(mount.path, shared ? mount.root : mount.fs === "proc" ? procfs(tg, system) : devfs(tg))
        }
        // Invariant 5: checked in the same synchronous step as the pids are allocated, so that a
        // kill of every process of the container (which closes its admission before it
        // enumerates them) either finds this process registered and kills it, or refuses it.
        const refused = !taskSet.isOpen ? "its container is being killed"
          : !pidNamespace.acceptsNew ? "the init of its PID namespace has died"
          : args.parent !== undefined && !args.parent.isAlive ? "its parent has been killed"
          : undefined
        if (refused !== undefined) return yield* new ProcessCreationRefused({ path: args.programPath, reason: refused })
        for (const ns of pidNamespace.lineage) {
          const pid = ns.allocate(tg)
          if (pid === undefined) return yield* Effect.dieMessage("pid namespace exhausted")
          ids.set(ns, pid)
        }
        taskSet.add(tg)
        const parent = args.parent
        if (parent === undefined) {
          tg.group = newGroup(tg, "new")
          if (args.terminal) {
            tg.group.session.terminal = args.terminal
            args.terminal.foreground = tg.group
          }
        } else {
          tg.parent = parent
          parent.children.add(tg)
          // Ignored signals stay ignored in the child, as across execve, unless it asked otherwise.
          tg.ignoredSignals = args.resetSignals ? new Set() : parent.ignoredSignals
          tg.group = args.group === "new" ? newGroup(tg, parent.group.session) : args.group ?? parent.group
        }
        tg.group.add(tg)
        for (const [fd, stdio] of args.stdio.entries()) {
          if (stdio === undefined) continue
          if ("description" in stdio) {
            yield* fdTable.set(fd, stdio)
            continue
          }
          // As lseek works on Linux: files and devices (/dev/null), not pipes, sockets or terminals.
          const seekable = stdio.filetype === FileType.REGULAR_FILE ||
              (stdio.filetype === FileType.CHARACTER_DEVICE && stdio.isTerminal !== true)
            ? SEEKABLE_RIGHTS
            : 0n
          yield* fdTable.set(fd, { description: stdio, rightsBase: STDIO_RIGHTS | seekable, rightsInheriting: 0n, flags: 0 })
        }
        yield* fdTable.set(3, {
          description: directoryDescription(root.inode),
          dentry: root,
          preopen: "/",
          rightsBase: DIRECTORY_RIGHTS,
          rightsInheriting: ALL_RIGHTS,
          flags: 0
        })
        return tg
      })

    // While paused: completed by resume. Tasks wait on it at syscall boundaries; ATTENTION makes
    // the worker enter the sentry at its next call, even one it would serve itself.
    let pausedGate: Deferred.Deferred<void> | undefined
    const setAttention = (tg: ThreadGroup) => {
      if (tg.worker) Atomics.store(tg.worker.channel.words, Word.ATTENTION, pausedGate || tg.continued ? 1 : 0)
    }
    const pause = Effect.sync(() => {
      if (pausedGate) return false
      pausedGate = Deferred.unsafeMake(FiberId.none)
      for (const [, tg] of rootPidNamespace.processes) setAttention(tg)
      return true
    })
    const resume = Effect.sync(() => {
      const gate = pausedGate
      if (!gate) return false
      pausedGate = undefined
      for (const [, tg] of rootPidNamespace.processes) setAttention(tg)
      Deferred.unsafeDone(gate, Exit.void)
      return true
    })

    const panicReason = yield* Deferred.make<string>()
    const panic = (reason: string) =>
      Effect.zipRight(
        Deferred.succeed(panicReason, reason),
        Effect.forEach(rootPidNamespace.processes, ([, tg]) => kill(tg, SIGKILL), { discard: true })
      )

    const processes = Effect.sync(() => rootPidNamespace.processes.map(([, tg]) => tg).sort((a, b) => a.rootPid - b.rootPid))

    if (options.watchdog) yield* makeWatchdog({ ...options.watchdog, onPanic: panic }, processes)

    /** Forgets an exited process: its pids, its place in its group and under its parent. */
    const reap = (tg: ThreadGroup) =>
      Effect.sync(() => {
        if (tg.reaped) return
        tg.reaped = true
        tg.tasks.remove(tg)
        for (const [ns, pid] of tg.ids) if (ns.get(pid) === tg) ns.release(pid)
        tg.parent?.children.delete(tg)
        tg.group.remove(tg)
      })

    /** SIGKILLs every process of `set` and waits for each to exit, until none is left; reaps them. */
    const killAndReap = (set: TaskSet): Effect.Effect<void> =>
      Effect.gen(function*() {
        set.close()
        for (let all = set.processes; all.length > 0; all = set.processes) {
          yield* Effect.forEach(all, (tg) => Effect.zipRight(kill(tg, SIGKILL), Deferred.await(tg.exitStatus)), { discard: true })
          yield* Effect.forEach(all, reap, { discard: true })
        }
      })

    function taskSet(containerId: string): Effect.Effect<TaskSet, never, Scope.Scope> {
      return Effect.gen(function*() {
        // Made first, so interrupted last: by then the finalizer below has ended every task.
        const set = new TaskSet(containerId, yield* FiberSet.make())
        yield* Effect.addFinalizer(() => killAndReap(set))
        return set
      })
    }

    const newGroup = (leader: ThreadGroup, session: Session<ThreadGroup> | "new"): ProcessGroup<ThreadGroup> =>
      new ProcessGroup<ThreadGroup>(leader, session === "new" ? new Session<ThreadGroup>(leader) : session)

    /** proc_spawn: finds and loads the program as execve would, then starts it as a child of `parent`. */
    const spawn = (parent: ThreadGroup, request: SpawnRequest): Effect.Effect<ThreadGroup, SyscallError> =>
      Effect.gen(function*() {
        if (rootPidNamespace.processes.length + spawning >= maxProcesses) return yield* fail(Errno.AGAIN)
        spawning++
        yield* Effect.addFinalizer(() => Effect.sync(() => spawning--))
        const searchPath = request.searchPath ? getEnv(request.env, "PATH") ?? getEnv(parent.env, "PATH") : undefined
        const found = yield* findExecutable(parent.root, parent.cwd, request.searchPath ? request.path : withSlash(request.path), searchPath)
        const program = yield* programFromBytes(
          parent.root,
          parent.cwd,
          found.path,
          yield* readProgram(found, request.path, files),
          request.argv,
          files
        )
        return yield* startProcess({
          argv: program.argv,
          env: request.env,
          root: parent.root,
          cwd: parent.cwd,
          programPath: program.path,
          programBytes: program.bytes,
          stdio: request.stdio,
          pidNamespace: parent.pidNamespace,
          syntheticMounts: parent.syntheticMounts,
          parent,
          group: request.group,
          resetSignals: request.resetSignals
        })
      }).pipe(Effect.scoped, Effect.catchTags({
        ExecNotFound: (e) => fail(spawnErrno(e)),
        NotWasm: (e) => fail(spawnErrno(e)),
        InvalidModule: (e) => fail(spawnErrno(e)),
        SandboxOutOfMemory: () => fail(Errno.NOMEM),
        ProcessCreationRefused: () => fail(Errno.AGAIN)
      }))

    const services: KernelServices = {
      spawn,
      signal,
      reap,
      newGroup,
      newPipe: () => {
        if (!memory.charge(PIPE_CAPACITY)) return undefined
        return makePipe(++pipesMade, () => memory.release(PIPE_CAPACITY))
      },
      growMemory
    }

    return {
      rootPidNamespace,
      totalMemory: memory.total,
      memory,
      hostFds,
      modules,
      files,
      startProcess,
      taskSet,
      signal,
      processes,
      reap,
      panic,
      panicked: Deferred.await(panicReason),
      pause,
      resume,
      isPaused: Effect.sync(() => pausedGate !== undefined),
      workerStats: pool.stats,
      makePipe: Effect.sync(() => makePipe(++pipesMade)),
      usage: (tg) =>
        Effect.sync(() => {
          const worker = tg.worker
          if (worker === undefined) return { cpuNs: tg.cpuUsed ?? 0n, memoryBytes: 0 }
          const cpu = worker.cpuTime - tg.cpuAtStart
          return { cpuNs: cpu > 0n ? cpu : 0n, memoryBytes: tg.memoryPages * WASM_PAGE }
        })
    }
  })
