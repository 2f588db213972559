/**
 * The guest side of a task: runs in a worker thread, one wasm instance at a time.
 *
 * This file is trusted sentry code. The guest reaches the world only through the
 * `wasi_snapshot_preview1` imports built here: every pointer is bounds-checked before use
 * (EFAULT), then the call is either served in place (the vDSO idea: clocks, randomness,
 * argv/environ, yield, and writes to fds the sentry has published as plain host fds) or
 * marshalled onto the task's syscall channel for the sentry.
 *
 * After a guest ends, the worker reports how and waits for the next `Run`, so the sentry can
 * reuse it for another process. It never keeps guest state across runs.
 */
import { AddressFamily, AddrPort, Errno, errnoFromHostCode, Layout } from "@runsc/abi"
import { randomFillSync } from "node:crypto"
import * as Fs from "node:fs"
import { parentPort, workerData } from "node:worker_threads"
import {
  AdaptiveSpin,
  ChannelViews,
  DATA_SIZE,
  FAST_WRITE_FDS,
  FAST_NONBLOCK,
  Lent,
  LENT_HOST_FD,
  type FromWorker,
  KILLED,
  type GuestEnd,
  publish,
  READ_AT_HOST_OFFSET,
  State,
  type ToWorker,
  type TrapKind,
  Word
} from "./channel.js"
import { guestHooks, installHooks } from "./guestHooks.js"
import { lentFiles } from "./lentFiles.js"
import { workerCore } from "./workerCore.js"
import {
  argPlace,
  compileGuestStub,
  type GuestSide,
  guestImports,
  plan,
  RECV_FROM_ADDRESS_AT,
  resultPlace,
  type SyscallPlan
} from "./syscallAbi.js"

const port = parentPort!
const channel = new ChannelViews(workerData.buffer as SharedArrayBuffer)
/** This thread's Linux tid, from /proc/thread-self ("<pid>/task/<tid>"); 0 where there is none. */
const threadId = (): number => {
  try {
    return Number(Fs.readlinkSync("/proc/thread-self").split("/").pop()) || 0
  } catch {
    // A confined sandbox may not read /proc: the gofer's core asks the kernel.
    return workerCore()?.threadId() ?? 0
  }
}

const tid = threadId()
const { data, fastRead, fastReadPosition, fastWrite, i64, words } = channel

/** Thrown by proc_exit to unwind the guest stack; never escapes this module. */
class ProcExit {
  constructor(readonly code: number) {}
}

/** Thrown when the sentry answers a syscall with KILLED: the guest is unwound, not resumed. */
class Killed {}

// ---- the syscall round trip ------------------------------------------------------------------

/**
 * One spin budget per syscall: how long a call takes is a property of the call (fd_fdstat_get
 * answers in a µs, a path_open on the host in tens, a sleeping poll_oneoff in ms), so a call
 * that blocks does not shrink the budget of the quick ones that follow it.
 */
const spins: Array<AdaptiveSpin> = []

const roundTrip = (syscall: number): number => {
  words[Word.SYSCALL] = syscall
  publish(words, State.REQUEST, Word.SENTRY_PARKED)
  const spin = spins[syscall] ??= new AdaptiveSpin()
  if (!spin.poll(words, State.RESPONSE)) {
    Atomics.store(words, Word.WORKER_PARKED, 1)
    while (Atomics.load(words, Word.STATE) !== State.RESPONSE) Atomics.wait(words, Word.STATE, State.REQUEST)
    Atomics.store(words, Word.WORKER_PARKED, 0)
  }
  words[Word.STATE] = State.IDLE
  const errno = words[Word.ERRNO]!
  if (errno === KILLED) throw new Killed()
  return errno
}

/**
 * Calls served here are still syscall boundaries: while the sentry has flagged this task (a
 * pending stop), each first enters the sentry, which holds it until it may go on.
 */
const checkpoint = (): void => {
  if (Atomics.load(words, Word.ATTENTION) !== 0) request(SCHED_YIELD)
}

/**
 * Sends the request of a hand-written stub, which has set the words and slots its declaration
 * places (syscallAbi.ts); the errno.
 */
const request = (p: SyscallPlan): number => {
  words[Word.NARGS] = p.nargs
  return roundTrip(p.number)
}

const SCHED_YIELD = plan("sched_yield")

// ---- guest memory --------------------------------------------------------------------------

let memory: WebAssembly.Memory | undefined
let memBuffer: ArrayBuffer = new ArrayBuffer(0)
let mem8 = new Uint8Array(memBuffer)
let memView = new DataView(memBuffer)

/** Views over guest memory, rebuilt only when memory.grow replaced the buffer. */
const refresh = (): void => {
  const buffer = memory!.buffer
  if (buffer !== memBuffer) {
    memBuffer = buffer
    mem8 = new Uint8Array(buffer)
    memView = new DataView(buffer)
  }
}

/**
 * Whether [ptr, ptr + len) lies in guest memory. Guest i32s arrive signed, so negative values
 * are read as u32; a length computed by this shim (count × struct size) may exceed 2^32 and must
 * not be truncated.
 */
