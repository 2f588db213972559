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
import { fail, fromHostError, GoferUnavailable, type SyscallError } from "../errors.js"
import { READ_AT_HOST_OFFSET, READ_VIA_SENTRY } from "../platform/channel.js"
import { failed, loadGoferCore } from "./goferCore.js"
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
    workerReadable: {
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
    close: options.owned ? Effect.sync(() => closeFd(hostFd)) : Effect.void
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

/** A description of the sandbox's own, opened non-blocking, of what a host fd refers to. */
interface OwnDescription {
  readonly fd: number
  readonly readable: boolean
  readonly writable: boolean
}

/**
 * Reopens a pipe or terminal as a description of the sandbox's own, non-blocking, through the
 * gofer's core (goferCore.ts: /proc/self/fd, with the host fd's own access mode, O_NOCTTY), which
 * works under Node's permission model too. Undefined where it cannot be reopened (a FIFO without
 * a reader, no core).
 */
const reopenNonBlocking = (hostFd: number): OwnDescription | undefined => {
  const core = loadGoferCore()
  if (core instanceof GoferUnavailable) return undefined
  const reopened = core.reopenStream(hostFd)
  if (failed(reopened)) return undefined
  const [fd, access] = reopened
  return { fd, readable: access !== Fs.constants.O_WRONLY, writable: access !== Fs.constants.O_RDONLY }
}

/** Bytes poll's read takes from a host stream at most. */
const READ_AHEAD = 64 * 1024

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

/**
 * Between attempts on a host fd that is non-blocking (ours, or one someone else made so) and
 * said EAGAIN: soon at first (1 ms, doubling to 4 ms), since a pipe's reader usually makes room
 * or a writer sends more within milliseconds; after a second of that, every 20 ms, so that a
 * long wait (a reader paused, a quiet terminal) costs little.
 */
const retryAgain = Schedule.exponential(Duration.millis(1), 2).pipe(
  Schedule.union(Schedule.spaced(Duration.millis(4))),
  Schedule.upTo(Duration.seconds(1)),
  Schedule.andThen(Schedule.spaced(Duration.millis(20))),
  Schedule.whileInput((e: SyscallError) => e.errno === Errno.AGAIN)
)

const hostStreamOf = (hostFd: number, st: Fs.Stats | undefined, options: HostStreamOptions): FileDescription => {
  const filetype = st?.isCharacterDevice() ? FileType.CHARACTER_DEVICE : FileType.UNKNOWN
  const isTerminal = Tty.isatty(hostFd)
  const memoryDevice = st !== undefined && isMemoryDevice(st)
  const own = st !== undefined && !memoryDevice && (st.isFIFO() || isTerminal) ? reopenNonBlocking(hostFd) : undefined
  /** Where a read or write is tried without waiting: undefined when only the pool can do it. */
  const readNow = memoryDevice ? hostFd : own?.readable ? own.fd : undefined
  const writeNow = memoryDevice ? hostFd : own?.writable ? own.fd : undefined

  // ---- reads: bytes keep their order because only one host read is ever in flight, and the
  // bytes it brings (or its failure, or end of file) are taken before anything is read again.
  let ahead: Exit.Exit<Uint8Array, SyscallError> | undefined
  let inFlight = false
  const changes = new Changes()
  /** Where the guest's worker learns whether it may read `readNow` itself, while it is lent. */
  let lent: { readonly position: BigInt64Array; readonly index: number } | undefined
  const publish = () => {
    if (lent !== undefined) lent.position[lent.index] = ahead !== undefined || inFlight ? READ_VIA_SENTRY : READ_AT_HOST_OFFSET
  }
  let closed = false

  /** A read that does not wait: its result, or undefined when it would have to. */
  const tryRead = (length: number): Exit.Exit<Uint8Array, SyscallError> | undefined => {
    if (readNow === undefined) return undefined
    const buffer = Buffer.allocUnsafe(length)
    try {
      return Exit.succeed(buffer.subarray(0, Fs.readSync(readNow, buffer, 0, length, null)))
    } catch (e) {
      const error = fromHostError(e)
      return error.errno === Errno.AGAIN ? undefined : Exit.fail(error)
    }
  }

  /** Starts a host read that may wait; what it brings waits in `ahead` for the next reader. */
  const readAhead = (length: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (inFlight || ahead !== undefined) return Effect.void
      inFlight = true
      publish()
      // The host fd itself, usually blocking: the read waits on the pool, not in a loop here.
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
      publish()
      return got
    }
    ahead = Exit.succeed(got.value.subarray(length))
    return Effect.succeed(got.value.subarray(0, length))
  }

  const read = (length: number, nonBlocking: boolean): Effect.Effect<Uint8Array, SyscallError> =>
    Effect.suspend(() => {
      if (ahead !== undefined) return take(length)
      if (length === 0) return Effect.succeed(new Uint8Array(0))
      if (!inFlight) {
        const now = tryRead(length)
        if (now !== undefined) return now
      }
      // Nothing to read now. Without a description of our own there is no asking without waiting.
      if (nonBlocking && (inFlight || readNow !== undefined)) return fail(Errno.AGAIN)
      // Wait for the read on its way (poll's), or for one started now, rather than race it.
      return Effect.zipRight(readAhead(length), Effect.suspend(() => changes.next)).pipe(Effect.zipRight(read(length, nonBlocking)))
    })

  // ---- writes

  /** All of `data` (O_NONBLOCK: what fits at once), through a non-blocking fd, waiting in between. */
  const writeWithout = (fd: number, data: Uint8Array, nonBlocking: boolean): Effect.Effect<number, SyscallError> => {
    let written = 0
    const attempt: Effect.Effect<number, SyscallError> = Effect.suspend(() => {
      try {
        do written += Fs.writeSync(fd, data, written, data.length - written)
        while (written < data.length && !nonBlocking)
        return Effect.succeed(written)
      } catch (e) {
        const error = fromHostError(e)
        // What went in before a failure is what the write did (the next one fails again).
        if (written > 0 && (nonBlocking || error.errno !== Errno.AGAIN)) return Effect.succeed(written)
        return Effect.fail(error)
      }
    })
    return nonBlocking ? attempt : Effect.retry(attempt, retryAgain)
  }

  /** All of `data`, through libuv's pool (the host fd may be blocking, or not: then EAGAIN is waited out). */
  const writeOnPoolInWhole = (data: Uint8Array): Effect.Effect<number, SyscallError> => {
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

  /** Our own description always; the host fd only if owned (else it is the sandbox's stdio). */
  const closeAll = () => {
    if (own !== undefined) closeFd(own.fd)
    if (options.owned) closeFd(hostFd)
  }

  return {
    filetype,
    ...(isTerminal ? { isTerminal } : {}),
    // What the guest's worker writes to itself: never blocking where we have a fd that is not.
    passthroughHostFd: writeNow ?? hostFd,
    read: (length, offset, nonBlocking) => (offset === undefined ? read(length, nonBlocking ?? false) : fail(Errno.SPIPE)),
    write: (data, offset, nonBlocking) => {
      if (offset !== undefined) return fail(Errno.SPIPE)
      return writeNow !== undefined ? writeWithout(writeNow, data, nonBlocking ?? false) : writeOnPoolInWhole(data)
    },
    ...(readNow !== undefined
      ? {
        workerReadable: {
          hostFd: readNow,
          share: (position: BigInt64Array, index: number) => {
            lent = { position, index }
            publish()
          },
          unshare: () => {
            lent = undefined
          }
        }
      }
      : {}),
    readiness: {
      // Write readiness is not known without writing: a write waits instead (as for files).
      ready: (event) => {
        if (event === "write" || ahead !== undefined) return true
        if (inFlight) return false
        ahead = tryRead(READ_AHEAD)
        publish()
        return ahead !== undefined
      },
      changed: Effect.zipRight(readAhead(READ_AHEAD), Effect.suspend(() => changes.next))
    },
    // A memory device's offset is always 0, as Linux's are; nothing else here can seek.
    seek: (_delta, whence) =>
      !memoryDevice ? fail(Errno.SPIPE)
      : whence === Whence.SET || whence === Whence.CUR || whence === Whence.END ? Effect.succeed(0n)
      : fail(Errno.INVAL),
    stat: statOf(hostFd, filetype),
    close: Effect.sync(() => {
      closed = true
      // A read still on the pool has the host fd: it is closed once that read is back.
      if (!inFlight) closeAll()
    })
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
