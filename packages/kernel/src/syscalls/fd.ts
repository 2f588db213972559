/**
 * The fd family: calls on an open file descriptor (read, write, seek, stat, sync, the preopen
 * calls, readdir). Each decodes its arguments through its declaration (platform/syscallAbi.ts)
 * and validates in the order Linux does (fd, then rights), so a guest sees the errno it would
 * see on Linux, with WASI's NOTCAPABLE where rights are missing.
 */
import { Errno, FdFlags, FileType, Layout, PreopenType, Rights, SIGPIPE, Whence } from "@runsc/abi"
import { Effect, Either, Exit } from "effect"
import { fail } from "../errors.js"
import type { FdEntry } from "../fs/fdTable.js"
import { type FileDescription, statOf } from "../fs/inode.js"
import { DATA_SIZE } from "../platform/channel.js"
import { args, results } from "../platform/syscallAbi.js"
import { eitherNow, flatMapNow, fnNow, mapNow } from "../settled.js"
import { blocking, type Handler, setPayload, setPayloadLength, type SyscallContext } from "./context.js"
import { putFilestat, requestedTimes } from "./filestat.js"
import { Listings } from "./listings.js"
import { entryWith, isNonBlocking } from "./lookup.js"

// Each call's accessors, looked up once (see platform/syscallAbi.ts).
const FdWriteArgs = args.fd_write
const FdWriteResults = results.fd_write
const FdPwriteArgs = args.fd_pwrite
const FdPwriteResults = results.fd_pwrite
const FdPreadArgs = args.fd_pread
const FdReadArgs = args.fd_read
const FdPreadResults = results.fd_pread
const FdReadResults = results.fd_read
const FdCloseArgs = args.fd_close
const FdSeekArgs = args.fd_seek
const FdSeekResults = results.fd_seek
const FdTellArgs = args.fd_tell
const FdTellResults = results.fd_tell
const FdFdstatGetArgs = args.fd_fdstat_get
const FdFdstatSetFlagsArgs = args.fd_fdstat_set_flags
const FdFdstatSetRightsArgs = args.fd_fdstat_set_rights
const FdFilestatGetArgs = args.fd_filestat_get
const FdPrestatGetArgs = args.fd_prestat_get
const FdPrestatDirNameArgs = args.fd_prestat_dir_name
const FdReaddirArgs = args.fd_readdir
const FdReaddirResults = results.fd_readdir
const FdRenumberArgs = args.fd_renumber
const FdDatasyncArgs = args.fd_datasync
const FdSyncArgs = args.fd_sync
const FdFilestatSetSizeArgs = args.fd_filestat_set_size
const FdAllocateArgs = args.fd_allocate
const FdFilestatSetTimesArgs = args.fd_filestat_set_times
const FdAdviseArgs = args.fd_advise

const encoder = new TextEncoder()


const written = FdWriteResults.nwritten

// The hottest calls (writes, reads, seeks, fstat) are plain functions over settled effects
// in their common case, with no generator per call (see settled.ts); their rarer cases are
// generator functions made once.

const fd_write: Handler = (c) =>
  flatMapNow(entryWith(c, FdWriteArgs.fd(c), Rights.FD_WRITE), (entry) => {
    // Gathered iovecs are at the start of the data area (iovecsIn).
    const data = c.channel.data.subarray(0, FdWriteArgs.iovs.length(c))
    if (entry.description.filetype === FileType.REGULAR_FILE && (entry.flags & FdFlags.APPEND) === 0) {
      return mapNow(entry.description.write(data, undefined, isNonBlocking(entry)), (n) => written(c, n))
    }
    return writeAppendingOrStream(c, entry, data)
  })

/** fd_write on an APPEND fd or to a stream. */
const writeAppendingOrStream = fnNow(function*(c: SyscallContext, entry: FdEntry, data: Uint8Array) {
  // APPEND (set at the open or later): the write goes at the end, in one O_APPEND write where
  // the host's other writers could come between a seek and a write.
  if ((entry.flags & FdFlags.APPEND) !== 0 && entry.description.filetype === FileType.REGULAR_FILE) {
    if (entry.description.append !== undefined) return written(c, yield* entry.description.append(data))
    yield* entry.description.seek(0n, Whence.END)
  }
  const write = entry.description.write(data, undefined, isNonBlocking(entry))
  // Files answer; streams (pipes) may wait for their reader to make room.
  const outcome = yield* eitherNow(entry.description.filetype === FileType.REGULAR_FILE ? write : blocking(c, write))
  if (Either.isRight(outcome)) return written(c, outcome.right)
  // A write with no reader left raises SIGPIPE (whose default action ends the writer).
  if (outcome.left.errno === Errno.PIPE) yield* c.raise(SIGPIPE)
  return yield* fail(outcome.left.errno)
})

