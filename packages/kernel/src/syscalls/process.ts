/**
 * The process calls of docs/process-api.md: WASIX's proc_id, proc_parent, proc_signal,
 * proc_join, fd_pipe and fd_dup, and our runsc_proc_v1 module (spawn, process groups,
 * sessions, terminal foreground groups).
 *
 * Every pid a guest passes or receives is a pid in the caller's PID namespace; a process of
 * another namespace that the caller cannot name does not exist for it (ESRCH), and a process of
 * another container that shares the namespace cannot be signalled (EPERM).
 */
import {
  Errno,
  isValidSignal,
  JoinFlags,
  JoinStatusType,
  Layout,
  Rights,
  SIGKILL,
  signalFromWasi,
  SIGSTOP,
  signalToWasi,
  SpawnFd,
  SpawnFlags
} from "@runsc/abi"
import { Deferred, Effect } from "effect"
import { fail, type SyscallError } from "../errors.js"
import type { FdEntry } from "../fs/fdTable.js"
import { args, type BytesArg, results } from "../platform/syscallAbi.js"
import type { ProcessGroup } from "../task/session.js"
import type { ThreadGroup } from "../task/threadGroup.js"
import { blocking, type Handler, pathArg, setPayloadLength, type SyscallContext } from "./context.js"

// Each call's accessors, looked up once (see platform/syscallAbi.ts).
const ProcIdResults = results.proc_id
const ProcParentArgs = args.proc_parent
const ProcParentResults = results.proc_parent
const ProcSignalArgs = args.proc_signal
const ProcJoinResults = results.proc_join
const ProcJoinArgs = args.proc_join
const FdPipeResults = results.fd_pipe
const FdDupArgs = args.fd_dup
const FdDupResults = results.fd_dup
const ProcSpawnArgs = args.proc_spawn
const ProcSpawnResults = results.proc_spawn
const ProcSetpgidArgs = args.proc_setpgid
const ProcGetpgidArgs = args.proc_getpgid
const ProcGetpgidResults = results.proc_getpgid
const ProcSetsidResults = results.proc_setsid
const ProcGetsidArgs = args.proc_getsid
const ProcGetsidResults = results.proc_getsid
const TtyGetpgrpArgs = args.tty_getpgrp
const TtyGetpgrpResults = results.tty_getpgrp
const TtySetpgrpArgs = args.tty_setpgrp
const ProcSigignoreArgs = args.proc_sigignore
const ProcRaiseArgs = args.proc_raise

/** A process the caller can name by `pid` (in its own namespace; a reaped one has no pid). */
const visible = (c: SyscallContext, pid: number): ThreadGroup | undefined =>
  pid > 0 ? c.tg.pidNamespace.get(pid) : undefined

/** Every process of the caller's namespace (and the namespaces below it). */
const everyVisible = (c: SyscallContext): ReadonlyArray<ThreadGroup> => c.tg.pidNamespace.processes.map(([, tg]) => tg)

/** The process group the caller names `pgid` in its session, if one exists. */
const groupInSession = (c: SyscallContext, pgid: number): ProcessGroup<ThreadGroup> | undefined => {
  const ns = c.tg.pidNamespace
  for (const tg of everyVisible(c)) {
    if (tg.group.idIn(ns) === pgid && tg.group.session === c.tg.group.session) return tg.group
  }
  return undefined
}

// ---- identity ---------------------------------------------------------------------------------

const proc_id: Handler = (c) => Effect.sync(() => ProcIdResults.pid(c, c.tg.pid))

const proc_parent: Handler = (c) =>
  Effect.suspend(() => {
    const target = visible(c, ProcParentArgs.pid(c))
    if (target === undefined) return fail(Errno.SRCH)
    ProcParentResults.parent(c, target.parent?.pidIn(c.tg.pidNamespace) ?? 0)
    return Effect.void
  })

// ---- signals ----------------------------------------------------------------------------------

