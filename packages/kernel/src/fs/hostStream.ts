/**
 * Host stdio passthrough: an fd of the sandbox process (stdin/stdout/stderr of `runsc run`)
 * handed to the guest as one of its fds. Writes go straight to the host fd; reads wait on the
 * host without blocking the sentry's event loop, and poll_oneoff waits until a stream has
 * something to read.
 */
import { Errno, FileType } from "@runsc/abi"
import { Effect, Exit, Schedule } from "effect"
import * as Fs from "node:fs"
import { Changes } from "../changes.js"
import { fail, fromHostError, type SyscallError } from "../errors.js"
import { fileTypeOf, toStat } from "./host.js"
import type { FileDescription, Stat } from "./inode.js"

/**
 * pread on a host fd. The callback `fs.read` is used because it honours a bigint position;
 * FileHandle.read silently treats one as "the current position", and a number loses offsets
 * past 2^53. Asynchronous, because a stream's read may wait.
 */
const readAt = (fd: number, length: number, position: bigint | null): Effect.Effect<Uint8Array, SyscallError> =>
  Effect.async<Uint8Array, SyscallError>((resume) => {
    const buffer = Buffer.allocUnsafe(length)
    Fs.read(fd, buffer, 0, length, position as number | null, (error, bytesRead) =>
      resume(error ? Effect.fail(fromHostError(error)) : Effect.succeed(buffer.subarray(0, bytesRead))))
  })

// A host pipe or tty opened non-blocking by someone else reports EAGAIN (nothing to read, or
// no room to write); the sentry polls it instead of parking a libuv thread or its own thread.
const retryAgain = Schedule.spaced("5 millis").pipe(
  Schedule.whileInput((e: SyscallError) => e.errno === Errno.AGAIN)
)

export interface HostStreamOptions {
  /**
   * The description owns the host fd and closes it with itself (an fd the sandbox opened for a
   * process, e.g. a path a control call named). By default the fd is the sandbox process's own
   * stdio and outlives the description.
   */
  readonly owned?: boolean
}

export const hostStream = (hostFd: number, options: HostStreamOptions = {}): FileDescription => {
  const hostType = (() => {
    try {
      return fileTypeOf(Fs.fstatSync(hostFd))
    } catch {
      return FileType.UNKNOWN
    }
  })()
  // Pipes and sockets have no WASI type of their own; they are streams, never seekable.
  const filetype = hostType === FileType.REGULAR_FILE || hostType === FileType.CHARACTER_DEVICE ? hostType : FileType.UNKNOWN
  // Without an offset, reads and writes use (and move) the host fd's own offset, which the
  // sandbox process may share with others (`> log 2>&1`); with one, they are positional.
  const positional = (offset: bigint | undefined): Effect.Effect<bigint | null, SyscallError> => {
    if (offset === undefined) return Effect.succeed(null)
    return filetype === FileType.REGULAR_FILE ? Effect.succeed(offset) : fail(Errno.SPIPE)
  }
  const readHost = (length: number, at: bigint | null) => Effect.retry(readAt(hostFd, length, at), retryAgain)
  if (filetype === FileType.REGULAR_FILE) {
    return { ...common(hostFd, filetype, positional, options), read: (length, offset) => Effect.flatMap(positional(offset), (at) => readHost(length, at)) }
  }
  // A stream (pipe, tty) can tell poll_oneoff when it has something to read: poll starts a read
  // of its own, and what that read brings (data, end of file, an error) waits here for the next
  // read. Only one host read is ever in flight, so bytes keep their order.
  let ahead: Exit.Exit<Uint8Array, SyscallError> | undefined
  let inFlight = false
  const changes = new Changes()
  const readAhead = Effect.suspend(() => {
    if (inFlight || ahead !== undefined) return Effect.void
    inFlight = true
    return Effect.forkDaemon(Effect.exit(readHost(READ_AHEAD, null)).pipe(
      Effect.map((exit) => {
        inFlight = false
        ahead = exit
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
  const read = (length: number): Effect.Effect<Uint8Array, SyscallError> =>
    Effect.suspend(() => {
      if (ahead !== undefined) return take(length)
      // Poll's read is on its way: wait for it rather than race it.
      if (inFlight) return Effect.zipRight(changes.next, read(length))
      return readHost(length, null)
    })
  return {
    ...common(hostFd, filetype, positional, options),
    read: (length, offset) => (offset === undefined ? read(length) : fail(Errno.SPIPE)),
    readiness: {
      // Write readiness is not known without writing: a write waits instead (as for files).
      ready: (event) => event === "write" || ahead !== undefined,
      changed: Effect.zipRight(readAhead, Effect.suspend(() => changes.next))
    }
  }
}

/** Bytes poll's read takes from a host stream at most. */
const READ_AHEAD = 64 * 1024

/** What a host stdio description does besides reading. */
const common = (
  hostFd: number,
  filetype: FileType,
  positional: (offset: bigint | undefined) => Effect.Effect<bigint | null, SyscallError>,
  options: HostStreamOptions
): Omit<FileDescription, "read"> => ({
  filetype,
    passthroughHostFd: hostFd,
    write: (data, offset) =>
      Effect.flatMap(positional(offset), (at) =>
        // writeSync takes only a number position (a bigint one is ignored): past 2^53 is EFBIG.
        at !== null && at > BigInt(Number.MAX_SAFE_INTEGER) ? fail(Errno.FBIG) : Effect.retry(
          Effect.try({
            try: () => Fs.writeSync(hostFd, data, 0, data.length, at === null ? null : Number(at)),
            catch: fromHostError
          }),
          // A full non-blocking pipe: wait for the reader without holding the sentry's thread.
          retryAgain
        )),
    // Node exposes no lseek: the host fd's offset can be neither read nor moved.
    seek: () => fail(Errno.SPIPE),
    stat: Effect.try({
      try: (): Stat => ({ ...toStat(Fs.fstatSync(hostFd, { bigint: true })), filetype }),
      catch: fromHostError
    }),
    // Unless owned, the host fd belongs to the sandbox process, not the guest: closing the
    // guest's fd must not close the sandbox's stdio.
    close: options.owned
      ? Effect.sync(() => {
        try {
          Fs.closeSync(hostFd)
        } catch {
          // Already closed: nothing is lost.
        }
      })
      : Effect.void
})