const inBounds = (ptr: number, len: number): boolean =>
  (ptr >>> 0) + (len < 0 ? len >>> 0 : len) <= memBuffer.byteLength

class Fault {}
const FAULT = new Fault()

/** Validates `count` iovecs at `iovs`; returns [ptr, len] pairs or throws FAULT. */
const readIovecs = (iovs: number, count: number): Array<[number, number]> => {
  iovs >>>= 0
  count >>>= 0
  if (!inBounds(iovs, count * Layout.iovec.sizeOf)) throw FAULT
  const out: Array<[number, number]> = []
  for (let i = 0; i < count; i++) {
    const base = iovs + i * Layout.iovec.sizeOf
    const ptr = memView.getUint32(base + Layout.iovec.buf, true)
    const len = memView.getUint32(base + Layout.iovec.bufLen, true)
    if (!inBounds(ptr, len)) throw FAULT
    out.push([ptr, len])
  }
  return out
}

/** Copies a guest string into the data area at `at`; returns the next free offset. */
const putGuestBytes = (ptr: number, len: number, at: number): number => {
  ptr >>>= 0
  len >>>= 0
  if (!inBounds(ptr, len)) throw FAULT
  if (at + len > DATA_SIZE) throw new TooLong()
  data.set(mem8.subarray(ptr, ptr + len), at)
  return at + len
}
class TooLong {}

const putU32 = (ptr: number, value: number): void => memView.setUint32(ptr >>> 0, value >>> 0, true)
const putU64 = (ptr: number, value: bigint): void => memView.setBigUint64(ptr >>> 0, BigInt.asUintN(64, value), true)

/** Copies the response payload (RESULT_LENGTH bytes) to guest memory at `ptr`. */
const copyOut = (ptr: number): void => {
  const length = words[Word.RESULT_LENGTH]!
  refresh()
  mem8.set(data.subarray(0, length), ptr >>> 0)
}

/**
 * Wraps a syscall implementation: refreshes memory views, turns FAULT into EFAULT and an
 * over-long path into ENAMETOOLONG. Anything else thrown here is a bug in this shim, not the
 * guest's doing; it propagates and ends the run as a crash that the sentry reports.
 */
const syscall = <A extends Array<any>>(f: (...args: A) => number) => (...args: A): number => {
  checkpoint()
  refresh()
  try {
    return f(...args)
  } catch (e) {
    if (e === FAULT) return Errno.FAULT
    if (e instanceof TooLong) return Errno.NAMETOOLONG
    throw e
  }
}

/**
 * memory.grow of the guest (instrumented to call this, see instrument.ts): the sentry charges the
 * pages to the sandbox's memory first, and a refusal is the guest's -1. Being a syscall, it is
 * also where a guest growing in a loop stops or dies like any other.
 */
const growMemory = (pages: number): number => {
  const current = memory!.buffer.byteLength / 65536
  if (pages === 0) return current
  words[GROW.current] = current
  words[GROW.pages] = pages >>> 0
  if (request(GROW.plan) !== Errno.SUCCESS) return -1
  try {
    memory!.grow(pages >>> 0)
  } catch {
    // Charged and not grown (V8 found no memory): the sentry settles it at the next grow.
    return -1
  }
  refresh()
  return current
}

const GROW = { plan: plan("memory_grow"), current: argPlace("memory_grow", "current"), pages: argPlace("memory_grow", "pages") }

/**
 * growMemory and the preemption hook (checkpoint: a guest computing without syscalls stops,
 * pauses and dies there as at a syscall boundary) as wasm functions, which the instrumented
 * module's table can hold.
 */
const hooks = guestHooks(growMemory, checkpoint)

// ---- per-run state ---------------------------------------------------------------------------

const encoder = new TextEncoder()
let argBlobs: Array<Uint8Array> = []
let envBlobs: Array<Uint8Array> = []
let fastPaths = true

const encodeStrings = (list: ReadonlyArray<string>): Array<Uint8Array> => list.map((s) => encoder.encode(`${s}\0`))

const sizesGet = (blobs: Array<Uint8Array>) => (countPtr: number, sizePtr: number): number => {
  if (!inBounds(countPtr, 4) || !inBounds(sizePtr, 4)) return Errno.FAULT
  putU32(countPtr, blobs.length)
  putU32(sizePtr, blobs.reduce((n, b) => n + b.length, 0))
  return Errno.SUCCESS
}

const stringsGet = (blobs: Array<Uint8Array>) => (ptrs: number, buf: number): number => {
  const total = blobs.reduce((n, b) => n + b.length, 0)
  if (!inBounds(ptrs, blobs.length * 4) || !inBounds(buf, total)) return Errno.FAULT
  let at = buf >>> 0
  blobs.forEach((blob, i) => {
    putU32((ptrs >>> 0) + i * 4, at)
    mem8.set(blob, at)
    at += blob.length
  })
  return Errno.SUCCESS
}

// ---- clocks (served in the worker) ----------------------------------------------------------

const monotonicOrigin = process.hrtime.bigint()
// Wall-clock nanoseconds at monotonicOrigin; realtime advances with the monotonic clock from here.
const realtimeOrigin = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6))