const proc_signal: Handler = (c) =>
  Effect.gen(function*() {
    const pid = ProcSignalArgs.pid(c)
    const signo = signalFromWasi(ProcSignalArgs.signal(c))
    if (signo === undefined || (signo !== 0 && !isValidSignal(signo))) return yield* fail(Errno.INVAL)
    const ns = c.tg.pidNamespace
    let targets: ReadonlyArray<ThreadGroup>
    if (pid > 0) {
      const one = visible(c, pid)
      targets = one ? [one] : []
    } else if (pid === 0) {
      targets = [...c.tg.group.members]
    } else if (pid === -1) {
      // Everyone the caller may signal, except itself and its namespace's init, as kill(-1) does.
      targets = everyVisible(c).filter((tg) => tg !== c.tg && tg.pidIn(ns) !== 1 && tg.tasks === c.tg.tasks)
    } else {
      targets = everyVisible(c).filter((tg) => tg.group.idIn(ns) === -pid)
    }
    if (targets.length === 0) return yield* fail(Errno.SRCH)
    const allowed = targets.filter((tg) => tg.tasks === c.tg.tasks)
    if (allowed.length === 0) return yield* fail(Errno.PERM)
    if (signo === 0) return
    yield* Effect.forEach(allowed, (tg) => c.services.signal(tg, signo), { discard: true })
  })

// ---- waiting for children ---------------------------------------------------------------------

const putJoinStatus = (c: SyscallContext, type: number, code: number, signal: number): void => {
  const v = c.channel.dataView
  const L = Layout.joinStatus
  for (let i = 0; i < L.sizeOf; i++) v.setUint8(i, 0)
  v.setUint8(L.tag, type)
  if (type === JoinStatusType.EXIT_NORMAL) v.setUint16(L.code, code, true)
  if (type === JoinStatusType.EXIT_SIGNAL) v.setUint8(L.exitSignal, signal)
  if (type === JoinStatusType.STOPPED) v.setUint8(L.stopSignal, signal)
  setPayloadLength(c, L.sizeOf)
}

/**
 * proc_join(option_pid, flags): args are the option's tag and pid, then the flags. Answers the
 * joined child's pid (0 for none) and the join_status payload.
 */
const joined = ProcJoinResults.pid

const proc_join: Handler = (c) =>
  Effect.gen(function*() {
    const tag = ProcJoinArgs.tag(c)
    const pid = ProcJoinArgs.pid(c)
    const flags = ProcJoinArgs.flags(c)
    if (tag > 1 || (flags & ~(JoinFlags.NON_BLOCKING | JoinFlags.WAKE_STOPPED)) !== 0) return yield* fail(Errno.INVAL)
    const ns = c.tg.pidNamespace
    for (;;) {
      const candidates = tag === 1
        ? [...c.tg.children].filter((child) => child.pidIn(ns) === pid)
        : [...c.tg.children]
      if (candidates.length === 0) {
        putJoinStatus(c, JoinStatusType.NOTHING, 0, 0)
        return yield* fail(Errno.CHILD)
      }
      const zombie = candidates.find((child) => child.state === "exited")
      if (zombie !== undefined) {
        const status = yield* Deferred.await(zombie.exitStatus)
        joined(c, zombie.pidIn(ns))
        yield* c.services.reap(zombie)
        if (status._tag === "Exited") putJoinStatus(c, JoinStatusType.EXIT_NORMAL, status.code, 0)
        else putJoinStatus(c, JoinStatusType.EXIT_SIGNAL, 0, signalToWasi(status.signal))
        return
      }
      if ((flags & JoinFlags.WAKE_STOPPED) !== 0) {
        const stopped = candidates.find((child) => child.unreportedStop !== undefined && child.state === "stopped")
        if (stopped !== undefined) {
          joined(c, stopped.pidIn(ns))
          putJoinStatus(c, JoinStatusType.STOPPED, 0, signalToWasi(stopped.takeUnreportedStop()!))
          return
        }
      }
      if ((flags & JoinFlags.NON_BLOCKING) !== 0) {
        joined(c, 0)
        putJoinStatus(c, JoinStatusType.NOTHING, 0, 0)
        return
      }
      yield* blocking(c, c.tg.childEvents.next)
    }
  })

// ---- pipes and dup ----------------------------------------------------------------------------

