/**
 * The sentry's side of the fast paths: which guest fds a worker may serve itself, without a
 * round trip through the channel. The worker's side (platform/worker.ts) reads the tables this
 * module keeps in the channel; the sentry keeps ownership of every description and takes a loan
 * back as soon as the fd changes or its description is shared.
 */
import { FdFlags, Rights } from "@runsc/abi"
import type { DescriptionRefs } from "../fs/fdTable.js"
import type { FileDescription } from "../fs/inode.js"
import type { ThreadGroup } from "../task/threadGroup.js"
import { FAST_NONBLOCK, FAST_WRITE_FDS } from "./channel.js"
import type { GuestThread } from "./pool.js"

/**
 * Publishes which guest fds the worker may serve itself: writes to host stdio, and reads of a
 * read-only host file while that fd alone refers to its description (the worker then owns
 * the offset, in the channel; a dup, an inheriting child or a change of the fd takes it back).
 * With `enabled` false (strace, which must see every call) it lends nothing.
 */
export const lendFastPaths = (tg: ThreadGroup, worker: GuestThread, descriptionRefs: DescriptionRefs, enabled: boolean): void => {
  const { fastRead, fastReadPosition, fastWrite } = worker.channel
  fastWrite.fill(0)
  fastRead.fill(0)
  if (!enabled) return
  const lent: Array<{ readonly description: FileDescription; readonly watch: { readonly cancel: () => void } } | undefined> = []
  const takeBack = (fd: number) => {
    const loan = lent[fd]
    if (loan === undefined) return
    lent[fd] = undefined
    fastRead[fd] = 0
    loan.watch.cancel()
    loan.description.workerReadable!.unshare()
  }
  tg.fdTable.observe((fd, entry) => {
    if (fd >= FAST_WRITE_FDS) return
    const hostFd = entry?.description.passthroughHostFd
    // An APPEND fd writes through the sentry, which appends (the host fd may not be O_APPEND).
    fastWrite[fd] = hostFd === undefined || (entry!.rightsBase & Rights.FD_WRITE) === 0n || (entry!.flags & FdFlags.APPEND) !== 0 ? 0
      : (hostFd + 1) | ((entry!.flags & FdFlags.NONBLOCK) !== 0 ? FAST_NONBLOCK : 0)
    takeBack(fd)
    const readable = entry?.description.workerReadable
    if (readable === undefined || (entry!.rightsBase & Rights.FD_READ) === 0n || !descriptionRefs.exclusive(entry!.description)) return
    readable.share(fastReadPosition, fd)
    fastRead[fd] = (readable.hostFd + 1) | ((entry!.flags & FdFlags.NONBLOCK) !== 0 ? FAST_NONBLOCK : 0)
    lent[fd] = { description: entry!.description, watch: descriptionRefs.whenShared(entry!.description, () => takeBack(fd)) }
  })
}
