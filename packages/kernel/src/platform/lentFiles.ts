/**
 * The worker's side of lent host files (the sentry's is lendFastPaths.ts): positional reads and
 * writes, writes at the file's offset, seeks and fstat of a guest fd whose host file the sentry
 * has lent this worker, made here on the host fd with no round trip. The file's offset is the
 * channel's (`fastReadPosition[fd]`) while the loan lasts; the sentry reads it back when it takes
 * the file back.
 *
 * Each call is served here only when the fd's entry carries every `Lent` bit the sentry's
 * handler would check as a right, and no stop is pending (ATTENTION); otherwise it answers
 * undefined and the worker sends the call to the sentry as usual. So a call answers exactly what the
 * sentry would have answered. Every guest pointer is checked (EFAULT) before any host call.
 *
 * No host call here can wait on another party: a lent file is a regular file.
 */
import { Errno, errnoFromHostCode, FileType, Layout, Whence } from "@runsc/abi"
import * as Fs from "node:fs"
import { FAST_WRITE_FDS, Lent, LENT_HOST_FD, Word } from "./channel.js"
import type { GuestSide } from "./syscallAbi.js"
import { workerCore } from "./workerCore.js"

/** What eachIovec returns for a list this path does not take. */
const VIA_SENTRY = -0x10000

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)
const MAX_OFFSET = (1n << 63n) - 1n

const hostErrno = (e: unknown): number => errnoFromHostCode((e as NodeJS.ErrnoException).code)

/** Where `fstat` leaves a stat: dev, ino, mode, nlink, size, atim, mtim, ctim (ns). */
const stat = new BigInt64Array(8)
const SIZE = 4

/**
 * The host calls on a lent file: fstat into `stat` (0 or the errno), pread and pwrite of
 * bytes[at, at + length) at a file offset below 2^53 (the bytes moved, or -errno).
 */
interface HostCalls {
  fstat(hostFd: number): number
  pread(hostFd: number, bytes: Uint8Array, at: number, length: number, position: number): number
  pwrite(hostFd: number, bytes: Uint8Array, at: number, length: number, position: number): number
}

/**
 * Through the gofer's native core where it loads in this thread: ~0.9 µs an fstat against ~2.1
 * µs for Node's fstatSync with bigints, and ~1 µs less per pread or pwrite than Node's
 * readSync/writeSync, which a database engine pays on every page. Else Node's calls, which
 * answer the same. Loaded at the first call on a lent file: a worker whose guest never makes
 * one (most idle processes) does not carry it.
 */
const loadHostCalls = (): HostCalls => {
  const core = workerCore()
  if (core === undefined) return nodeCalls
  // A failure (rare) is made again through Node's call, whose error names the errno: a failed
  // call changed nothing, and this thread then needs no table of Linux's errno numbers.
  return {
    fstat: (hostFd) => (core.fstat(hostFd, stat) < 0 ? nodeCalls.fstat(hostFd) : 0),
    pread: (hostFd, bytes, at, length, position) => {
      const n = core.pread(hostFd, bytes, at, length, position)
      return n < 0 ? nodeCalls.pread(hostFd, bytes, at, length, position) : n
    },
    pwrite: (hostFd, bytes, at, length, position) => {
      const n = core.pwrite(hostFd, bytes, at, length, position)
      return n < 0 ? nodeCalls.pwrite(hostFd, bytes, at, length, position) : n
    }
  }
}

/** Node's calls, where the native core does not load. */
const nodeCalls: HostCalls = {
  fstat: (hostFd) => {
    let st: Fs.BigIntStats
    try {
      st = Fs.fstatSync(hostFd, { bigint: true })
    } catch (e) {
      return hostErrno(e)
    }
    stat[0] = st.dev
    stat[1] = st.ino
    stat[2] = st.mode
    stat[3] = st.nlink
    stat[SIZE] = st.size
    stat[5] = st.atimeNs
    stat[6] = st.mtimeNs
    stat[7] = st.ctimeNs
    return 0
  },
  pread: (hostFd, bytes, at, length, position) => {
    try {
      return Fs.readSync(hostFd, bytes, at, length, position)
    } catch (e) {
      return -hostErrno(e)
    }
  },
  pwrite: (hostFd, bytes, at, length, position) => {
    try {
      return Fs.writeSync(hostFd, bytes, at, length, position)
    } catch (e) {
      return -hostErrno(e)
    }
  }
}