const PIPE_COMMON = Rights.FD_FDSTAT_SET_FLAGS | Rights.FD_FILESTAT_GET | Rights.POLL_FD_READWRITE
const PIPE_READ_RIGHTS = Rights.FD_READ | PIPE_COMMON
const PIPE_WRITE_RIGHTS = Rights.FD_WRITE | PIPE_COMMON

const pipeEntries = (c: SyscallContext): Effect.Effect<{ read: FdEntry; write: FdEntry }, SyscallError> => {
  const pipe = c.services.newPipe(c.tg)
  if (pipe === undefined) return fail(Errno.NFILE)
  return Effect.succeed({
    read: { description: pipe.read, rightsBase: PIPE_READ_RIGHTS, rightsInheriting: 0n, flags: 0 },
    write: { description: pipe.write, rightsBase: PIPE_WRITE_RIGHTS, rightsInheriting: 0n, flags: 0 }
  })
}

const fd_pipe: Handler = (c) =>
  Effect.gen(function*() {
    const { read, write } = yield* pipeEntries(c)
    const fds = c.tg.fdTable
    const readFd = yield* fds.allocate(read).pipe(Effect.tapError(() => Effect.zipRight(read.description.close, write.description.close)))
    const writeFd = yield* fds.allocate(write).pipe(
      Effect.tapError(() => Effect.zipRight(fds.close(readFd).pipe(Effect.ignore), write.description.close))
    )
    FdPipeResults.readFd(c, readFd)
    FdPipeResults.writeFd(c, writeFd)
  })

const fd_dup: Handler = (c) =>
  Effect.gen(function*() {
    const entry = yield* c.tg.fdTable.get(FdDupArgs.fd(c))
    // The copy shares the description (offset, status flags) but is not a preopen.
    const { preopen: _, ...copy } = entry
    FdDupResults.copy(c, yield* c.tg.fdTable.allocate(copy))
  })

// ---- spawning ---------------------------------------------------------------------------------

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Packed NUL-terminated strings (the args_get layout) at [at, at + length) of the data area. */
const stringsAt = (c: SyscallContext, at: number, length: number): Effect.Effect<Array<string>, SyscallError> => {
  if (length === 0) return Effect.succeed([])
  const bytes = c.channel.data.subarray(at, at + length)
  if (bytes[length - 1] !== 0) return fail(Errno.INVAL)
  try {
    return Effect.succeed(utf8.decode(bytes.subarray(0, length - 1)).split("\0"))
  } catch {
    return fail(Errno.ILSEQ)
  }
}

/** A declared `bytes` argument as packed NUL-terminated strings. */
const stringsArg = (c: SyscallContext, field: BytesArg) => stringsAt(c, field.at(c), field.length(c))

const spawnFds = [ProcSpawnArgs.fd0, ProcSpawnArgs.fd1, ProcSpawnArgs.fd2] as const

/**
 * proc_spawn: path, argv and envp are packed one after another in the data area, then nfds,
 * pgid and flags; the fds entries are in three u64 arguments. Answers the child's pid and, as
 * payload, the fds entries with each RUNSC_FD_PIPE replaced by the fd of the caller's end.
 */
