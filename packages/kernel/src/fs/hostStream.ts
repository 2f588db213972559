/**
 * Host stdio passthrough: an fd of the sandbox process (stdin/stdout/stderr of `runsc run`, or
 * one a control call opened) handed to the guest as one of its fds, as one open file
 * description.
 *
 * A regular file never makes a call wait, nor do the memory devices (/dev/null, /dev/zero, …):
 * they are read and written with synchronous calls. Pipes, terminals and sockets can wait (a
 * read of an empty pipe, a write to a full one), and the sentry's thread must never wait on the
 * host. The host fd's own description is usually shared with other host processes (a shell's
 * pipe, the user's terminal), so its O_NONBLOCK flag is not ours to change: the sandbox opens a
 * description of its own of the same pipe or terminal (through /proc/self/fd, by the gofer's
 * core, so under Node's permission model too), non-blocking, and tries each read and write
 * there first. What would wait then waits
 * without holding the sentry: a read as one host read on libuv's pool, whose bytes wait here for
 * the next reader if the one that asked has gone; a write as attempts spaced in time. Without a
 * description of its own (a socket, which cannot be reopened), every read and write goes through
 * libuv's pool.
 *
 * Semantics are Linux's: a blocking write goes in whole, an O_NONBLOCK one is short or fails
 * EAGAIN, as does an O_NONBLOCK read with nothing to read (where the description of our own
 * lets the sentry know); a write whose reader has gone fails EPIPE, on which the syscall raises
 * SIGPIPE. A terminal says so (`isTerminal`): isatty() is true of it and of nothing else.
 */
import { Errno, FileType, Whence } from "@runsc/abi"
import { Duration, Effect, Exit, Schedule } from "effect"
import * as Fs from "node:fs"
import * as Tty from "node:tty"
import { Changes } from "../changes.js"
import { fail, fromHostError, GoferUnavailable, syscallError, type SyscallError } from "../errors.js"
import { READ_AT_HOST_OFFSET } from "../platform/channel.js"
import { coreError, failed, goferCore, loadGoferCore, statBuffer } from "./goferCore.js"
import { toStat } from "./host.js"
import type { FileDescription, Stat } from "./inode.js"

export interface HostStreamOptions {
  /**
   * The description owns the host fd and closes it with itself (an fd the sandbox opened for a
   * process, e.g. a path a control call named). By default the fd is the sandbox process's own
   * stdio and outlives the description.
   */
  readonly owned?: boolean
}

export const hostStream = (hostFd: number, options: HostStreamOptions = {}): FileDescription => {
  let st: Fs.Stats | undefined
  try {
    st = Fs.fstatSync(hostFd)
  } catch {
    st = undefined
  }
  return st?.isFile() ? hostFile(hostFd, options) : hostStreamOf(hostFd, st, options)
}

// ---- regular files ---------------------------------------------------------------------------

/**
 * A regular file. Without an offset, reads and writes use (and move) the host fd's own offset,
 * which the sandbox process may share with others (`> log 2>&1`, `(runsc do …; cat) < file`);
 * with one, they are positional. The guest's worker may read it itself, at that same offset.
 */
const hostFile = (hostFd: number, options: HostStreamOptions): FileDescription => {
  const readInto = (target: Uint8Array, offset?: bigint): Effect.Effect<number, SyscallError> =>
    Effect.try({
      // A bigint position is honoured (a number one would lose offsets past 2^53).
      try: () => Fs.readSync(hostFd, target, 0, target.length, offset ?? null),
      catch: fromHostError
    })
  return {
    filetype: FileType.REGULAR_FILE,
    passthroughHostFd: hostFd,
    readInto,
    read: (length, offset) => {
      const buffer = Buffer.allocUnsafe(length)
      return Effect.map(readInto(buffer, offset), (n) => buffer.subarray(0, n))
    },
    write: (data, offset) =>
      // writeSync takes only a number position (a bigint one is ignored): past 2^53 is EFBIG.
      offset !== undefined && offset > BigInt(Number.MAX_SAFE_INTEGER) ? fail(Errno.FBIG) : Effect.try({
        try: () => Fs.writeSync(hostFd, data, 0, data.length, offset === undefined ? null : Number(offset)),
        catch: fromHostError
      }),
    // APPEND set by the guest (the host description may not have O_APPEND): one write at the end.
    append: (data) =>
      Effect.flatMap(goferCore, (core) => {
        const written = core.appendWrite(hostFd, data, statBuffer)
        return failed(written) ? Effect.fail(coreError(written)) : Effect.succeed(written)
      }).pipe(Effect.catchTag("GoferUnavailable", () => fail(Errno.NOSYS))),
    lendable: {
      hostFd,
      share: (position, index) => {
        position[index] = READ_AT_HOST_OFFSET
      },
      unshare: () => {}
    },
    // Node exposes no lseek: the host fd's offset can be neither read nor moved.
    seek: () => fail(Errno.SPIPE),
    stat: statOf(hostFd, FileType.REGULAR_FILE),
    // Unless owned, the host fd belongs to the sandbox process, not the guest: closing the
    // guest's fd must not close the sandbox's stdio.
    close: options.owned ? Effect.sync(once(() => closeFd(hostFd))) : Effect.void
  }
}

