/**
 * What a syscall handler sees: the calling thread group and its channel. Arguments are read
 * from the channel and results written back to it through the call's declaration
 * (platform/syscallAbi.ts: `args`, `results`); handlers never touch guest memory (the worker
 * copies payloads in and out).
 */
import { Errno } from "@runsc/abi"
import { type Deferred, Effect } from "effect"
import { fail, type SyscallError } from "../errors.js"
import { type ChannelViews, DATA_SIZE, Word } from "../platform/channel.js"
import type { BytesArg } from "../platform/syscallAbi.js"
import type { Pipe } from "../fs/pipe.js"
import type { MemoryAccount } from "../memoryAccount.js"
import type { SocketAddress, SocketDescription, SocketFamily, SocketKind } from "../net/socket.js"
import type { ProcessGroup, Session } from "../task/session.js"
import type { Membership, ThreadGroup } from "../task/threadGroup.js"
import type { FdEntry } from "../fs/fdTable.js"

export interface SyscallContext {
  readonly tg: ThreadGroup
  readonly channel: ChannelViews
  /** Delivers a signal to the calling thread group (proc_raise). */
  readonly raise: (signo: number) => Effect.Effect<void>
  /** While the whole sandbox is paused: completed when it resumes. */
  readonly paused: () => Deferred.Deferred<void> | undefined
  readonly services: KernelServices
}

/** What proc_spawn asks the kernel for, once its arguments are decoded and checked. */
export interface SpawnRequest {
  readonly path: string
  readonly argv: ReadonlyArray<string>
  readonly env: ReadonlyArray<string>
  readonly searchPath: boolean
  /** The child's fds 0, 1 and 2 (undefined: closed). */
  readonly stdio: ReadonlyArray<FdEntry | undefined>
  /** The child's process group: the caller's, a new one it leads, or an existing one. */
  readonly group: ProcessGroup<ThreadGroup> | "new"
  /** The child starts with default signal actions (else it inherits the caller's ignores). */
  readonly resetSignals: boolean
}

/** What the process calls need from the kernel beyond the calling task. */
export interface KernelServices {
  /** Creates and starts a child of `parent` (proc_spawn). */
  readonly spawn: (parent: ThreadGroup, request: SpawnRequest) => Effect.Effect<ThreadGroup, SyscallError>
  /** Delivers a signal with its default action. */
  readonly signal: (tg: ThreadGroup, signo: number) => Effect.Effect<void>
  /** Releases an exited process (proc_join). */
  readonly reap: (tg: ThreadGroup) => Effect.Effect<void>
  /**
   * A pipe for a guest, whose buffer the memory of `maker`'s container holds (within the
   * sandbox's) until both ends are closed; undefined when it cannot (ENFILE, as when Linux's
   * limit on pipe memory is reached).
   */
  readonly newPipe: (maker: ThreadGroup) => Pipe | undefined
  /** The memory account `tg`'s container charges: its own, else the sandbox's. */
  readonly memoryOf: (tg: ThreadGroup) => MemoryAccount
  /** A new socket of the sandbox's network, charged to `maker`'s container. */
  readonly openSocket: (maker: ThreadGroup, family: SocketFamily, kind: SocketKind) => Effect.Effect<SocketDescription, SyscallError>
  /** socketpair(2): two connected sockets, charged as `openSocket`'s. */
  readonly pairSockets: (maker: ThreadGroup, family: SocketFamily, kind: SocketKind) => Effect.Effect<readonly [SocketDescription, SocketDescription], SyscallError>
  /** A host name's addresses from the sandbox's network (resolve, after the container's /etc/hosts); ENOENT when it gives none. */
  readonly lookupHost: (name: string) => Effect.Effect<ReadonlyArray<SocketAddress>, SyscallError>
  /** A new process group led by `leader`, in `session` or in a new session it leads. */
  readonly newGroup: (leader: ThreadGroup, session: Session<ThreadGroup> | "new") => ProcessGroup<ThreadGroup>
  /**
   * Charges the sandbox's memory for `tg`'s guest memory to grow from `current` pages by `pages`;
   * false (nothing charged) past the guest's maximum or the sandbox's memory (memory_grow).
   */
  readonly growMemory: (tg: ThreadGroup, current: number, pages: number) => boolean
  /** A container whose limit kills could not grow its guest memory: its OOM killer's turn. */
  readonly oomKill: (set: Membership) => Effect.Effect<void>
}

export type Handler = (c: SyscallContext) => Effect.Effect<void, SyscallError>


/** Runs a wait the guest asked for (a sleep, a read of a stream): the task is blocked, not stuck. */
export const blocking = <A, E>(c: SyscallContext, wait: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    c.tg.inKernel.block()
    return Effect.ensuring(wait, Effect.sync(() => c.tg.inKernel.unblock()))
  })

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** The request path stored in the data area at [at, at + length). EILSEQ if not UTF-8. */
export const pathAt = (c: SyscallContext, at: number, length: number): Effect.Effect<string, SyscallError> => {
  if (at + length > DATA_SIZE) return fail(Errno.NAMETOOLONG)
  try {
    return Effect.succeed(utf8.decode(c.channel.data.subarray(at, at + length)))
  } catch {
    return fail(Errno.ILSEQ)
  }
}

/** A declared `bytes` argument as a path. EILSEQ if not UTF-8. */
export const pathArg = (c: SyscallContext, path: BytesArg): Effect.Effect<string, SyscallError> => pathAt(c, path.at(c), path.length(c))

/** Places a response payload at the start of the data area. */
export const setPayload = (c: SyscallContext, bytes: Uint8Array): void => {
  c.channel.data.set(bytes)
  c.channel.words[Word.RESULT_LENGTH] = bytes.length
}

/** Declares that the handler wrote `length` payload bytes in place (through `channel.dataView`). */
export const setPayloadLength = (c: SyscallContext, length: number): void => {
  c.channel.words[Word.RESULT_LENGTH] = length
}