let hostCalls: HostCalls | undefined
const host = (): HostCalls => (hostCalls ??= loadHostCalls())

/** Each call's errno when it was served here, undefined when the sentry must serve it. */
export interface LentFiles {
  fd_pread(fd: number, iovs: number, iovsLen: number, offset: bigint, nreadPtr: number): number | undefined
  fd_pwrite(fd: number, iovs: number, iovsLen: number, offset: bigint, nwrittenPtr: number): number | undefined
  /** fd_write at the file's offset. */
  fd_write(fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number | undefined
  fd_seek(fd: number, delta: bigint, whence: number, newOffsetPtr: number): number | undefined
  fd_tell(fd: number, offsetPtr: number): number | undefined
  fd_filestat_get(fd: number, statPtr: number): number | undefined
}

/** The lent-file calls of the worker whose guest is `side`; `enabled` is false under strace. */
export const lentFiles = (side: GuestSide, enabled: () => boolean): LentFiles => {
  const { fastRead, fastReadPosition, words } = side.channel

  /** The host fd of `fd` when its loan carries every bit of `need` and no stop is pending; else -1. */
  const hostFdOf = (fd: number, need: number): number => {
    if (!enabled() || fd >>> 0 >= FAST_WRITE_FDS) return -1
    const entry = fastRead[fd]!
    if ((entry & need) !== need || (entry & LENT_HOST_FD) === 0 || Atomics.load(words, Word.ATTENTION) !== 0) return -1
    side.refresh()
    return (entry & LENT_HOST_FD) - 1
  }

  const inBounds = (ptr: number, len: number): boolean => (ptr >>> 0) + len <= side.memory().length

  /**
   * Each iovec (ptr, len) of the guest's list, checked, to `f` until it transfers less than
   * asked; the bytes transferred, -errno (EFAULT first, or the host's when nothing went), or
   * VIA_SENTRY for a list this path does not take.
   */
  const eachIovec = (iovs: number, iovsLen: number, f: (ptr: number, len: number, done: number) => number): number => {
    iovs >>>= 0
    iovsLen >>>= 0
    if (iovsLen > 1024) return VIA_SENTRY
    if (!inBounds(iovs, iovsLen * Layout.iovec.sizeOf)) return -Errno.FAULT
    const view = side.view()
    for (let i = 0; i < iovsLen; i++) {
      const base = iovs + i * Layout.iovec.sizeOf
      if (!inBounds(view.getUint32(base + Layout.iovec.buf, true), view.getUint32(base + Layout.iovec.bufLen, true))) return -Errno.FAULT
    }
    let done = 0
    for (let i = 0; i < iovsLen; i++) {
      const base = iovs + i * Layout.iovec.sizeOf
      const len = view.getUint32(base + Layout.iovec.bufLen, true)
      if (len === 0) continue
      const n = f(view.getUint32(base + Layout.iovec.buf, true), len, done)
      if (n < 0) {
        if (done > 0) break
        return n
      }
      done += n
      if (n < len) break
    }
    return done
  }

  // Offsets are numbers here: one past 2^53 (past any host file's end) goes to the sentry.
  const read = (hostFd: number, position: bigint) => (ptr: number, len: number, done: number) =>
    host().pread(hostFd, side.memory(), ptr, len, Number(position) + done)
  const write = (hostFd: number, position: bigint) => (ptr: number, len: number, done: number) =>
    host().pwrite(hostFd, side.memory(), ptr, len, Number(position) + done)

  /** Puts a transfer's count at `ptr`: the errno of the call. */
  const answer = (count: number, ptr: number): number => {
    if (count < 0) return -count
    side.view().setUint32(ptr >>> 0, count, true)
    return Errno.SUCCESS
  }

  const putU64 = (ptr: number, value: bigint): number => {
    side.view().setBigUint64(ptr >>> 0, value, true)
    return Errno.SUCCESS
  }

  /** fd_pread or fd_pwrite: `transfer` at `offset`, the fd's own offset left where it is. */
  const positional = (need: number, transfer: typeof read) =>
    (fd: number, iovs: number, iovsLen: number, offset: bigint, donePtr: number): number | undefined => {
      const hostFd = hostFdOf(fd, need)
      if (hostFd < 0) return undefined
      if (!inBounds(donePtr, 4)) return Errno.FAULT
      if (offset < 0n) return Errno.INVAL
      if (offset > MAX_SAFE) return undefined
      const n = eachIovec(iovs, iovsLen, transfer(hostFd, offset))
      return n === VIA_SENTRY ? undefined : answer(n, donePtr)
    }

  return {
    fd_pread: positional(Lent.READ | Lent.SEEK, read),
    fd_pwrite: positional(Lent.WRITE | Lent.SEEK, write),
    fd_write: (fd, iovs, iovsLen, nwrittenPtr) => {
      const hostFd = hostFdOf(fd, Lent.WRITE)
      if (hostFd < 0) return undefined
      if (!inBounds(nwrittenPtr, 4)) return Errno.FAULT
      const position = fastReadPosition[fd]!
      if (position > MAX_SAFE) return undefined
      const n = eachIovec(iovs, iovsLen, write(hostFd, position))
      if (n > 0) fastReadPosition[fd] = position + BigInt(n)
      return n === VIA_SENTRY ? undefined : answer(n, nwrittenPtr)
    },
    fd_seek: (fd, delta, whence, newOffsetPtr) => {
      // lseek(fd, 0, SEEK_CUR) is how C spells fd_tell; it needs only that right.
      const hostFd = hostFdOf(fd, delta === 0n && whence === Whence.CUR ? Lent.TELL : Lent.SEEK)
      if (hostFd < 0) return undefined
      if (!inBounds(newOffsetPtr, 8)) return Errno.FAULT
      if (whence !== Whence.SET && whence !== Whence.CUR && whence !== Whence.END) return Errno.INVAL
      let base = 0n
      if (whence === Whence.CUR) base = fastReadPosition[fd]!
      else if (whence === Whence.END) {
        const failed = host().fstat(hostFd)
        if (failed !== 0) return failed
        base = stat[SIZE]!
      }
      const next = base + BigInt.asIntN(64, delta)
      // Past the largest offset (2^63 - 1) is EINVAL, as Linux's lseek answers (the channel's slot would wrap).
      if (next < 0n || next > MAX_OFFSET) return Errno.INVAL
      fastReadPosition[fd] = next
      return putU64(newOffsetPtr, next)
    },
    fd_tell: (fd, offsetPtr) => {
      const hostFd = hostFdOf(fd, Lent.TELL)
      if (hostFd < 0) return undefined
      if (!inBounds(offsetPtr, 8)) return Errno.FAULT
      return putU64(offsetPtr, fastReadPosition[fd]!)
    },
    fd_filestat_get: (fd, statPtr) => {
      const hostFd = hostFdOf(fd, Lent.STAT)
      if (hostFd < 0) return undefined
      if (!inBounds(statPtr, Layout.filestat.sizeOf)) return Errno.FAULT
      const failed = host().fstat(hostFd)
      if (failed !== 0) return failed
      const view = side.view()
      const L = Layout.filestat
      const p = statPtr >>> 0
      for (let i = 0; i < L.sizeOf; i++) view.setUint8(p + i, 0)
      view.setBigInt64(p + L.dev, stat[0]!, true)
      view.setBigInt64(p + L.ino, stat[1]!, true)
      view.setUint8(p + L.filetype, FileType.REGULAR_FILE)
      view.setBigInt64(p + L.nlink, stat[3]!, true)
      view.setBigInt64(p + L.size, stat[SIZE]!, true)
      view.setBigInt64(p + L.atim, stat[5]!, true)
      view.setBigInt64(p + L.mtim, stat[6]!, true)
      view.setBigInt64(p + L.ctim, stat[7]!, true)
      return Errno.SUCCESS
    }
  }
}