const proc_spawn: Handler = (c) =>
  Effect.gen(function*() {
    const pathLength = ProcSpawnArgs.path.length(c)
    const nfds = ProcSpawnArgs.nfds(c)
    const pgid = ProcSpawnArgs.pgid(c)
    const flags = ProcSpawnArgs.flags(c)
    if (nfds > 3 || pgid < -1 || (flags & ~(SpawnFlags.SEARCH_PATH | SpawnFlags.RESET_SIGNALS)) !== 0) {
      return yield* fail(Errno.INVAL)
    }
    const path = yield* pathArg(c, ProcSpawnArgs.path)
    const argv = yield* stringsArg(c, ProcSpawnArgs.argv)
    const env = yield* stringsArg(c, ProcSpawnArgs.envp)
    if (argv.length === 0 || path.length === 0) return yield* fail(pathLength === 0 ? Errno.NOENT : Errno.INVAL)
    const group = pgid === -1 ? c.tg.group : pgid === 0 ? "new" as const : groupInSession(c, pgid)
    if (group === undefined) return yield* fail(Errno.PERM)
    // Checked before anything is created, so that a bad entry leaves the caller's table as it was.
    const wanted = [0, 1, 2].map((i) => i < nfds ? Number(spawnFds[i]!(c)) : i)
    const stdio: Array<FdEntry | undefined> = []
    for (let i = 0; i < 3; i++) {
      const fd = wanted[i]!
      if (fd >= 0) {
        const entry = c.tg.fdTable.lookup(fd)
        if (entry === undefined && i < nfds) return yield* fail(Errno.BADF)
        if (entry === undefined) stdio.push(undefined)
        else {
          const { preopen: _, ...copy } = entry
          stdio.push(copy)
        }
      } else if (fd === SpawnFd.CLOSED || fd === SpawnFd.PIPE) {
        stdio.push(undefined)
      } else {
        return yield* fail(Errno.INVAL)
      }
    }
    // New pipes: the child's end goes into its stdio, the caller's end into the caller's table.
    // A failure closes every end made so far (a pipe's buffer is the sandbox's memory until both
    // of its ends are closed).
    const callerEnds: Array<number> = []
    const childEnds: Array<FdEntry> = []
    const closeNewEnds = Effect.zipRight(
      Effect.forEach(callerEnds, (fd) => Effect.ignore(c.tg.fdTable.close(fd)), { discard: true }),
      Effect.forEach(childEnds, (entry) => entry.description.close, { discard: true })
    )
    const answer = [...wanted]
    for (let i = 0; i < nfds; i++) {
      if (wanted[i] !== SpawnFd.PIPE) continue
      const { read, write } = yield* pipeEntries(c).pipe(Effect.tapError(() => closeNewEnds))
      const [childEnd, callerEnd] = i === 0 ? [read, write] : [write, read]
      childEnds.push(childEnd)
      const fd = yield* c.tg.fdTable.allocate(callerEnd).pipe(
        Effect.tapError(() => Effect.zipRight(closeNewEnds, callerEnd.description.close))
      )
      callerEnds.push(fd)
      stdio[i] = childEnd
      answer[i] = fd
    }
    const child = yield* c.services.spawn(c.tg, {
      path,
      argv,
      env,
      searchPath: (flags & SpawnFlags.SEARCH_PATH) !== 0,
      resetSignals: (flags & SpawnFlags.RESET_SIGNALS) !== 0,
      stdio,
      group
    }).pipe(
      // Had the child been created, its table would hold the child's ends of new pipes. On an
      // interrupt too (the caller killed while the child's module compiles): the ends hold
      // the pipe's memory until both are closed.
      Effect.onError(() => closeNewEnds)
    )
    ProcSpawnResults.pid(c, child.pidIn(c.tg.pidNamespace))
    for (let i = 0; i < nfds; i++) c.channel.dataView.setInt32(i * 4, answer[i]!, true)
    setPayloadLength(c, nfds * 4)
  })

// ---- process groups and sessions --------------------------------------------------------------

/** The caller (pid 0 or its own pid) or a child of the caller, for setpgid. */
const selfOrChild = (c: SyscallContext, pid: number): ThreadGroup | undefined => {
  if (pid === 0 || pid === c.tg.pid) return c.tg
  const tg = visible(c, pid)
  return tg !== undefined && tg.parent === c.tg ? tg : undefined
}

const proc_setpgid: Handler = (c) =>
  Effect.suspend(() => {
    const pid = ProcSetpgidArgs.pid(c)
    const pgid = ProcSetpgidArgs.pgid(c)
    if (pid < 0 || pgid < 0) return fail(Errno.INVAL)
    const target = selfOrChild(c, pid)
    if (target === undefined) return fail(Errno.SRCH)
    const session = target.group.session
    if (session.leader === target || session !== c.tg.group.session) return fail(Errno.PERM)
    const targetPid = target.pidIn(c.tg.pidNamespace)
    const wanted = pgid === 0 ? targetPid : pgid
    if (wanted === targetPid) {
      if (target.group.leader !== target) target.moveToGroup(c.services.newGroup(target, session))
      return Effect.void
    }
    const group = groupInSession(c, wanted)
    if (group === undefined) return fail(Errno.PERM)
    target.moveToGroup(group)
    return Effect.void
  })

