/**
 * Host stdio passthrough: an fd of the sandbox process (stdin/stdout/stderr of `runsc run`)
 * handed to the guest as one of its fds. Writes go straight to the host fd; reads wait on the
 * host without blocking the sentry's event loop.
 */
import { Errno, FileType } from "@runsc/abi"
import { Effect, Schedule } from "effect"
import * as Fs from "node:fs"
import { fail, fromHostError, type SyscallError } from "../errors.js"
import { fileTypeOf, readAt, toStat } from "./host.js"
import type { FileDescription, Stat } from "./inode.js"

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
  return {
    filetype,
    passthroughHostFd: hostFd,
    read: (length, offset) => Effect.flatMap(positional(offset), (at) => Effect.retry(readAt(hostFd, length, at), retryAgain)),
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
  }
}