const pwritten = FdPwriteResults.nwritten

const fd_pwrite: Handler = (c) =>
  flatMapNow(entryWith(c, FdPwriteArgs.fd(c), Rights.FD_WRITE | Rights.FD_SEEK), (entry) => {
    if (entry.description.filetype !== FileType.REGULAR_FILE) return fail(Errno.SPIPE)
    const offset = FdPwriteArgs.offset(c)
    if (offset < 0n) return fail(Errno.INVAL)
    const data = c.channel.data.subarray(0, FdPwriteArgs.iovs.length(c))
    if ((entry.flags & FdFlags.APPEND) === 0) return mapNow(entry.description.write(data, offset), (n) => pwritten(c, n))
    return pwriteAppending(c, entry, data)
  })

/**
 * fd_pwrite on an APPEND fd: Linux's pwrite appends all the same (pwrite(2), BUGS), and so does
 * node:wasi; the fd's offset stays where it was.
 */
const pwriteAppending = fnNow(function*(c: SyscallContext, entry: FdEntry, data: Uint8Array) {
  if (entry.description.append === undefined) return pwritten(c, yield* entry.description.write(data, (yield* statOf(entry.description)).size))
  const offset = yield* entry.description.seek(0n, Whence.CUR)
  const written = yield* entry.description.append(data)
  yield* entry.description.seek(offset, Whence.SET)
  pwritten(c, written)
})

/** fd_read, or fd_pread (`positional`: the offset is an argument, the fd's own stays). */
const read = (positional: boolean): Handler => {
  const Read = positional ? FdPreadArgs : FdReadArgs
  const nread = positional ? FdPreadResults.nread : FdReadResults.nread
  const rights = positional ? Rights.FD_READ | Rights.FD_SEEK : Rights.FD_READ
  const copyOut = (c: SyscallContext) => (bytes: Uint8Array) => {
    c.channel.data.set(bytes)
    nread(c, bytes.length)
  }
  return (c) =>
    flatMapNow(entryWith(c, Read.fd(c), rights), (entry) => {
      if (positional && entry.description.filetype !== FileType.REGULAR_FILE) return fail(Errno.SPIPE)
      const offset = positional ? FdPreadArgs.offset(c) : undefined
      if (offset !== undefined && offset < 0n) return fail(Errno.INVAL)
      const length = Math.min(Read.iovs(c), DATA_SIZE)
      // A file that can read straight into the channel spares a buffer and a copy per call.
      if (entry.description.readInto !== undefined) return mapNow(entry.description.readInto(c.channel.data.subarray(0, length), offset), (n) => nread(c, n))
      const read = entry.description.read(length, offset, isNonBlocking(entry))
      // Files answer; streams (stdin, pipes) wait for whoever writes them.
      return mapNow(entry.description.filetype === FileType.REGULAR_FILE ? read : blocking(c, read), copyOut(c))
    })
}

const fd_close: Handler = (c) => c.tg.fdTable.close(FdCloseArgs.fd(c))

const newOffset = FdSeekResults.newOffset

const fd_seek: Handler = (c) => {
  const whence = FdSeekArgs.whence(c)
  const delta = FdSeekArgs.offset(c)
  // lseek(fd, 0, SEEK_CUR) is how fd_tell is spelled in C; it needs only FD_TELL.
  const rights = delta === 0n && whence === 1 ? Rights.FD_TELL : Rights.FD_SEEK
  return flatMapNow(entryWith(c, FdSeekArgs.fd(c), rights), (entry) => mapNow(entry.description.seek(delta, whence), (at) => newOffset(c, at)))
}

const fd_tell: Handler = (c) =>
  flatMapNow(entryWith(c, FdTellArgs.fd(c), Rights.FD_TELL), (entry) => mapNow(entry.description.seek(0n, 1), (at) => FdTellResults.offset(c, at)))

// Plain, not a generator: the call every isatty(), fcntl() and open() makes (see settled.ts).
const fd_fdstat_get: Handler = (c) => {
  const entry = c.tg.fdTable.lookup(FdFdstatGetArgs.fd(c))
  if (entry === undefined) return fail(Errno.BADF)
  const v = c.channel.dataView
  const L = Layout.fdstat
  v.setBigUint64(0, 0n, true)
  v.setUint8(L.filetype, entry.description.filetype)
  v.setUint16(L.flags, entry.flags, true)
  v.setBigUint64(L.rightsBase, entry.rightsBase, true)
  v.setBigUint64(L.rightsInheriting, entry.rightsInheriting, true)
  setPayloadLength(c, L.sizeOf)
  return Exit.void
}