/**
 * This thread's CPU time (ns), from its thread CPU clock through the gofer's core; where the core
 * does not load, the time since the run began (an upper bound).
 */
const threadCpuTime = (): bigint => {
  const ns = tid === 0 ? undefined : workerCore()?.threadCpuTime(tid)
  return typeof ns === "bigint" ? ns : process.hrtime.bigint()
}

/** threadCpuTime() when the current run began (the thread runs one process after another). */
let cpuAtRun = 0n

const clockNow = (id: number): bigint | undefined => {
  switch (id) {
    case 0:
      return realtimeOrigin + (process.hrtime.bigint() - monotonicOrigin)
    case 1:
      return process.hrtime.bigint()
    case 2:
    case 3:
      // A WASI process is one thread: its CPU time is this thread's since the run began.
      return threadCpuTime() - cpuAtRun
    default:
      return undefined
  }
}

// ---- writes straight to a host fd (served in the worker) -------------------------------------

/** What a host call made here returns when the sentry must do it instead (not an errno). */
const VIA_SENTRY = -0x10000

const parkFor = new Int32Array(new SharedArrayBuffer(4))

/**
 * Waits before another attempt on a host fd that said EAGAIN (a full pipe whose fd is
 * non-blocking): 50 µs at first, doubling to 2 ms, since a pipe's reader usually makes room
 * soon. A parked guest is still a guest at a syscall: it stops here when asked to (checkpoint),
 * and a kill ends it here (terminate wakes Atomics.wait).
 */
const parkBeforeRetry = (attempt: number): void => {
  Atomics.wait(parkFor, 0, 0, Math.min(0.05 * 2 ** attempt, 2))
  checkpoint()
}

/**
 * Writes `chunks` (views of guest memory) to a host fd: all of them, as a blocking write to a
 * pipe does on Linux, however often the pipe fills; with O_NONBLOCK, what goes in at once (a
 * short count, or EAGAIN). The bytes written; -errno when nothing was; VIA_SENTRY when the
 * reader has gone (EPIPE), so that the sentry makes the write again and raises SIGPIPE.
 */
const writeToHost = (hostFd: number, chunks: Array<Uint8Array>, nonBlocking: boolean): number => {
  let total = 0
  let attempt = 0
  let first = 0
  while (first < chunks.length) {
    let n: number
    try {
      n = chunks.length - first === 1 ? Fs.writeSync(hostFd, chunks[first]!) : Fs.writevSync(hostFd, first === 0 ? chunks : chunks.slice(first))
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === "EAGAIN" && !nonBlocking) {
        parkBeforeRetry(attempt++)
        continue
      }
      if (total > 0) return total
      return code === "EPIPE" ? VIA_SENTRY : -errnoFromHostCode(code)
    }
    total += n
    attempt = 0
    // Drop what went in: whole chunks, then the written part of the next.
    while (first < chunks.length && n >= chunks[first]!.length) n -= chunks[first++]!.length
    if (n > 0) chunks[first] = chunks[first]!.subarray(n)
    if (nonBlocking) break
  }
  return total
}

