/**
 * The birth of a process: its program's module and memory are charged, it is registered (pids,
 * task set, process tree, group, fds) and its task is started in its container's task set.
 *
 * Invariant: the module and the memory charged are always either given back here or owned by
 * the task (runTask gives them back at its end); once a process is registered, only its task
 * ends it.
 */
import { ALL_RIGHTS, DIRECTORY_RIGHTS, FileType, Rights, SIGKILL } from "@runsc/abi"
import { Clock, Effect, FiberSet } from "effect"
import { type InvalidModule, ProcessCreationRefused, SandboxOutOfMemory } from "../errors.js"
import { isSocket, SOCKET_RIGHTS } from "../net/socket.js"
import { directoryDescription } from "../fs/directory.js"
import { type DescriptionRefs, type FdEntry, FdTable } from "../fs/fdTable.js"
import type { FileDescription, Inode } from "../fs/inode.js"
import { devfs } from "../fs/devfs.js"
import { procfs, type SystemInfo } from "../fs/procfs.js"
import { Dentry, resolve } from "../fs/resolve.js"
import type { SyntheticMount } from "../fs/synthetic.js"
import { type MemoryAccount, PROCESS_MEMORY, WASM_PAGE } from "../memoryAccount.js"
import type { CachedModule, ModuleCache } from "../platform/moduleCache.js"
import type { Kill } from "../signal/kill.js"
import type { PidNamespace } from "./pidNamespace.js"
import { newGroup } from "./processTree.js"
import type { RunTask } from "./runTask.js"
import type { ControllingTerminal, ProcessGroup } from "./session.js"
import type { TaskSet } from "./taskSet.js"
import { ThreadGroup } from "./threadGroup.js"

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

export type StartProcess = (args: ProcessArgs) => Effect.Effect<ThreadGroup, InvalidModule | SandboxOutOfMemory | ProcessCreationRefused>

export interface LifecycleDeps {
  readonly modules: ModuleCache
  readonly memory: MemoryAccount
  readonly rootPidNamespace: PidNamespace<ThreadGroup>
  readonly descriptionRefs: DescriptionRefs
  readonly system: SystemInfo
  /** The set of processes that name none (a kernel used without a Loader). */
  readonly ownTasks: TaskSet
  readonly runTask: RunTask
  readonly kill: Kill
  /** The kernel's teardown has begun: no process may start (its task could never run). */
  readonly isShutDown: () => boolean
}

const STDIO_RIGHTS = Rights.FD_READ | Rights.FD_WRITE | Rights.FD_FDSTAT_SET_FLAGS | Rights.FD_FILESTAT_GET |
  Rights.POLL_FD_READWRITE | Rights.FD_SYNC | Rights.FD_DATASYNC | Rights.FD_ADVISE
const SEEKABLE_RIGHTS = Rights.FD_SEEK | Rights.FD_TELL

