/**
 * The filesystem objects the sentry serves: inodes (what a path names) and open file
 * descriptions (what an fd refers to). Every filesystem (the host-backed gofer tree, the overlay
 * over it, tmpfs, devfs, procfs) implements these; path resolution and the syscall
 * table only ever see these interfaces, never host paths.
 */
import { type FileType } from "@runsc/abi"
import type { Effect } from "effect"
import type { SyscallError } from "../errors.js"
import type { ControllingTerminal } from "../task/session.js"

export interface Stat {
  readonly dev: bigint
  readonly ino: bigint
  readonly filetype: FileType
  readonly nlink: bigint
  readonly size: bigint
  readonly atim: bigint
  readonly mtim: bigint
  readonly ctim: bigint
  /** Permission bits (0o7777). */
  readonly mode: number
}

export interface DirEntry {
  readonly name: string
  readonly ino: bigint
  readonly filetype: FileType
}

export interface OpenOptions {
  readonly read: boolean
  readonly write: boolean
  /**
   * The sentry's own use, closed before the operation that opened it ends (a program's bytes,
   * /etc/passwd, a copy-up's source): not counted among the host descriptors held for guests.
   */
  readonly transient?: boolean
}

/**
 * What a directory of a writable filesystem can change. A directory without it (the read-only
 * gofer tree, procfs, devfs) refuses every change with EROFS.
 */
export interface DirectoryChanges {
  /** The filesystem the directory belongs to: a rename or link between two is EXDEV. */
  readonly filesystem: object
  /** A new empty regular file (EEXIST if the name is taken); `mode` defaults to 0o644. */
  create(name: string, mode?: number): Effect.Effect<Inode, SyscallError>
  /**
   * `create`, and the new file opened with `options`, in one step where the filesystem has one
   * (the gofer's O_CREAT|O_EXCL open); else the caller creates, then opens.
   */
  readonly createOpen?: ((name: string, options: OpenOptions) => Effect.Effect<{ readonly inode: Inode; readonly description: FileDescription }, SyscallError>) | undefined
  /** A new empty directory; `mode` defaults to 0o755. */
  mkdir(name: string, mode?: number): Effect.Effect<void, SyscallError>
  /** A symlink whose target is stored verbatim. */
  symlink(name: string, target: string): Effect.Effect<void, SyscallError>
  /** Another name for `target` (EXDEV from another filesystem, EPERM for a directory). */
  link(name: string, target: Inode): Effect.Effect<void, SyscallError>
  /** Removes a non-directory (EISDIR for a directory). */
  unlink(name: string): Effect.Effect<void, SyscallError>
  /** Removes an empty directory (ENOTDIR, ENOTEMPTY). */
  rmdir(name: string): Effect.Effect<void, SyscallError>
  /** Moves `name` to `to`'s `toName`, replacing what is there as rename(2) allows. */
  rename(name: string, to: DirectoryChanges, toName: string): Effect.Effect<void, SyscallError>
  /**
   * A Unix socket's file (EEXIST if the name is taken), which `socket` is bound to: what a
   * connect to its path reaches (`Inode.boundSocket`). Only the in-memory filesystems have
   * it; a socket file on a host tree would be one no host process could reach.
   */
  readonly bindSocket?: ((name: string, kind: FileType, socket: object, mode?: number) => Effect.Effect<void, SyscallError>) | undefined
}

export interface Inode {
  readonly filetype: FileType
  readonly stat: Effect.Effect<Stat, SyscallError>
  /** `stat`, settled where it can be (as FileDescription's). */
  readonly statNow?: (() => Effect.Effect<Stat, SyscallError>) | undefined
  /** What the lookup that produced this inode saw (permission bits for exec checks), if known. */
  readonly lookupStat?: Stat | undefined
  /**
   * A key that changes whenever the file's contents may have (device, inode, size, times as
   * of the lookup), for caching what the sentry reads of it; undefined where there is none.
   */
  readonly identity?: string | undefined
  /** One path component (never "", ".", ".." or containing "/"); ENOTDIR on non-directories. */
  lookup(name: string): Effect.Effect<Inode, SyscallError>
  /** Entries other than "." and "..", in a stable order. */
  readonly readdir: Effect.Effect<ReadonlyArray<DirEntry>, SyscallError>
  readonly readlink: Effect.Effect<string, SyscallError>
  open(options: OpenOptions): Effect.Effect<FileDescription, SyscallError>
  /** On a directory of a writable filesystem: what it can change. */
  readonly changes?: DirectoryChanges
  /** On a writable regular file: sets its size (O_TRUNC, truncate). */
  truncate?(size: bigint): Effect.Effect<void, SyscallError>
  /** On a writable filesystem: sets the access and/or modification time (undefined: unchanged). */
  setTimes?(atim: bigint | undefined, mtim: bigint | undefined): Effect.Effect<void, SyscallError>
  /** On a socket file a Unix socket's bind made: that socket (opaque here; the network knows it). */
  readonly boundSocket?: object | undefined
}