/** The caller (pid 0) or a process it can name. */
const selfOr = (c: SyscallContext, pid: number): ThreadGroup | undefined => pid === 0 ? c.tg : visible(c, pid)

const proc_getpgid: Handler = (c) =>
  Effect.suspend(() => {
    const target = selfOr(c, ProcGetpgidArgs.pid(c))
    if (target === undefined) return fail(Errno.SRCH)
    ProcGetpgidResults.pgid(c, target.group.idIn(c.tg.pidNamespace))
    return Effect.void
  })

const proc_setsid: Handler = (c) =>
  Effect.suspend(() => {
    if (c.tg.group.leader === c.tg) return fail(Errno.PERM)
    c.tg.moveToGroup(c.services.newGroup(c.tg, "new"))
    ProcSetsidResults.sid(c, c.tg.pid)
    return Effect.void
  })

const proc_getsid: Handler = (c) =>
  Effect.suspend(() => {
    const target = selfOr(c, ProcGetsidArgs.pid(c))
    if (target === undefined) return fail(Errno.SRCH)
    ProcGetsidResults.sid(c, target.group.session.idIn(c.tg.pidNamespace))
    return Effect.void
  })

// ---- terminals --------------------------------------------------------------------------------

/** The caller's controlling terminal, if `fd` refers to it (ENOTTY otherwise, as on Linux). */
const controllingTerminal = (c: SyscallContext, fd: number) =>
  Effect.flatMap(c.tg.fdTable.get(fd), (entry) => {
    const terminal = entry.description.terminal
    return terminal !== undefined && terminal === c.tg.group.session.terminal ? Effect.succeed(terminal) : fail(Errno.NOTTY)
  })

const tty_getpgrp: Handler = (c) =>
  Effect.map(
    controllingTerminal(c, TtyGetpgrpArgs.fd(c)),
    (terminal) => TtyGetpgrpResults.pgid(c, terminal.foreground?.idIn(c.tg.pidNamespace) ?? 0)
  )

const tty_setpgrp: Handler = (c) =>
  Effect.gen(function*() {
    const terminal = yield* controllingTerminal(c, TtySetpgrpArgs.fd(c))
    const pgid = TtySetpgrpArgs.pgid(c)
    if (pgid < 0) return yield* fail(Errno.INVAL)
    const group = groupInSession(c, pgid)
    if (group === undefined) return yield* fail(Errno.PERM)
    terminal.foreground = group
  })

// ---- signal dispositions ----------------------------------------------------------------------

/** proc_sigignore(signal, ignore): sets a signal's disposition to ignore, or back to its default. */
const proc_sigignore: Handler = (c) =>
  Effect.suspend(() => {
    const signo = signalFromWasi(ProcSigignoreArgs.signal(c))
    if (signo === undefined || !isValidSignal(signo) || signo === SIGKILL || signo === SIGSTOP) return fail(Errno.INVAL)
    c.tg.setIgnored(signo, ProcSigignoreArgs.ignore(c) !== 0)
    return Effect.void
  })

// ---- signals to oneself ---------------------------------------------------------------------

/** proc_raise numbers signals as WASI's enum does (not as Linux does from 16 on). */
const proc_raise: Handler = (c) => {
  const signo = signalFromWasi(ProcRaiseArgs.signal(c))
  return signo !== undefined && isValidSignal(signo) ? c.raise(signo) : fail(Errno.INVAL)
}

export const processHandlers = {
  proc_raise,
  proc_id,
  proc_parent,
  proc_signal,
  proc_join,
  fd_pipe,
  fd_dup,
  proc_spawn,
  proc_setpgid,
  proc_getpgid,
  proc_setsid,
  proc_getsid,
  tty_getpgrp,
  tty_setpgrp,
  proc_sigignore
} as const satisfies Record<string, Handler>