// The hottest call of write-heavy guests: written out without the `syscall` wrapper, and with
// no allocation when one iovec goes in at the first attempt.
const fdWrite = (fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number => {
  refresh()
  const lent = fastPaths && fd >>> 0 < FAST_WRITE_FDS ? fastWrite[fd]! : 0
  if (lent === 0 || Atomics.load(words, Word.ATTENTION) !== 0) return writeViaSentry(fd, iovs, iovsLen, nwrittenPtr)
  const hostFd = (lent & ~FAST_NONBLOCK) - 1
  const nonBlocking = (lent & FAST_NONBLOCK) !== 0
  iovs >>>= 0
  iovsLen >>>= 0
  if (!inBounds(iovs, iovsLen * Layout.iovec.sizeOf) || !inBounds(nwrittenPtr, 4)) return Errno.FAULT
  let first = 0
  let chunks: Array<Uint8Array> | undefined
  if (iovsLen === 1) {
    const ptr = memView.getUint32(iovs + Layout.iovec.buf, true)
    const len = memView.getUint32(iovs + Layout.iovec.bufLen, true)
    if (!inBounds(ptr, len)) return Errno.FAULT
    if (len > 0) {
      try {
        first = Fs.writeSync(hostFd, mem8, ptr, len)
      } catch {
        // Made again below, where each failure is told apart.
      }
      if (first < len && !(nonBlocking && first > 0)) chunks = [mem8.subarray(ptr + first, ptr + len)]
    }
  } else {
    chunks = []
    for (let i = 0; i < iovsLen; i++) {
      const ptr = memView.getUint32(iovs + i * Layout.iovec.sizeOf + Layout.iovec.buf, true)
      const len = memView.getUint32(iovs + i * Layout.iovec.sizeOf + Layout.iovec.bufLen, true)
      if (!inBounds(ptr, len)) return Errno.FAULT
      if (len > 0) chunks.push(mem8.subarray(ptr, ptr + len))
    }
  }
  const rest = chunks === undefined || chunks.length === 0 ? 0 : writeToHost(hostFd, chunks, nonBlocking)
  if (rest < 0 && first === 0) return rest === VIA_SENTRY ? writeViaSentry(fd, iovs, iovsLen, nwrittenPtr) : -rest
  putU32(nwrittenPtr, first + Math.max(rest, 0))
  return Errno.SUCCESS
}

/** A write that is not to host stdio: to a lent file here, else through the sentry. */
const writeViaSentry = (fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number =>
  syscall(() => files.fd_write(fd, iovs, iovsLen, nwrittenPtr) ?? writeThroughSentry(WRITE, fd, readIovecs(iovs, iovsLen), undefined, nwrittenPtr))()

/** Where fd_read, fd_pread, fd_write and fd_pwrite place their fd, byte count, offset and answer. */
interface Transfer {
  readonly plan: SyscallPlan
  readonly fd: number
  /** The word of the byte count: gathered (writes) or wanted (reads). */
  readonly length: number
  /** The i64 slot of the offset (positional calls; -1 otherwise). */
  readonly offset: number
  /** The result word of the bytes transferred. */
  readonly done: number
}

const WRITE: Transfer = {
  plan: plan("fd_write"),
  fd: argPlace("fd_write", "fd"),
  length: argPlace("fd_write", "iovs"),
  offset: -1,
  done: resultPlace("fd_write", "nwritten")
}
const PWRITE: Transfer = {
  plan: plan("fd_pwrite"),
  fd: argPlace("fd_pwrite", "fd"),
  length: argPlace("fd_pwrite", "iovs"),
  offset: argPlace("fd_pwrite", "offset"),
  done: resultPlace("fd_pwrite", "nwritten")
}
const READ: Transfer = {
  plan: plan("fd_read"),
  fd: argPlace("fd_read", "fd"),
  length: argPlace("fd_read", "iovs"),
  offset: -1,
  done: resultPlace("fd_read", "nread")
}
/** sock_send and sock_recv: fd_write and fd_read with flags (and, for sock_recv, its ro_flags). */
const SEND: Transfer = {
  plan: plan("sock_send"),
  fd: argPlace("sock_send", "fd"),
  length: argPlace("sock_send", "iovs"),
  offset: -1,
  done: resultPlace("sock_send", "nsent")
}
const SEND_FLAGS = argPlace("sock_send", "flags")
const RECV: Transfer = {
  plan: plan("sock_recv"),
  fd: argPlace("sock_recv", "fd"),
  length: argPlace("sock_recv", "iovs"),
  offset: -1,
  done: resultPlace("sock_recv", "nread")
}
const RECV_FLAGS = argPlace("sock_recv", "flags")
const RECV_RO_FLAGS = resultPlace("sock_recv", "roFlags")
const RECV_FROM: Transfer = {
  plan: plan("sock_recv_from"),
  fd: argPlace("sock_recv_from", "fd"),
  length: argPlace("sock_recv_from", "iovs"),
  offset: -1,
  done: resultPlace("sock_recv_from", "nread")
}
const RECV_FROM_FLAGS = argPlace("sock_recv_from", "flags")
const RECV_FROM_RO_FLAGS = resultPlace("sock_recv_from", "roFlags")
const SEND_TO = {
  plan: plan("sock_send_to"),
  fd: argPlace("sock_send_to", "fd"),
  length: argPlace("sock_send_to", "iovs"),
  flags: argPlace("sock_send_to", "flags"),
  done: resultPlace("sock_send_to", "nsent")
}
const PREAD: Transfer = {
  plan: plan("fd_pread"),
  fd: argPlace("fd_pread", "fd"),
  length: argPlace("fd_pread", "iovs"),
  offset: argPlace("fd_pread", "offset"),
  done: resultPlace("fd_pread", "nread")
}

/**
 * Gathers iovecs into the data area, in DATA_SIZE chunks when larger. A later chunk's error or
 * short write ends the loop and reports what was written so far, as a short writev would.
 */
const writeThroughSentry = (
  t: Transfer,
  fd: number,
  vecs: Array<[number, number]>,
  offset: bigint | undefined,
  nwrittenPtr: number
): number => {
  let total = 0
  let pending = 0
  let vi = 0
  let vo = 0
  for (;;) {
    // fill one chunk
    pending = 0
    while (vi < vecs.length && pending < DATA_SIZE) {
      const [ptr, len] = vecs[vi]!
      const take = Math.min(len - vo, DATA_SIZE - pending)
      data.set(mem8.subarray(ptr + vo, ptr + vo + take), pending)
      pending += take
      vo += take
      if (vo === len) {
        vi++
        vo = 0
      }
    }
    words[t.fd] = fd
    words[t.length] = pending
    if (offset !== undefined) i64[t.offset] = offset + BigInt(total)
    const errno = request(t.plan)
    if (errno !== Errno.SUCCESS) {
      if (total === 0) return errno
      break
    }
    const written = words[t.done]!
    total += written
    if (written < pending || vi >= vecs.length) break
  }
  refresh()
  putU32(nwrittenPtr, total)
  return Errno.SUCCESS
}

const readThroughSentry = (
  t: Transfer,
  fd: number,
  iovs: number,
  iovsLen: number,
  offset: bigint | undefined,
  nreadPtr: number
): number => {
  const vecs = readIovecs(iovs, iovsLen)
  if (!inBounds(nreadPtr, 4)) return Errno.FAULT
  const want = Math.min(DATA_SIZE, vecs.reduce((s, [, l]) => s + l, 0))
  words[t.fd] = fd
  words[t.length] = want
  if (offset !== undefined) i64[t.offset] = offset
  const errno = request(t.plan)
  if (errno !== Errno.SUCCESS) return errno
  const got = words[t.done]!
  refresh()
  let at = 0
  for (const [ptr, len] of vecs) {
    if (at >= got) break
    const take = Math.min(len, got - at)
    mem8.set(data.subarray(at, at + take), ptr)
    at += take
  }
  putU32(nreadPtr, got)
  return Errno.SUCCESS
}

/**
 * fd_read of a host file the sentry lent this worker (see platform/lendFastPaths.ts): read
 * straight into guest memory at the offset kept in the channel, which the sentry reads back
 * when it takes the file back; or, for host stdio, at the host fd's own offset (a regular file)
 * or from a pipe or terminal the sentry opened non-blocking. What a read returns here is what
 * the sentry would have returned. The bytes read, -errno, or VIA_SENTRY when a stream has
 * nothing yet: the sentry then waits for it, which this thread must not do (a guest blocked in a
 * host call could not be killed).
 */
const readHostFile = (fd: number, hostFd: number, ptr: number, length: number, nonBlocking: boolean): number => {
  if (length === 0) return 0
  const position = fastReadPosition[fd]!
  if (position === READ_AT_HOST_OFFSET) return readHostStream(hostFd, ptr, length, nonBlocking)
  let n: number
  try {
    // A number position spares Node a bigint conversion per read; past 2^53 the bigint goes as is.
    n = Fs.readSync(hostFd, mem8, ptr, length, position <= MAX_SAFE ? Number(position) : position)
  } catch (e) {
    return -errnoFromHostCode((e as NodeJS.ErrnoException).code)
  }
  fastReadPosition[fd] = position + BigInt(n)
  return n
}

/**
 * A read at the host fd's own offset: a regular file, or a pipe or terminal the sentry opened
 * non-blocking. A pipe that is empty now is often refilled within microseconds by a writer that
 * is a little slower than this guest: unless the guest's fd is O_NONBLOCK (then it is EAGAIN at
 * once, as the sentry's would be), it is tried again after short parks (STREAM_PARKS of 20 µs,
 * during which the writer has the CPU) before the sentry is asked to wait for it.
 */
const readHostStream = (hostFd: number, ptr: number, length: number, nonBlocking: boolean): number => {
  for (let parks = 0;; parks++) {
    try {
      return Fs.readSync(hostFd, mem8, ptr, length, null)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code !== "EAGAIN" || nonBlocking) return -errnoFromHostCode(code)
      if (parks === STREAM_PARKS) return VIA_SENTRY
      Atomics.wait(parkFor, 0, 0, 0.02)
    }
  }
}
const STREAM_PARKS = 8

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

const READDIR = {
  plan: plan("fd_readdir"),
  fd: argPlace("fd_readdir", "fd"),
  capacity: argPlace("fd_readdir", "buf"),
  cookie: argPlace("fd_readdir", "cookie"),
  bufused: resultPlace("fd_readdir", "bufused")
}

const readdir = syscall((fd: number, buf: number, bufLen: number, cookie: bigint, bufusedPtr: number): number => {
  buf >>>= 0
  bufLen >>>= 0
  if (!inBounds(buf, bufLen) || !inBounds(bufusedPtr, 4)) return Errno.FAULT
  // The sentry fills at most DATA_SIZE bytes per request; a larger guest buffer is filled by
  // continuing from the cookie of the last whole entry received.
  let used = 0
  let next = cookie
  for (;;) {
    const want = Math.min(DATA_SIZE, bufLen - used)
    words[READDIR.fd] = fd
    words[READDIR.capacity] = want
    i64[READDIR.cookie] = next
    const errno = request(READDIR.plan)
    if (errno !== Errno.SUCCESS) {
      if (used === 0) return errno
      break
    }
    const got = words[READDIR.bufused]!
    refresh()
    mem8.set(data.subarray(0, got), buf + used)
    if (got < want || used + got >= bufLen) {
      used += got
      break
    }
    // Full chunk: keep only whole entries and continue after the last one.
    let at = 0
    let whole = 0
    while (at + Layout.dirent.sizeOf <= got) {
      const namlen = channel.dataView.getUint32(at + Layout.dirent.namlen, true)
      if (at + Layout.dirent.sizeOf + namlen > got) break
      next = channel.dataView.getBigUint64(at + Layout.dirent.next, true)
      at += Layout.dirent.sizeOf + namlen
      whole = at
    }
    if (whole === 0) {
      used += got
      break
    }
    used += whole
  }
  putU32(bufusedPtr, used)
  return Errno.SUCCESS
})

// ---- the import object -----------------------------------------------------------------------

/** What the generic stubs (compiled from their declarations, see syscallAbi.ts) use of this worker. */
const guestSide: GuestSide = {
  channel,
  enter: () => {
    checkpoint()
    refresh()
  },
  refresh,
  memory: () => mem8,
  view: () => memView,
  roundTrip
}

const POLL = {
  plan: plan("poll_oneoff"),
  nsubs: argPlace("poll_oneoff", "nsubs"),
  nevents: resultPlace("poll_oneoff", "nevents")
}

const JOIN = {
  plan: plan("proc_join"),
  tag: argPlace("proc_join", "tag"),
  pid: argPlace("proc_join", "pid"),
  flags: argPlace("proc_join", "flags"),
  joined: resultPlace("proc_join", "pid")
}

const SPAWN = {
  plan: plan("proc_spawn"),
  path: argPlace("proc_spawn", "path"),
  argv: argPlace("proc_spawn", "argv"),
  envp: argPlace("proc_spawn", "envp"),
  fds: [argPlace("proc_spawn", "fd0"), argPlace("proc_spawn", "fd1"), argPlace("proc_spawn", "fd2")],
  nfds: argPlace("proc_spawn", "nfds"),
  pgid: argPlace("proc_spawn", "pgid"),
  flags: argPlace("proc_spawn", "flags"),
  pid: resultPlace("proc_spawn", "pid")
}

const OptionPid = Layout.optionPid
const JoinStatus = Layout.joinStatus

/**
 * The stubs written here: the calls declared `served` (answered in this worker) and `worker`
 * (their guest side is more than a copy: iovecs, readdir's loop, the fast paths). Every other
 * import is a generic stub; `guestImports` checks that this table holds exactly the declared ones.
 */
const writtenStubs = {
  args_get: syscall((ptrs: number, buf: number) => stringsGet(argBlobs)(ptrs, buf)),
  args_sizes_get: syscall((c: number, s: number) => sizesGet(argBlobs)(c, s)),
  environ_get: syscall((ptrs: number, buf: number) => stringsGet(envBlobs)(ptrs, buf)),
  environ_sizes_get: syscall((c: number, s: number) => sizesGet(envBlobs)(c, s)),
  clock_res_get: syscall((id: number, out: number): number => {
    if (clockNow(id) === undefined) return Errno.INVAL
    if (!inBounds(out, 8)) return Errno.FAULT
    putU64(out, id <= 1 ? 1n : 1000n)
    return Errno.SUCCESS
  }),
  clock_time_get: (id: number, _precision: bigint, out: number): number => {
    checkpoint()
    refresh()
    const now = clockNow(id)
    if (now === undefined) return Errno.INVAL
    if (!inBounds(out, 8)) return Errno.FAULT
    memView.setBigUint64(out >>> 0, now, true)
    return Errno.SUCCESS
  },
  fd_pread: syscall((fd: number, iovs: number, len: number, offset: bigint, out: number) =>
    files.fd_pread(fd, iovs, len, offset, out) ?? readThroughSentry(PREAD, fd, iovs, len, offset, out)),
  fd_pwrite: syscall((fd: number, iovs: number, len: number, offset: bigint, out: number): number => {
    const served = files.fd_pwrite(fd, iovs, len, offset, out)
    if (served !== undefined) return served
    const vecs = readIovecs(iovs, len)
    if (!inBounds(out, 4)) return Errno.FAULT
    return writeThroughSentry(PWRITE, fd, vecs, offset, out)
  }),
  fd_read: syscall((fd: number, iovs: number, len: number, out: number) => {
    const lent = fastPaths && fd >>> 0 < FAST_WRITE_FDS ? fastRead[fd]! : 0
    if ((lent & Lent.READ) === 0 || Atomics.load(words, Word.ATTENTION) !== 0) return readThroughSentry(READ, fd, iovs, len, undefined, out)
    const hostFd = (lent & LENT_HOST_FD) - 1
    const nonBlocking = (lent & FAST_NONBLOCK) !== 0
    if (!inBounds(out >>> 0, 4)) return Errno.FAULT
    // One iovec (what read(2) makes) needs no list.
    if (len === 1 && inBounds(iovs >>> 0, Layout.iovec.sizeOf)) {
      const ptr = memView.getUint32((iovs >>> 0) + Layout.iovec.buf, true)
      const bufLen = memView.getUint32((iovs >>> 0) + Layout.iovec.bufLen, true)
      if (!inBounds(ptr, bufLen)) return Errno.FAULT
      const n = readHostFile(fd, hostFd, ptr, bufLen, nonBlocking)
      if (n === VIA_SENTRY) return readThroughSentry(READ, fd, iovs, len, undefined, out)
      if (n < 0) return -n
      putU32(out, n)
      return Errno.SUCCESS
    }
    let total = 0
    for (const [ptr, bufLen] of readIovecs(iovs, len)) {
      // Once some bytes are in, a stream with no more ends the read (as readv's would) at once.
      const n = readHostFile(fd, hostFd, ptr, bufLen, nonBlocking || total > 0)
      if (n < 0) {
        if (total === 0) return n === VIA_SENTRY ? readThroughSentry(READ, fd, iovs, len, undefined, out) : -n
        break
      }
      total += n
      if (n < bufLen) break
    }
    putU32(out, total)
    return Errno.SUCCESS
  }),
  fd_readdir: readdir,
  fd_write: fdWrite,
  sock_recv: syscall((fd: number, iovs: number, len: number, flags: number, nreadPtr: number, roFlagsPtr: number): number => {
    if (!inBounds(roFlagsPtr, 2)) return Errno.FAULT
    words[RECV_FLAGS] = flags
    const errno = readThroughSentry(RECV, fd, iovs, len, undefined, nreadPtr)
    if (errno === Errno.SUCCESS) memView.setUint16(roFlagsPtr >>> 0, words[RECV_RO_FLAGS]! & 0xffff, true)
    return errno
  }),
  sock_recv_from: syscall((fd: number, iovs: number, len: number, flags: number, nreadPtr: number, roFlagsPtr: number, addrPtr: number): number => {
    // Room for a Unix sender's address (the whole C struct) before the call: a datagram taken
    // must not then be lost to EFAULT.
    if (!inBounds(roFlagsPtr, 2) || !inBounds(addrPtr, AddrPort.unixSizeOf)) return Errno.FAULT
    words[RECV_FROM_FLAGS] = flags
    const errno = readThroughSentry(RECV_FROM, fd, iovs, len, undefined, nreadPtr)
    if (errno !== Errno.SUCCESS) return errno
    memView.setUint16(roFlagsPtr >>> 0, words[RECV_FROM_RO_FLAGS]! & 0xffff, true)
    const size = data[RECV_FROM_ADDRESS_AT] === AddressFamily.UNIX ? AddrPort.unixSizeOf : AddrPort.sizeOf
    mem8.set(data.subarray(RECV_FROM_ADDRESS_AT, RECV_FROM_ADDRESS_AT + size), addrPtr >>> 0)
    return Errno.SUCCESS
  }),
  // One datagram, whole: its bytes, then the destination's addr_port after them.
  sock_send_to: syscall((fd: number, iovs: number, len: number, flags: number, addrPtr: number, nsentPtr: number): number => {
    const vecs = readIovecs(iovs, len)
    if (!inBounds(addrPtr, AddrPort.sizeOf) || !inBounds(nsentPtr, 4)) return Errno.FAULT
    const size = mem8[addrPtr >>> 0] === AddressFamily.UNIX ? AddrPort.unixSizeOf : AddrPort.sizeOf
    if (!inBounds(addrPtr, size)) return Errno.FAULT
    let at = 0
    for (const [ptr, length] of vecs) {
      if (at + length > RECV_FROM_ADDRESS_AT) return Errno.MSGSIZE
      data.set(mem8.subarray(ptr, ptr + length), at)
      at += length
    }
    data.set(mem8.subarray(addrPtr >>> 0, (addrPtr >>> 0) + size), at)
    words[SEND_TO.fd] = fd
    words[SEND_TO.length] = at
    words[SEND_TO.flags] = flags
    const errno = request(SEND_TO.plan)
    if (errno !== Errno.SUCCESS) return errno
    refresh()
    putU32(nsentPtr, words[SEND_TO.done]!)
    return Errno.SUCCESS
  }),
  sock_send: syscall((fd: number, iovs: number, len: number, flags: number, nsentPtr: number): number => {
    const vecs = readIovecs(iovs, len)
    if (!inBounds(nsentPtr, 4)) return Errno.FAULT
    words[SEND_FLAGS] = flags
    return writeThroughSentry(SEND, fd, vecs, undefined, nsentPtr)
  }),
  poll_oneoff: syscall((inPtr: number, outPtr: number, nsubs: number, neventsPtr: number): number => {
    nsubs >>>= 0
    const inBytes = nsubs * Layout.subscription.sizeOf
    if (!inBounds(outPtr, nsubs * Layout.event.sizeOf) || !inBounds(neventsPtr, 4)) return Errno.FAULT
    if (inBytes > DATA_SIZE) return Errno.INVAL
    putGuestBytes(inPtr, inBytes, 0)
    words[POLL.nsubs] = nsubs
    const errno = request(POLL.plan)
    if (errno === Errno.SUCCESS) {
      copyOut(outPtr)
      putU32(neventsPtr, words[POLL.nevents]!)
    }
    return errno
  }),
  proc_exit: (code: number): never => {
    checkpoint()
    throw new ProcExit(code >>> 0)
  },
  sched_yield: () => {
    checkpoint()
    return Errno.SUCCESS
  },
  random_get: syscall((buf: number, len: number): number => {
    if (!inBounds(buf, len)) return Errno.FAULT
    randomFillSync(mem8, buf >>> 0, len >>> 0)
    return Errno.SUCCESS
  }),
  // ---- process calls (docs/process-api.md)
  proc_join: syscall((pidPtr: number, flags: number, statusPtr: number): number => {
    if (!inBounds(pidPtr, OptionPid.sizeOf) || !inBounds(statusPtr, JoinStatus.sizeOf)) return Errno.FAULT
    const base = pidPtr >>> 0
    words[JOIN.tag] = memView.getUint8(base + OptionPid.tag)
    words[JOIN.pid] = memView.getUint32(base + OptionPid.pid, true)
    words[JOIN.flags] = flags
    const errno = request(JOIN.plan)
    // ECHILD still reports "nothing": the sentry wrote that status too.
    if (errno !== Errno.SUCCESS && errno !== Errno.CHILD) return errno
    refresh()
    const pid = words[JOIN.joined]!
    memView.setUint8(base + OptionPid.tag, pid === 0 || errno !== Errno.SUCCESS ? 0 : 1)
    memView.setUint32(base + OptionPid.pid, errno === Errno.SUCCESS ? pid : 0, true)
    mem8.set(data.subarray(0, JoinStatus.sizeOf), statusPtr >>> 0)
    return errno
  }),
  proc_spawn: syscall((
    path: number,
    pathLen: number,
    argv: number,
    argvLen: number,
    envp: number,
    envpLen: number,
    fds: number,
    nfds: number,
    pgid: number,
    flags: number,
    out: number
  ): number => {
    nfds >>>= 0
    if (nfds > 3) return Errno.INVAL
    if (!inBounds(fds, nfds * 4) || !inBounds(out, 4)) return Errno.FAULT
    if ((pathLen >>> 0) + (argvLen >>> 0) + (envpLen >>> 0) > DATA_SIZE) return Errno.TOOBIG
    putGuestBytes(envp, envpLen, putGuestBytes(argv, argvLen, putGuestBytes(path, pathLen, 0)))
    for (let i = 0; i < nfds; i++) i64[SPAWN.fds[i]!] = BigInt(memView.getInt32((fds >>> 0) + i * 4, true))
    words[SPAWN.path] = pathLen
    words[SPAWN.argv] = argvLen
    words[SPAWN.envp] = envpLen
    words[SPAWN.nfds] = nfds
    words[SPAWN.pgid] = pgid
    words[SPAWN.flags] = flags
    const errno = request(SPAWN.plan)
    if (errno === Errno.SUCCESS) {
      refresh()
      // The fds entries come back with each new pipe replaced by the caller's end of it.
      mem8.set(data.subarray(0, nfds * 4), fds >>> 0)
      putU32(out, words[SPAWN.pid]!)
    }
    return errno
  }),
}

const files = lentFiles(guestSide, () => fastPaths)

/** The generic stubs, but those of calls on a lent file try the file first (lentFiles.ts). */
const genericStub = (p: SyscallPlan): ((...params: Array<number | bigint>) => number) => {
  const viaSentry = compileGuestStub(p, guestSide)
  switch (p.name) {
    case "fd_seek":
      return (fd, delta, whence, out) => files.fd_seek(fd as number, delta as bigint, whence as number, out as number) ?? viaSentry(fd!, delta!, whence!, out!)
    case "fd_tell":
      return (fd, out) => files.fd_tell(fd as number, out as number) ?? viaSentry(fd!, out!)
    case "fd_filestat_get":
      return (fd, out) => files.fd_filestat_get(fd as number, out as number) ?? viaSentry(fd!, out!)
    default:
      return viaSentry
  }
}

const imports = guestImports(genericStub, writtenStubs)

// ---- running a guest -------------------------------------------------------------------------

const trapKind = (error: unknown): TrapKind => {
  if (error instanceof RangeError && /call stack/i.test(error.message)) return "stack"
  const message = error instanceof Error ? error.message : ""
  if (/unreachable/.test(message)) return "unreachable"
  if (/out of bounds|null function|table index/.test(message)) return "memory"
  if (/divide by zero|remainder by zero|integer overflow|divide result unrepresentable/.test(message)) return "divide"
  return "other"
}

const run = (message: ToWorker): GuestEnd => {
  argBlobs = encodeStrings(message.args)
  envBlobs = encodeStrings(message.env)
  fastPaths = message.fastPaths
  spins.length = 0
  cpuAtRun = threadCpuTime()
  try {
    const instance = new WebAssembly.Instance(message.module, imports as WebAssembly.Imports)
    memory = instance.exports["memory"] as WebAssembly.Memory
    refresh()
    installHooks(instance, hooks)
    ;(instance.exports["_start"] as () => void)()
    return { _tag: "Returned" }
  } catch (error) {
    if (error instanceof ProcExit) return { _tag: "ProcExit", code: error.code }
    if (error instanceof Killed) return { _tag: "Killed" }
    if (error instanceof WebAssembly.RuntimeError || error instanceof RangeError) {
      return { _tag: "Trap", kind: trapKind(error), message: error.message }
    }
    return { _tag: "Crash", message: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }
  } finally {
    // Drop every reference to the finished instance so its memory can be collected.
    memory = undefined
    memBuffer = new ArrayBuffer(0)
    mem8 = new Uint8Array(memBuffer)
    memView = new DataView(memBuffer)
    argBlobs = []
    envBlobs = []
  }
}

const post = (message: FromWorker): void => port.postMessage(message)

port.on("message", (message: ToWorker) => post({ _tag: "Ended", end: run(message) }))
post({ _tag: "Ready", tid })
