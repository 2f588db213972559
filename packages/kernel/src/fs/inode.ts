/**
 * The filesystem objects the sentry serves: inodes (what a path names) and open file
 * descriptions (what an fd refers to). Every filesystem implementation — the host-backed gofer
 * tree today, tmpfs/devfs/overlay later — implements these; path resolution and the syscall
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
}

export interface Inode {
  readonly filetype: FileType
  readonly stat: Effect.Effect<Stat, SyscallError>
  /** What the lookup that produced this inode saw (permission bits for exec checks), if known. */
  readonly lookupStat?: Stat
  /**
   * A key that changes whenever the file's contents may have (device, inode, size, times as
   * of the lookup), for caching what the sentry reads of it; undefined where there is none.
   */
  readonly identity?: string
  /** One path component (never "", ".", ".." or containing "/"); ENOTDIR on non-directories. */
  lookup(name: string): Effect.Effect<Inode, SyscallError>
  /** Entries other than "." and "..", in a stable order. */
  readonly readdir: Effect.Effect<ReadonlyArray<DirEntry>, SyscallError>
  readonly readlink: Effect.Effect<string, SyscallError>
  open(options: OpenOptions): Effect.Effect<FileDescription, SyscallError>
}

/** An open file: the offset lives here, so it is shared by everything that refers to it. */
export interface FileDescription {
  readonly filetype: FileType
  /**
   * Reads at `offset`, or at the current offset (and advances it) when `offset` is undefined.
   * A stream with nothing to read waits, or fails EAGAIN when `nonBlocking` (O_NONBLOCK).
   */
  read(length: number, offset?: bigint, nonBlocking?: boolean): Effect.Effect<Uint8Array, SyscallError>
  write(data: Uint8Array, offset?: bigint, nonBlocking?: boolean): Effect.Effect<number, SyscallError>
  seek(delta: bigint, whence: number): Effect.Effect<bigint, SyscallError>
  readonly stat: Effect.Effect<Stat, SyscallError>
  readonly close: Effect.Effect<void>
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
   * A host fd this description writes straight to with no other state (host stdio): the guest
   * worker may then write to it without a round trip, with identical results.
   */
  readonly passthroughHostFd?: number
}