export const makeStartProcess = (deps: LifecycleDeps): StartProcess => {
  const { memory, modules } = deps

  /** The set a new process joins: the one it is started in, else its parent's, else the kernel's own. */
  const taskSetOf = (args: ProcessArgs) => args.tasks ?? args.parent?.tasks ?? deps.ownTasks

  /** A new process, with its pids, place in the process tree and fds; its task is not started. */
  const createProcess = (args: ProcessArgs, program: CachedModule, share: number): Effect.Effect<ThreadGroup, ProcessCreationRefused> =>
    Effect.gen(function*() {
      const pidNamespace = args.pidNamespace ?? deps.rootPidNamespace
      const ids = new Map<PidNamespace<ThreadGroup>, number>()
      // A child keeps its parent's fd limit, as across fork and exec.
      const fdTable = new FdTable(deps.descriptionRefs, args.maxFds ?? args.parent?.fdTable.limit)
      // The process's own view of the container root: the same tree, with the mounts that
      // depend on who looks (procfs's `self`, its namespace's pids).
      const mounts = new Map<string, Inode>()
      const root = Dentry.root(args.root.inode, mounts)
      const cwd = args.cwd.isRoot ? root : yield* resolve(root, root, args.cwd.path, { followFinal: true }).pipe(
        Effect.orElseSucceed(() => root)
      )
      const taskSet = taskSetOf(args)
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
        args.syntheticMounts ?? [],
        { share, pages: program.memory.initialPages, maximumPages: program.memory.maximumPages }
      )
      for (const mount of tg.syntheticMounts) {
        const shared = mount.fs === "tmpfs" || mount.fs === "bind"
        mounts.set(mount.path, shared ? mount.root : mount.fs === "proc" ? procfs(tg, deps.system) : devfs(tg))
      }
      // Invariant 5: checked in the same synchronous step as the pids are allocated, so that a
      // kill of every process of the container (which closes its admission before it
      // enumerates them) either finds this process registered and kills it, or refuses it.
      const refused = !taskSet.isOpen ? "its container is being killed"
        : !pidNamespace.acceptsNew ? "the init of its PID namespace has died"
        : args.parent !== undefined && !args.parent.isAlive ? "its parent has been killed"
        : taskSet.isFull ? `its container holds ${taskSet.limit} processes, its pids limit`
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
        const group = newGroup(tg, "new")
        if (args.terminal) {
          group.session.terminal = args.terminal
          args.terminal.foreground = group
        }
        tg.place({ parent: undefined, group, ignoredSignals: new Set() })
      } else {
        tg.place({
          parent,
          group: args.group === "new" ? newGroup(tg, parent.group.session) : args.group ?? parent.group,
          // Ignored signals stay ignored in the child, as across execve, unless it asked otherwise.
          ignoredSignals: args.resetSignals ? new Set() : parent.ignoredSignals
        })
      }
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
        // A socket (a listener handed to the init) may do what a socket may.
        const rights = isSocket(stdio) ? SOCKET_RIGHTS : STDIO_RIGHTS | seekable
        yield* fdTable.set(fd, { description: stdio, rightsBase: rights, rightsInheriting: 0n, flags: 0 })
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

  return (args) =>
    // Uninterruptible between the steps, so that the module and the memory charged are always
    // either given back here or owned by the task (runTask gives them back at its end).
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        if (deps.isShutDown()) return yield* Effect.dieMessage("startProcess on a kernel that has shut down")
        const program = yield* restore(modules.acquire(args.programPath, args.programBytes))
        const share = PROCESS_MEMORY + program.memory.tableBytes
        const needed = share + program.memory.initialPages * WASM_PAGE
        // Its container's account (within the sandbox's), as its task releases it at its end.
        const account = taskSetOf(args).memory ?? memory
        if (!account.charge(needed)) {
          program.release()
          return yield* new SandboxOutOfMemory({ path: args.programPath, needed, free: account.free, total: account.total })
        }
        // Not interruptible: once it has registered the process, only its task ends it.
        const tg = yield* Effect.onError(createProcess(args, program, share), () =>
          Effect.sync(() => {
            account.release(needed)
            program.release()
          }))
        // The task fiber is owned by the kernel, not by the caller: it outlives this call.
        // runTask is uninterruptible, so an interrupt of the set after it started still
        // terminates the worker and completes the exit status; forked from this uninterruptible
        // region it would inherit that, and its wait for the guest must stay interruptible.
        yield* FiberSet.run(tg.tasks.fibers, Effect.interruptible(deps.runTask(tg, program)))
        // A parent killed since the child was registered (a kill of it alone racing this spawn)
        // takes its new child along: nothing outlives a kill of every process that existed
        // when it was sent. Here, not in spawn, so that the interrupt of the killed parent's
        // syscall cannot skip it.
        if (args.parent?.killedBy !== undefined) yield* deps.kill(tg, SIGKILL)
        return tg
      })
    )
}