/** `f` on its first call only. */
const once = (f: () => void) => {
  let done = false
  return () => {
    if (done) return
    done = true
    f()
  }
}

// ---- pipes, terminals, sockets, devices ------------------------------------------------------

/** Linux's mem devices that never make a call wait: null, zero, full, random, urandom (major 1). */
const isMemoryDevice = (st: Fs.Stats): boolean => {
  if (!st.isCharacterDevice()) return false
  const major = (st.rdev >> 8) & 0xfff
  const minor = st.rdev & 0xff
  return major === 1 && [3, 5, 7, 8, 9].includes(minor)
}

/**
 * A host stream read and written without ever waiting in a host call: each call either does
 * what it can at once or throws EAGAIN (a SyscallError). `readable` says whether a read would
 * not wait. `workerFd`: a descriptor whose reads and writes never wait, which the guest's worker
 * may then use itself.
 */
interface NonWaiting {
  readonly read?: ((into: Uint8Array) => number) | undefined
  readonly write?: ((from: Uint8Array) => number) | undefined
  readonly readable: () => boolean
  readonly workerFd?: number | undefined
  /** Descriptors of the sandbox's own, closed with the description. */
  readonly owns: ReadonlyArray<number>
}

const readSync = (fd: number) => (into: Uint8Array) => {
  try {
    return Fs.readSync(fd, into, 0, into.length, null)
  } catch (e) {
    throw fromHostError(e)
  }
}

const writeSync = (fd: number) => (from: Uint8Array) => {
  try {
    return Fs.writeSync(fd, from, 0, from.length)
  } catch (e) {
    throw fromHostError(e)
  }
}

const coreCall = (result: number) => {
  if (failed(result)) throw coreError(result)
  return result
}

/**
 * How `hostFd` is used without waiting, or undefined where it cannot be (no gofer core, a FIFO
 * without a reader, a device other than the memory ones): then only libuv's pool can.
 * - a memory device never makes a call wait: the host fd itself;
 * - a pipe or terminal: a description of the sandbox's own of it, non-blocking, opened through
 *   the gofer's core (/proc/self/fd, with the host fd's own access mode, O_NOCTTY), which works
 *   under Node's permission model too;
 * - a socket cannot be reopened: sends and receives with MSG_DONTWAIT on the host fd itself.
 */
const nonWaiting = (hostFd: number, st: Fs.Stats | undefined): NonWaiting | undefined => {
  if (st === undefined) return undefined
  if (isMemoryDevice(st)) return { read: readSync(hostFd), write: writeSync(hostFd), readable: () => true, workerFd: hostFd, owns: [] }
  const core = loadGoferCore()
  if (core instanceof GoferUnavailable) return undefined
  if (st.isSocket()) {
    return {
      read: (into) => coreCall(core.receiveNow(hostFd, into)),
      write: (from) => coreCall(core.sendNow(hostFd, from)),
      readable: () => core.readable(hostFd) !== 0,
      owns: []
    }
  }
  if (!st.isFIFO() && !Tty.isatty(hostFd)) return undefined
  const reopened = core.reopenStream(hostFd)
  if (failed(reopened)) return undefined
  const [fd, access] = reopened
  return {
    read: access !== Fs.constants.O_WRONLY ? readSync(fd) : undefined,
    write: access !== Fs.constants.O_RDONLY ? writeSync(fd) : undefined,
    readable: () => core.readable(fd) !== 0,
    workerFd: fd,
    owns: [fd]
  }
}

/**
 * Between attempts on a stream that said EAGAIN: soon at first (1 ms, doubling to 4 ms), since a
 * pipe's reader usually makes room or a writer sends more within milliseconds; after a second of
 * that, every 20 ms, so that a long wait (a reader paused, a quiet terminal) costs little.
 * Waiting so, rather than in a host call, keeps every wait interruptible: a kill always lands.
 */
const retryAgain = Schedule.exponential(Duration.millis(1), 2).pipe(
  Schedule.union(Schedule.spaced(Duration.millis(4))),
  Schedule.upTo(Duration.seconds(1)),
  Schedule.andThen(Schedule.spaced(Duration.millis(20))),
  Schedule.whileInput((e: SyscallError) => e.errno === Errno.AGAIN)
)

