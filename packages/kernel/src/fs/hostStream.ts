/**
 * Host stdio passthrough: an fd of the sandbox process (stdin/stdout/stderr of `runsc run`)
 * handed to the guest as one of its fds. Writes go straight to the host fd; reads wait on the
 * host without blocking the sentry's event loop.
 */
import { Errno, FileType } from "@runsc/abi"
import { Effect, Schedule } from "effect"
import * as Fs from "node:fs"
import { fromHostError, SyscallError } from "../errors.js"
import { fileTypeOf, toStat } from "./host.js"
import type { FileDescription, Stat } from "./inode.js"

const fail = (errno: Errno) => Effect.fail(new SyscallError({ errno }))

// A host pipe or tty opened non-blocking by someone else reports EAGAIN; the sentry polls it
// instead of parking a libuv thread on it.
const retryAgain = Schedule.spaced("5 millis").pipe(
  Schedule.whileInput((e: SyscallError) => e.errno === Errno.AGAIN)
)

export const hostStream = (hostFd: number): FileDescription => {
  const hostType = (() => {
    try {
      return fileTypeOf(Fs.fstatSync(hostFd))
    } catch {
      return FileType.UNKNOWN
    }
  })()
  // Pipes and sockets have no WASI type of their own; they are streams, never seekable.
  const filetype = hostType === FileType.REGULAR_FILE || hostType === FileType.CHARACTER_DEVICE ? hostType : FileType.UNKNOWN
  const readOnce = (length: number): Effect.Effect<Uint8Array, SyscallError> =>
    Effect.async<Uint8Array, SyscallError>((resume) => {
      const buffer = Buffer.allocUnsafe(length)
      Fs.read(hostFd, buffer, 0, length, null, (error, bytesRead) =>
        resume(error ? Effect.fail(fromHostError(error)) : Effect.succeed(buffer.subarray(0, bytesRead))))
    })
  return {
    filetype,
    passthroughHostFd: hostFd,
    read: (length) => Effect.retry(readOnce(length), retryAgain),
    write: (data) =>
      Effect.try({
        try: () => {
          for (;;) {
            try {
              return Fs.writeSync(hostFd, data)
            } catch (e) {
              if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e
            }
          }
        },
        catch: fromHostError
      }),
    seek: () => fail(Errno.SPIPE),
    stat: Effect.try({
      try: (): Stat => ({ ...toStat(Fs.fstatSync(hostFd, { bigint: true })), filetype }),
      catch: fromHostError
    }),
    // The host fd belongs to the sandbox process, not the guest: closing the guest's fd must
    // not close the sandbox's stdio.
    close: Effect.void
  }
}