const fd_fdstat_set_flags: Handler = fnNow(function*(c: SyscallContext) {
  const fd = FdFdstatSetFlagsArgs.fd(c)
  const flags = FdFdstatSetFlagsArgs.flags(c)
  const entry = yield* entryWith(c, fd, Rights.FD_FDSTAT_SET_FLAGS)
  if ((flags & ~(FdFlags.APPEND | FdFlags.DSYNC | FdFlags.NONBLOCK | FdFlags.RSYNC | FdFlags.SYNC)) !== 0) {
    return yield* fail(Errno.INVAL)
  }
  c.tg.fdTable.update(fd, { ...entry, flags })
})

const fd_fdstat_set_rights: Handler = fnNow(function*(c: SyscallContext) {
  const SetRights = FdFdstatSetRightsArgs
  const fd = SetRights.fd(c)
  const base = BigInt.asUintN(64, SetRights.rightsBase(c))
  const inheriting = BigInt.asUintN(64, SetRights.rightsInheriting(c))
  const entry = yield* entryWith(c, fd, 0n)
  // Rights can only be dropped.
  if ((base & ~entry.rightsBase) !== 0n || (inheriting & ~entry.rightsInheriting) !== 0n) {
    return yield* fail(Errno.NOTCAPABLE)
  }
  c.tg.fdTable.update(fd, { ...entry, rightsBase: base, rightsInheriting: inheriting })
})

const fd_filestat_get: Handler = (c) =>
  flatMapNow(entryWith(c, FdFilestatGetArgs.fd(c), Rights.FD_FILESTAT_GET), (entry) => mapNow(statOf(entry.description), (st) => putFilestat(c, st)))

const fd_prestat_get: Handler = fnNow(function*(c: SyscallContext) {
  const entry = yield* entryWith(c, FdPrestatGetArgs.fd(c), 0n)
  if (entry.preopen === undefined) return yield* fail(Errno.BADF)
  const v = c.channel.dataView
  v.setUint32(0, 0, true)
  v.setUint8(Layout.prestat.tag, PreopenType.DIR)
  v.setUint32(Layout.prestat.nameLen, encoder.encode(entry.preopen).length, true)
  setPayloadLength(c, Layout.prestat.sizeOf)
})

const fd_prestat_dir_name: Handler = fnNow(function*(c: SyscallContext) {
  const entry = yield* entryWith(c, FdPrestatDirNameArgs.fd(c), 0n)
  if (entry.preopen === undefined) return yield* fail(Errno.BADF)
  const name = encoder.encode(entry.preopen)
  if (FdPrestatDirNameArgs.name(c) < name.length) return yield* fail(Errno.NAMETOOLONG)
  setPayload(c, name)
})

/**
 * fd_readdir. `listings` holds the listing of each open directory description (one table per
 * kernel), so that cookies stay stable between calls; cookie 0 takes a fresh listing, and so
 * does a call whose listing was let go (listings.ts).
 */
const readdir = (listings: Listings): Handler =>
  fnNow(function*(c: SyscallContext) {
    const entry = yield* entryWith(c, FdReaddirArgs.fd(c), Rights.FD_READDIR)
    const dentry = entry.dentry
    if (dentry === undefined) return yield* fail(Errno.NOTDIR)
    const cookie = BigInt.asUintN(64, FdReaddirArgs.cookie(c))
    let listing = listings.get(entry.description)
    if (listing === undefined || cookie === 0n) {
      const self = yield* statOf(dentry.inode)
      const parent = yield* statOf(dentry.parent.inode)
      const listed = yield* dentry.inode.readdir
      // A mount point the tree lacks (no /proc in the rootfs) is listed all the same.
      const mountPoints: Array<{ readonly name: string; readonly ino: bigint; readonly filetype: FileType }> = []
      for (const [name, inode] of dentry.mountedChildren) {
        if (!listed.some((e) => e.name === name)) mountPoints.push({ name, ino: (yield* statOf(inode)).ino, filetype: inode.filetype })
      }
      const children = [...listed, ...mountPoints]
      listing = [
        { name: encoder.encode("."), ino: self.ino, filetype: FileType.DIRECTORY },
        { name: encoder.encode(".."), ino: parent.ino, filetype: FileType.DIRECTORY },
        ...children.map((e) => ({ name: encoder.encode(e.name), ino: e.ino, filetype: e.filetype }))
      ]
      listings.set(entry.description, listing)
    }
    const capacity = Math.min(FdReaddirArgs.buf(c), DATA_SIZE)
    const record = new Uint8Array(Layout.dirent.sizeOf + 256)
    const rv = new DataView(record.buffer)
    let used = 0
    // Records are packed back to back; the last one is cut at the buffer's end, and a full
    // buffer tells the guest to call again from the cookie of its last whole record.
    for (let i = Number(cookie); i < listing.length && used < capacity; i++) {
      const e = listing[i]!
      const size = Layout.dirent.sizeOf + e.name.length
      const bytes = size <= record.length ? record : new Uint8Array(size)
      const view = bytes === record ? rv : new DataView(bytes.buffer)
      view.setBigUint64(Layout.dirent.next, BigInt(i + 1), true)
      view.setBigUint64(Layout.dirent.ino, e.ino, true)
      view.setUint32(Layout.dirent.namlen, e.name.length, true)
      view.setUint32(Layout.dirent.type, e.filetype, true)
      bytes.set(e.name, Layout.dirent.sizeOf)
      const take = Math.min(size, capacity - used)
      c.channel.data.set(bytes.subarray(0, take), used)
      used += take
    }
    FdReaddirResults.bufused(c, used)
  })