/**
 * An open file: the offset lives here, so it is shared by everything that refers to it.
 *
 * Sync-first (see settled.ts): a method that does not wait may act when called and answer
 * settled (`Effect.succeed`, `fail`), which the syscall server reads without a fiber step;
 * `statNow` and `closeNow`, where present, are `stat` and `close` done that way (and `stat`
 * and `close` are then those, suspended).
 */
export interface FileDescription {
  readonly filetype: FileType
  /**
   * Reads at `offset`, or at the current offset (and advances it) when `offset` is undefined.
   * A stream with nothing to read waits, or fails EAGAIN when `nonBlocking` (O_NONBLOCK).
   */
  read(length: number, offset?: bigint, nonBlocking?: boolean): Effect.Effect<Uint8Array, SyscallError>
  /** On regular files: `read` into `target` (never waits); the byte count. */
  readInto?(target: Uint8Array, offset?: bigint): Effect.Effect<number, SyscallError>
  write(data: Uint8Array, offset?: bigint, nonBlocking?: boolean): Effect.Effect<number, SyscallError>
  /**
   * On a host file: writes `data` at the end of the file in one O_APPEND write, atomic against
   * the host's other writers, and moves the offset there. Elsewhere an append is a seek to the
   * end and a write, which the sentry makes in one step.
   */
  readonly append?: ((data: Uint8Array) => Effect.Effect<number, SyscallError>) | undefined
  seek(delta: bigint, whence: number): Effect.Effect<bigint, SyscallError>
  readonly stat: Effect.Effect<Stat, SyscallError>
  readonly statNow?: (() => Effect.Effect<Stat, SyscallError>) | undefined
  readonly close: Effect.Effect<void>
  readonly closeNow?: (() => Effect.Effect<void>) | undefined
  /**
   * For descriptions that can make a reader or writer wait (pipes): whether a read or a write
   * would not wait now (data, room, or the other end gone), and an effect that resolves at the
   * next change. poll_oneoff waits on it; descriptions without it are always ready.
   */
  readonly readiness?: {
    readonly ready: (event: "read" | "write") => boolean
    readonly changed: Effect.Effect<void>
  }
  /** Set on the descriptions of a terminal: what job control (tcsetpgrp, ^C) acts on. */
  readonly terminal?: ControllingTerminal<any>
  /**
   * A terminal: a host tty, or the terminal the sandbox gives a process. isatty() is true of it
   * and nothing else (wasi-libc asks for a character device without FD_SEEK and FD_TELL), and
   * it cannot seek, as on Linux.
   */
  readonly isTerminal?: boolean
  /**
   * A host fd this description writes straight to with no other state (host stdio): the guest
   * worker may then write to it without a round trip, with identical results.
   */
  readonly passthroughHostFd?: number
  /** On a writable file: fd_filestat_set_size, fd_allocate (extends, never clobbers), fd_filestat_set_times. */
  readonly setSize?: ((size: bigint) => Effect.Effect<void, SyscallError>) | undefined
  readonly allocate?: ((offset: bigint, length: bigint) => Effect.Effect<void, SyscallError>) | undefined
  readonly setTimes?: ((atim: bigint | undefined, mtim: bigint | undefined) => Effect.Effect<void, SyscallError>) | undefined
  /**
   * A host file or stream the guest's worker may serve itself while one fd alone refers to this
   * description (platform/lendFastPaths.ts): its offset moves to `position[index]` (shared
   * memory the worker updates) until `unshare` brings it back. A stream is lent for reads at
   * the host fd's own offset; a regular `file` for reads where it is `readable`, seeks, writes
   * where it is `writable` (a description open for writing on a writable tree), and fstat where
   * the host's stat is the description's own (`hostStat`; the overlay shows its own numbers). The
   * description must keep no state of the file but its offset, so that what the worker does on
   * the host fd is exactly what the sentry would have done.
   */
  readonly lendable?: {
    readonly hostFd: number
    readonly file?: { readonly readable: boolean; readonly writable: boolean; readonly hostStat: boolean }
    share(position: BigInt64Array, index: number): void
    unshare(): void
  } | undefined
  /** On a file backed by a writable host file: fsync, or fdatasync when `dataOnly`. */
  readonly sync?: ((dataOnly: boolean) => Effect.Effect<void, SyscallError>) | undefined
}

/** An inode's or description's stat, settled where it can be (`statNow`). */
export const statOf = (of: Inode | FileDescription): Effect.Effect<Stat, SyscallError> => of.statNow?.() ?? of.stat
