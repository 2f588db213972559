/**
 * The sentry's side of the fast paths: which guest fds a worker may serve itself, without a
 * round trip through the channel. The worker's side (platform/worker.ts, lentFiles.ts) reads the tables this
 * module keeps in the channel; the sentry keeps ownership of every description and takes a loan
 * back as soon as the fd changes or its description is shared.
 */
import { FdFlags, Rights } from "@runsc/abi"
import type { DescriptionRefs, FdEntry } from "../fs/fdTable.js"
import type { FileDescription } from "../fs/inode.js"
import type { ThreadGroup } from "../task/threadGroup.js"
import { FAST_NONBLOCK, FAST_WRITE_FDS, Lent, LENT_HOST_FD } from "./channel.js"
import type { GuestThread } from "./pool.js"

/**
 * Publishes which guest fds the worker may serve itself: writes to host stdio, and a host file
 * or stream while that fd alone refers to its description (the worker then owns the offset, in
 * the channel; a dup, an inheriting child or a change of the fd takes it back). A file is lent
 * for what the fd's rights allow (`Lent`), each call exactly as the sentry would serve it. With
 * `enabled` false (strace, which must see every call) it lends nothing.
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
    loan.description.lendable!.unshare()
  }
  tg.fdTable.observe((fd, entry) => {
    if (fd >= FAST_WRITE_FDS) return
    const hostFd = entry?.description.passthroughHostFd
    // An APPEND fd writes through the sentry, which appends (the host fd may not be O_APPEND).
    fastWrite[fd] = hostFd === undefined || (entry!.rightsBase & Rights.FD_WRITE) === 0n || (entry!.flags & FdFlags.APPEND) !== 0 ? 0
      : (hostFd + 1) | ((entry!.flags & FdFlags.NONBLOCK) !== 0 ? FAST_NONBLOCK : 0)
    takeBack(fd)
    const lendable = entry?.description.lendable
    if (lendable === undefined || lendable.hostFd + 1 > LENT_HOST_FD || !descriptionRefs.exclusive(entry!.description)) return
    const allowed = lentRights(entry!, lendable)
    if (allowed === 0) return
    lendable.share(fastReadPosition, fd)
    fastRead[fd] = (lendable.hostFd + 1) | allowed | ((entry!.flags & FdFlags.NONBLOCK) !== 0 ? FAST_NONBLOCK : 0)
    lent[fd] = { description: entry!.description, watch: descriptionRefs.whenShared(entry!.description, () => takeBack(fd)) }
  })
}

/** The `Lent` bits of `entry`: each call the fd's rights allow and the description can lend. */
const lentRights = (entry: FdEntry, lendable: NonNullable<FileDescription["lendable"]>): number => {
  const has = (right: bigint) => (entry.rightsBase & right) !== 0n
  const file = lendable.file
  if (file === undefined) return has(Rights.FD_READ) ? Lent.READ : 0
  return (has(Rights.FD_READ) && file.readable ? Lent.READ : 0) |
    (has(Rights.FD_WRITE) && file.writable && (entry.flags & FdFlags.APPEND) === 0 ? Lent.WRITE : 0) |
    (has(Rights.FD_SEEK) ? Lent.SEEK : 0) |
    (has(Rights.FD_TELL) ? Lent.TELL : 0) |
    (has(Rights.FD_FILESTAT_GET) && file.hostStat ? Lent.STAT : 0)
}