/** `attempt` until it does not fail EAGAIN, spaced by retryAgain. */
const again = <A>(attempt: () => A): Effect.Effect<A, SyscallError> =>
  Effect.retry(Effect.try({ try: attempt, catch: (e) => e as SyscallError }), retryAgain)

const hostStreamOf = (hostFd: number, st: Fs.Stats | undefined, options: HostStreamOptions): FileDescription => {
  const filetype = st?.isCharacterDevice() ? FileType.CHARACTER_DEVICE : st?.isSocket() ? FileType.SOCKET_STREAM : FileType.UNKNOWN
  const isTerminal = Tty.isatty(hostFd)
  const memoryDevice = st !== undefined && isMemoryDevice(st)
  const now = nonWaiting(hostFd, st)
  const closeAll = () => {
    for (const fd of now?.owns ?? []) closeFd(fd)
    if (options.owned) closeFd(hostFd)
  }
  const common = {
    filetype,
    ...(isTerminal ? { isTerminal } : {}),
    // A memory device's offset is always 0, as Linux's are; nothing else here can seek.
    seek: (_delta: bigint, whence: number) =>
      !memoryDevice ? fail(Errno.SPIPE)
      : whence === Whence.SET || whence === Whence.CUR || whence === Whence.END ? Effect.succeed(0n)
      : fail(Errno.INVAL),
    stat: statOf(hostFd, filetype)
  }
  const pooled = pooledStream(hostFd, closeAll)
  const reads = now?.read !== undefined ? nonWaitingReads(now.read, now.readable, now.workerFd) : pooled.reads
  return {
    ...common,
    ...reads,
    // Where the guest's worker writes itself: only a descriptor whose writes never wait (a
    // worker waiting in a host call could not be killed).
    ...(now?.write !== undefined && now.workerFd !== undefined ? { passthroughHostFd: now.workerFd } : {}),
    write: (data, offset, nonBlocking) => {
      if (offset !== undefined) return fail(Errno.SPIPE)
      return now?.write !== undefined ? writeInWhole(now.write, data, nonBlocking ?? false) : pooled.write(data)
    },
    // Closed at once, unless a read on libuv's pool still has the host fd (then once it is back).
    close: Effect.sync(pooled.close)
  }
}

type Reads = Pick<FileDescription, "read" | "readiness" | "lendable">

/** Reads of a stream that never wait in a host call; a blocking read waits between attempts. */
const nonWaitingReads = (read: (into: Uint8Array) => number, readable: () => boolean, workerFd: number | undefined): Reads => ({
  read: (length, offset, nonBlocking) => {
    if (offset !== undefined) return fail(Errno.SPIPE)
    const buffer = Buffer.allocUnsafe(length)
    const attempt = () => buffer.subarray(0, read(buffer))
    return nonBlocking || length === 0 ? Effect.try({ try: attempt, catch: (e) => e as SyscallError }) : again(attempt)
  },
  readiness: {
    ready: (event) => event === "write" || readable(),
    changed: Effect.ignore(again(() => {
      if (!readable()) throw syscallError(Errno.AGAIN)
    }))
  },
  // Nothing is ever held here for the next reader: the worker may always read itself.
  ...(workerFd !== undefined
    ? {
      lendable: {
        hostFd: workerFd,
        share: (position: BigInt64Array, index: number) => {
          position[index] = READ_AT_HOST_OFFSET
        },
        unshare: () => {}
      }
    }
    : {})
})

/**
 * All of `data` through a write that never waits (O_NONBLOCK: what fits at once), waiting
 * between attempts. What went in before a failure is what the write did (the next one fails
 * again).
 */
const writeInWhole = (write: (from: Uint8Array) => number, data: Uint8Array, nonBlocking: boolean): Effect.Effect<number, SyscallError> => {
  let written = 0
  const attempt: Effect.Effect<number, SyscallError> = Effect.suspend(() => {
    try {
      do written += write(data.subarray(written))
      while (written < data.length && !nonBlocking)
      return Effect.succeed(written)
    } catch (e) {
      const error = e as SyscallError
      if (written > 0 && (nonBlocking || error.errno !== Errno.AGAIN)) return Effect.succeed(written)
      return Effect.fail(error)
    }
  })
  return nonBlocking ? attempt : Effect.retry(attempt, retryAgain)
}

/** A host read that may wait, on libuv's pool. */
const readOnPool = (fd: number, length: number): Effect.Effect<Uint8Array, SyscallError> =>
  Effect.async<Uint8Array, SyscallError>((resume) => {
    const buffer = Buffer.allocUnsafe(length)
    Fs.read(fd, buffer, 0, length, null, (error, bytesRead) =>
      resume(error ? Effect.fail(fromHostError(error)) : Effect.succeed(buffer.subarray(0, bytesRead))))
  })

