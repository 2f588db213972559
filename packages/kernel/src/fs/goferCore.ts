/**
 * The gofer's native core (native/gofer.c, built at install as dist/gofer.node): host file
 * operations made relative to a tree's directory descriptor, one component at a time, never
 * following a host symlink; and the few calls on descriptors the sandbox already holds that Node
 * lacks (an O_APPEND write, a non-blocking description of its own stdio, sends and receives on a
 * socket that do not wait, poll, its descriptor limit); and donations, which carry tree
 * descriptors from a container's creator to its sandbox (donation.ts).
 * This module loads it once and gives its calls TypeScript types; what the calls guarantee is
 * said in the C file's header.
 *
 * There is no fallback: without the addon no host tree can be mounted (GoferUnavailable), since
 * resolving host paths by name is exactly what lets a guest that renames directories through
 * one mount reach files outside another.
 */
import { type Errno, errnoFromHostCode, FileType } from "@runsc/abi"
import { Effect } from "effect"
import { createRequire } from "node:module"
import * as Os from "node:os"
import { GoferUnavailable, syscallError, type SyscallError } from "../errors.js"
import type { Stat } from "./inode.js"

/** A result of the core: a value, or a negative Linux errno. */
type Result<A> = A | number

interface Addon {
  openRoot(path: string): number
  close(fd: number): number
  stat(root: number, dir: string, dev: bigint, ino: bigint, name: string, out: BigInt64Array): number
  fstat(fd: number, out: BigInt64Array): number
  open(root: number, dir: string, dev: bigint, ino: bigint, name: string, flags: number, mode: number, out: BigInt64Array): number
  reopen(fd: number, flags: number, out: BigInt64Array): number
  readdir(root: number, dir: string, dev: bigint, ino: bigint): Result<[Array<string>, Array<bigint>, Array<number>]>
  readlink(root: number, dir: string, dev: bigint, ino: bigint, name: string): Result<string>
  mkdir(root: number, dir: string, dev: bigint, ino: bigint, name: string, mode: number): number
  /** A socket file (S_IFSOCK, never a device); its stat in `out`. */
  mksock(root: number, dir: string, dev: bigint, ino: bigint, name: string, mode: number, out: BigInt64Array): number
  unlink(root: number, dir: string, dev: bigint, ino: bigint, name: string, isDir: boolean): number
  symlink(target: string, root: number, dir: string, dev: bigint, ino: bigint, name: string): number
  rename(root: number, dir: string, dev: bigint, ino: bigint, name: string, root2: number, dir2: string, dev2: bigint, ino2: bigint, name2: string): number
  link(root: number, dir: string, dev: bigint, ino: bigint, name: string, fileIno: bigint, root2: number, dir2: string, dev2: bigint, ino2: bigint, name2: string): number
  utimens(root: number, dir: string, dev: bigint, ino: bigint, name: string, atime: bigint, mtime: bigint): number
  futimens(fd: number, atime: bigint, mtime: bigint): number
  fsync(fd: number, dataOnly: boolean): number
  /** pread into bytes[at, at + length) (checked against `bytes`: -EFAULT); the bytes read. Used by guest workers (lentFiles.ts). */
  pread(fd: number, bytes: Uint8Array, at: number, length: number, position: number): number
  /** pwrite of bytes[at, at + length) (checked against `bytes`: -EFAULT); the bytes written. */
  pwrite(fd: number, bytes: Uint8Array, at: number, length: number, position: number): number
  /** One write at the end of the file; the descriptor's offset after it in `out[0]`. */
  appendWrite(fd: number, bytes: Uint8Array, out: BigInt64Array): number
  /** A non-blocking description of the sandbox's own of the pipe or terminal `fd`, and its access mode (O_RDONLY, O_WRONLY, O_RDWR). */
  reopenStream(fd: number): Result<[number, number]>
  /** A send on the socket `fd` that does not wait (-EAGAIN) and raises no SIGPIPE (-EPIPE). */
  sendNow(fd: number, bytes: Uint8Array): number
  /** A receive on the socket `fd` that does not wait (-EAGAIN). */
  receiveNow(fd: number, bytes: Uint8Array): number
  /** 1 when a read of `fd` would not wait (data, end of file or an error), else 0. */
  readable(fd: number): number
  /** Raises the process's RLIMIT_NOFILE soft limit to its hard limit; returns the soft limit then. */
  raiseFdLimit(): number
  /** Whether directories are resolved with openat2 (the default where the kernel has it) or by the walk; returns the previous setting. */
  useOpenat2(enabled: boolean): boolean
  /** CPU time (user + system, ns) of the thread `tid` of this process, from its thread CPU clock. */
  threadCpuTime(tid: number): Result<bigint>
  /** A non-blocking listening Unix socket at `path` (0600) for donations. */
  listenDonations(path: string): number
  /** One donation queued on the listening socket: its payload and descriptors; -EAGAIN when none is. */
  takeDonation(listenFd: number): Result<[string, Array<number>]>
  /** Sends `fds` (1 to 253) with `payload` to the donation socket at `path`, never waiting. */
  donate(path: string, payload: string, fds: ReadonlyArray<number>): number
}

let loaded: Addon | GoferUnavailable | undefined

/** The core, or why it cannot be had; loaded at first use. */
export const loadGoferCore = (): Addon | GoferUnavailable => {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)("@runsc/kernel/gofer") as Addon
    } catch (e) {
      loaded = new GoferUnavailable({ reason: (e as Error).message.split("\n")[0]! })
    }
  }
  return loaded
}

export const goferCore: Effect.Effect<Addon, GoferUnavailable> = Effect.suspend(() => {
  const core = loadGoferCore()
  return core instanceof GoferUnavailable ? Effect.fail(core) : Effect.succeed(core)
})

/** Linux errno numbers (as the core returns them, negated) to WASI's. */
const wasiErrno: ReadonlyMap<number, Errno> = new Map(
  Object.entries(Os.constants.errno).map(([name, linux]) => [linux, errnoFromHostCode(name)])
)

/** The SyscallError of the core's result `-linuxErrno`. */
export const coreError = (result: number): SyscallError => syscallError(wasiErrno.get(-result) ?? errnoFromHostCode(undefined))

/** Whether `result` is the core's failure (a negative errno) rather than a value. */
export const failed = (result: unknown): result is number => typeof result === "number" && result < 0

/** One stat buffer: every core call runs to completion on the sentry's thread before the next. */
export const statBuffer = new BigInt64Array(8)

const S_IFMT = 0o170000
export const fileTypeOfMode = (mode: number): FileType => {
  switch (mode & S_IFMT) {
    case 0o040000:
      return FileType.DIRECTORY
    case 0o100000:
      return FileType.REGULAR_FILE
    case 0o120000:
      return FileType.SYMBOLIC_LINK
    case 0o020000:
      return FileType.CHARACTER_DEVICE
    case 0o060000:
      return FileType.BLOCK_DEVICE
    case 0o140000:
      return FileType.SOCKET_STREAM
    default:
      return FileType.UNKNOWN
  }
}

/** The Stat in `statBuffer`, as the last core call that filled it left it. */
export const readStat = (): Stat => {
  const mode = Number(statBuffer[2]!)
  return {
    dev: BigInt.asUintN(64, statBuffer[0]!),
    ino: BigInt.asUintN(64, statBuffer[1]!),
    filetype: fileTypeOfMode(mode),
    nlink: statBuffer[3]!,
    size: statBuffer[4]!,
    atim: statBuffer[5]!,
    mtim: statBuffer[6]!,
    ctim: statBuffer[7]!,
    mode: mode & 0o7777
  }
}
