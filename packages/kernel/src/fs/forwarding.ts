/**
 * A description that stands for another: the overlay's view of a layer's file, a reopened fd
 * (/dev/stdin). It does what the other does, members bound to it, except what `overrides` says.
 *
 * `lendable` is never forwarded: lending a file to a guest's worker counts the fds of
 * the description itself (see platform/lendFastPaths.ts), so only a wrapper that is that
 * description's sole user may pass it on, explicitly.
 */
import type { FileDescription } from "./inode.js"

export const forwarding = (description: FileDescription, overrides: Partial<FileDescription> = {}): FileDescription => {
  const { allocate, append, isTerminal, passthroughHostFd, readiness, setSize, setTimes, sync, terminal } = description
  return {
    filetype: description.filetype,
    read: (length, offset, nonBlocking) => description.read(length, offset, nonBlocking),
    write: (data, offset, nonBlocking) => description.write(data, offset, nonBlocking),
    seek: (delta, whence) => description.seek(delta, whence),
    stat: description.stat,
    close: description.close,
    // The settled forms go with what they stand for: not forwarded where that is overridden.
    ...(description.statNow !== undefined && overrides.stat === undefined ? { statNow: () => description.statNow!() } : {}),
    ...(description.closeNow !== undefined && overrides.close === undefined ? { closeNow: () => description.closeNow!() } : {}),
    ...(description.readInto !== undefined ? { readInto: (target: Uint8Array, offset?: bigint) => description.readInto!(target, offset) } : {}),
    ...(readiness !== undefined ? { readiness } : {}),
    ...(terminal !== undefined ? { terminal } : {}),
    ...(isTerminal !== undefined ? { isTerminal } : {}),
    ...(passthroughHostFd !== undefined ? { passthroughHostFd } : {}),
    ...(setSize !== undefined ? { setSize } : {}),
    ...(allocate !== undefined ? { allocate } : {}),
    ...(setTimes !== undefined ? { setTimes } : {}),
    ...(sync !== undefined ? { sync } : {}),
    ...(append !== undefined ? { append } : {}),
    ...overrides
  }
}