/** A host write that may wait, on libuv's pool. */
const writeOnPool = (fd: number, data: Uint8Array): Effect.Effect<number, SyscallError> =>
  Effect.async<number, SyscallError>((resume) => {
    Fs.write(fd, data, 0, data.length, null, (error, written) => resume(error ? Effect.fail(fromHostError(error)) : Effect.succeed(written)))
  })

/** Bytes poll's read takes from a stream only the pool can read, at most. */
const READ_AHEAD = 64 * 1024

/**
 * A stream only libuv's pool can use without holding the sentry (no gofer core, or a stream it
 * cannot make non-blocking): a read waits there as one host read, and since it cannot be called
 * back, its bytes (or failure, or end of file) wait here for the next reader if the one that
 * asked has gone. Bytes keep their order because only one host read is ever in flight, and what
 * it brings is taken before anything is read again. An O_NONBLOCK read cannot be told from one
 * that would wait, so it waits too unless a read is already on its way.
 */
const pooledStream = (hostFd: number, closeAll: () => void) => {
  let ahead: Exit.Exit<Uint8Array, SyscallError> | undefined
  let inFlight = false
  let closed = false
  const changes = new Changes()

  const readAhead = (length: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (inFlight || ahead !== undefined) return Effect.void
      inFlight = true
      return Effect.forkDaemon(Effect.exit(Effect.retry(readOnPool(hostFd, length), retryAgain)).pipe(
        Effect.map((exit) => {
          inFlight = false
          ahead = exit
          if (closed) closeAll()
          changes.notify()
        })
      ))
    })

  const take = (length: number): Effect.Effect<Uint8Array, SyscallError> => {
    const got = ahead!
    if (Exit.isFailure(got) || got.value.length <= length) {
      ahead = undefined
      return got
    }
    ahead = Exit.succeed(got.value.subarray(length))
    return Effect.succeed(got.value.subarray(0, length))
  }

  const read = (length: number, nonBlocking: boolean): Effect.Effect<Uint8Array, SyscallError> =>
    Effect.suspend(() => {
      if (ahead !== undefined) return take(length)
      if (length === 0) return Effect.succeed(new Uint8Array(0))
      if (nonBlocking && inFlight) return fail(Errno.AGAIN)
      // Wait for the read on its way (poll's), or for one started now, rather than race it.
      return Effect.zipRight(readAhead(length), Effect.suspend(() => changes.next)).pipe(Effect.zipRight(read(length, nonBlocking)))
    })

  /** All of `data`; the host fd may be blocking, or not: then EAGAIN is waited out. */
  const write = (data: Uint8Array): Effect.Effect<number, SyscallError> => {
    // Copied: the caller's bytes live in the channel, which a killed task's next guest reuses
    // while this write may still be on the pool.
    const bytes = Buffer.from(data)
    let written = 0
    const rest: Effect.Effect<number, SyscallError> = Effect.suspend(() =>
      written === bytes.length ? Effect.succeed(written) : Effect.retry(writeOnPool(hostFd, bytes.subarray(written)), retryAgain).pipe(
        Effect.matchEffect({
          onFailure: (error) => (written > 0 ? Effect.succeed(written) : Effect.fail(error)),
          onSuccess: (n) => {
            written += n
            return rest
          }
        })
      )
    )
    return rest
  }

  const reads: Reads = {
    read: (length, offset, nonBlocking) => (offset === undefined ? read(length, nonBlocking ?? false) : fail(Errno.SPIPE)),
    readiness: {
      // Readiness is not known without reading: poll starts the read that tells.
      ready: (event) => event === "write" || ahead !== undefined,
      changed: Effect.zipRight(readAhead(READ_AHEAD), Effect.suspend(() => changes.next))
    }
  }
  return {
    reads,
    write,
    close: () => {
      // Once: a second close must not close a number the host has given to another file since.
      if (closed) return
      closed = true
      // A read still on the pool has the host fd: it is closed once that read is back.
      if (!inFlight) closeAll()
    }
  }
}

// ---- both ------------------------------------------------------------------------------------

const statOf = (hostFd: number, filetype: FileType): Effect.Effect<Stat, SyscallError> =>
  Effect.try({
    try: (): Stat => ({ ...toStat(Fs.fstatSync(hostFd, { bigint: true })), filetype }),
    catch: fromHostError
  })

const closeFd = (fd: number) => {
  try {
    Fs.closeSync(fd)
  } catch {
    // Already closed: nothing is lost.
  }
}