const fd_renumber: Handler = (c) => c.tg.fdTable.renumber(FdRenumberArgs.fd(c), FdRenumberArgs.to(c))

/** fd_sync, fd_datasync: reach the host file where one backs the fd; elsewhere the data is already where it lives. */
const sync = (rights: bigint, dataOnly: boolean): Handler => {
  const fd = dataOnly ? FdDatasyncArgs.fd : FdSyncArgs.fd
  return (c) => flatMapNow(entryWith(c, fd(c), rights), (entry) => entry.description.sync?.(dataOnly) ?? Effect.void)
}

/** A change through an open fd: what its description offers, EISDIR on a directory, else EROFS. */
const fdChange = <K extends "setSize" | "allocate" | "setTimes">(c: SyscallContext, fd: number, rights: bigint, kind: K) =>
  flatMapNow(entryWith(c, fd, rights), (entry) => {
    const change = entry.description[kind]
    if (change !== undefined) return Effect.succeed(change as NonNullable<FileDescription[K]>)
    return fail(entry.description.filetype === FileType.DIRECTORY ? Errno.ISDIR : Errno.ROFS)
  })

const fd_filestat_set_size: Handler = (c) =>
  flatMapNow(
    fdChange(c, FdFilestatSetSizeArgs.fd(c), Rights.FD_FILESTAT_SET_SIZE, "setSize"),
    (setSize) => setSize(BigInt.asUintN(64, FdFilestatSetSizeArgs.size(c)))
  )

const fd_allocate: Handler = (c) =>
  flatMapNow(fdChange(c, FdAllocateArgs.fd(c), Rights.FD_ALLOCATE, "allocate"), (allocate) => {
    const offset = BigInt.asUintN(64, FdAllocateArgs.offset(c))
    const length = BigInt.asUintN(64, FdAllocateArgs.length(c))
    return length === 0n ? fail(Errno.INVAL) : allocate(offset, length)
  })

const fd_filestat_set_times: Handler = fnNow(function*(c: SyscallContext) {
  const SetTimes = FdFilestatSetTimesArgs
  const setTimes = yield* fdChange(c, SetTimes.fd(c), Rights.FD_FILESTAT_SET_TIMES, "setTimes")
  const { atim, mtim } = yield* requestedTimes(SetTimes.fstFlags(c), SetTimes.atim(c), SetTimes.mtim(c))
  yield* setTimes(atim, mtim)
})

/** The fd family's handlers (fd_readdir's is made per kernel, see `makeReaddir`). */
export const fdHandlers = {
  fd_advise: (c) => {
    const Advise = FdAdviseArgs
    return flatMapNow(entryWith(c, Advise.fd(c), Rights.FD_ADVISE), () => Advise.advice(c) > 5 ? fail(Errno.INVAL) : Effect.void)
  },
  fd_allocate,
  fd_close,
  fd_datasync: sync(Rights.FD_DATASYNC, true),
  fd_fdstat_get,
  fd_fdstat_set_flags,
  fd_fdstat_set_rights,
  fd_filestat_get,
  fd_filestat_set_size,
  fd_filestat_set_times,
  fd_pread: read(true),
  fd_prestat_get,
  fd_prestat_dir_name,
  fd_pwrite,
  fd_read: read(false),
  fd_renumber,
  fd_seek,
  fd_sync: sync(Rights.FD_SYNC, false),
  fd_tell,
  fd_write
} as const satisfies Record<string, Handler>

/** fd_readdir with its own table of listings (one per kernel). */
export const makeReaddir = (listings = new Listings()): Handler => readdir(listings)
