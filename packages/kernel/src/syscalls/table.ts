/**
 * The syscall table: one handler per `wasi_snapshot_preview1` function, indexed by syscall
 * number. Calls served inside the worker (clocks, random, argv/environ, sched_yield) never get
 * here. Handlers validate in the order Linux does (fd, then rights, then path), so a guest sees
 * the errno it would see on Linux, with WASI's NOTCAPABLE where rights are missing.
 *
 * Paths given to `path_*` calls are WASI's, not Linux's: relative to their directory fd and
 * resolved beneath it (`guestPath`, `resolve`'s `beneath`), so an absolute path or a step above
 * the fd is NOTCAPABLE, as wasmtime and uvwasi answer; only the container's root, whose `..` is
 * itself, behaves as Linux's `/` does.
 *
 * A change lands where the directory's filesystem takes it (the overlay root, tmpfs); a
 * read-only one (a `root.readonly` root, `ro` bind mounts, procfs, devfs) refuses with EROFS once
 * fd and path have been checked, as a read-only mount does.
 */
import {
  ClockId,
  DIRECTORY_RIGHTS,
  Errno,
  EventType,
  FdFlags,
  FILE_RIGHTS,
  FileType,
  FstFlags,
  isValidSignal,
  signalFromWasi,
  Layout,
  LookupFlags,
  OFlags,
  PreopenType,
  Rights,
  SubclockFlags,
  SIGPIPE,
  type SyscallName,
  Whence,
  syscallNames
} from "@runsc/abi"
import { Clock, Duration, Effect, Either } from "effect"
import { fail, type SyscallError } from "../errors.js"
import type { FdEntry } from "../fs/fdTable.js"
import { type FileDescription, type Stat, statOf } from "../fs/inode.js"
import { type Dentry, MAX_SYMLINK_TRAVERSALS, NAME_MAX, resolveNow } from "../fs/resolve.js"
import { DATA_SIZE } from "../platform/channel.js"
import {
  blocking,
  type Handler,
  i64,
  pathAt,
  setPayload,
  setPayloadLength,
  setResult,
  setResult64,
  type SyscallContext,
  u32
} from "./context.js"
import { memory_grow } from "./memory.js"
import { eitherNow, flatMapNow, genNow, mapNow } from "../settled.js"
import { processHandlers } from "./process.js"

// ---- fd and rights checks --------------------------------------------------------------------

/** The entry for `fd`, which must carry every right in `rights` (BADF, then NOTCAPABLE). */
const entryWith = (c: SyscallContext, fd: number, rights: bigint): Effect.Effect<FdEntry, SyscallError> => {
  const entry = c.tg.fdTable.lookup(fd)
  if (entry === undefined) return fail(Errno.BADF)
  if ((entry.rightsBase & rights) !== rights) return fail(Errno.NOTCAPABLE)
  return Effect.succeed(entry)
}

/** A directory fd usable as the base of a path lookup. */
const baseDirectory = (c: SyscallContext, fd: number, rights: bigint): Effect.Effect<Dentry, SyscallError> =>
  flatMapNow(entryWith(c, fd, rights), (entry) => entry.dentry ? Effect.succeed(entry.dentry) : fail(Errno.NOTDIR))

/**
 * A path argument of a `path_*` call: relative to its directory fd, as WASI has it (wasi-libc
 * turns "/etc/passwd" into the preopen "/" and "etc/passwd"); an absolute one is NOTCAPABLE.
 */
const guestPath = (c: SyscallContext, at: number, length: number): Effect.Effect<string, SyscallError> =>
  flatMapNow(pathAt(c, at, length), (path) => path.startsWith("/") ? fail(Errno.NOTCAPABLE) : Effect.succeed(path))

const lookupPath = (c: SyscallContext, fd: number, rights: bigint, at: number, length: number, follow: boolean) =>
  genNow(function*() {
    const base = yield* baseDirectory(c, fd, rights)
    const path = yield* guestPath(c, at, length)
    return yield* resolveNow(c.tg.root, base, path, { followFinal: follow, beneath: base })
  })

// ---- struct encoders (into the data area) ---------------------------------------------------

const putFilestat = (c: SyscallContext, st: Stat): void => {
  const v = c.channel.dataView
  const L = Layout.filestat
  v.setBigUint64(L.dev, st.dev, true)
  v.setBigUint64(L.ino, st.ino, true)
  v.setUint8(L.filetype, st.filetype)
  for (let i = L.filetype + 1; i < L.nlink; i++) v.setUint8(i, 0)
  v.setBigUint64(L.nlink, st.nlink, true)
  v.setBigUint64(L.size, st.size, true)
  v.setBigUint64(L.atim, st.atim, true)
  v.setBigUint64(L.mtim, st.mtim, true)
  v.setBigUint64(L.ctim, st.ctim, true)
  setPayloadLength(c, L.sizeOf)
}

const encoder = new TextEncoder()

// ---- handlers --------------------------------------------------------------------------------

const isNonBlocking = (entry: FdEntry) => (entry.flags & FdFlags.NONBLOCK) !== 0

const fd_write: Handler = (c) =>
  genNow(function*() {
    const entry = yield* entryWith(c, u32(c, 0), Rights.FD_WRITE)
    const length = u32(c, 1)
    const data = c.channel.data.subarray(0, length)
    // APPEND (set at the open or later): the write goes at the end, in one O_APPEND write where
    // the host's other writers could come between a seek and a write.
    if ((entry.flags & FdFlags.APPEND) !== 0 && entry.description.filetype === FileType.REGULAR_FILE) {
      if (entry.description.append !== undefined) return setResult(c, yield* entry.description.append(data))
      yield* entry.description.seek(0n, Whence.END)
    }
    const write = entry.description.write(data, undefined, isNonBlocking(entry))
    // Files answer; streams (pipes) may wait for their reader to make room.
    const written = yield* eitherNow(entry.description.filetype === FileType.REGULAR_FILE ? write : blocking(c, write))
    if (Either.isRight(written)) return setResult(c, written.right)
    // A write with no reader left raises SIGPIPE (whose default action ends the writer).
    if (written.left.errno === Errno.PIPE) yield* c.raise(SIGPIPE)
    return yield* fail(written.left.errno)
  })

const fd_pwrite: Handler = (c) =>
  genNow(function*() {
    const entry = yield* entryWith(c, u32(c, 0), Rights.FD_WRITE | Rights.FD_SEEK)
    if (entry.description.filetype !== FileType.REGULAR_FILE) return yield* fail(Errno.SPIPE)
    const data = c.channel.data.subarray(0, u32(c, 1))
    // On an APPEND fd Linux's pwrite appends all the same (pwrite(2), BUGS), and so does node:wasi;
    // the fd's offset stays where it was.
    if ((entry.flags & FdFlags.APPEND) === 0) return setResult(c, yield* entry.description.write(data, i64(c, 0)))
    if (entry.description.append === undefined) return setResult(c, yield* entry.description.write(data, (yield* statOf(entry.description)).size))
    const offset = yield* entry.description.seek(0n, Whence.CUR)
    const written = yield* entry.description.append(data)
    yield* entry.description.seek(offset, Whence.SET)
    setResult(c, written)
  })

const read = (positional: boolean): Handler => (c) =>
  genNow(function*() {
    const rights = positional ? Rights.FD_READ | Rights.FD_SEEK : Rights.FD_READ
    const entry = yield* entryWith(c, u32(c, 0), rights)
    if (positional && entry.description.filetype !== FileType.REGULAR_FILE) return yield* fail(Errno.SPIPE)
    const offset = positional ? i64(c, 0) : undefined
    if (offset !== undefined && offset < 0n) return yield* fail(Errno.INVAL)
    const length = Math.min(u32(c, 1), DATA_SIZE)
    // A file that can read straight into the channel spares a buffer and a copy per call.
    if (entry.description.readInto !== undefined) return setResult(c, yield* entry.description.readInto(c.channel.data.subarray(0, length), offset))
    const read = entry.description.read(length, offset, isNonBlocking(entry))
    // Files answer; streams (stdin, pipes) wait for whoever writes them.
    const bytes = yield* (entry.description.filetype === FileType.REGULAR_FILE ? read : blocking(c, read))
    c.channel.data.set(bytes)
    setResult(c, bytes.length)
  })

const fd_close: Handler = (c) => c.tg.fdTable.close(u32(c, 0))

const fd_seek: Handler = (c) =>
  genNow(function*() {
    const whence = u32(c, 1)
    const delta = i64(c, 0)
    // lseek(fd, 0, SEEK_CUR) is how fd_tell is spelled in C; it needs only FD_TELL.
    const rights = delta === 0n && whence === 1 ? Rights.FD_TELL : Rights.FD_SEEK
    const entry = yield* entryWith(c, u32(c, 0), rights)
    setResult64(c, yield* entry.description.seek(delta, whence))
  })

const fd_tell: Handler = (c) =>
  genNow(function*() {
    const entry = yield* entryWith(c, u32(c, 0), Rights.FD_TELL)
    setResult64(c, yield* entry.description.seek(0n, 1))
  })

const fd_fdstat_get: Handler = (c) =>
  genNow(function*() {
    const entry = yield* entryWith(c, u32(c, 0), 0n)
    const v = c.channel.dataView
    const L = Layout.fdstat
    v.setBigUint64(0, 0n, true)
    v.setUint8(L.filetype, entry.description.filetype)
    v.setUint16(L.flags, entry.flags, true)
    v.setBigUint64(L.rightsBase, entry.rightsBase, true)
    v.setBigUint64(L.rightsInheriting, entry.rightsInheriting, true)
    setPayloadLength(c, L.sizeOf)
  })

const fd_fdstat_set_flags: Handler = (c) =>
  genNow(function*() {
    const fd = u32(c, 0)
    const flags = u32(c, 1)
    const entry = yield* entryWith(c, fd, Rights.FD_FDSTAT_SET_FLAGS)
    if ((flags & ~(FdFlags.APPEND | FdFlags.DSYNC | FdFlags.NONBLOCK | FdFlags.RSYNC | FdFlags.SYNC)) !== 0) {
      return yield* fail(Errno.INVAL)
    }
    c.tg.fdTable.update(fd, { ...entry, flags })
  })

const fd_fdstat_set_rights: Handler = (c) =>
  genNow(function*() {
    const fd = u32(c, 0)
    const base = BigInt.asUintN(64, i64(c, 0))
    const inheriting = BigInt.asUintN(64, i64(c, 1))
    const entry = yield* entryWith(c, fd, 0n)
    // Rights can only be dropped.
    if ((base & ~entry.rightsBase) !== 0n || (inheriting & ~entry.rightsInheriting) !== 0n) {
      return yield* fail(Errno.NOTCAPABLE)
    }
    c.tg.fdTable.update(fd, { ...entry, rightsBase: base, rightsInheriting: inheriting })
  })

const fd_filestat_get: Handler = (c) =>
  genNow(function*() {
    const entry = yield* entryWith(c, u32(c, 0), Rights.FD_FILESTAT_GET)
    putFilestat(c, yield* statOf(entry.description))
  })

const fd_prestat_get: Handler = (c) =>
  genNow(function*() {
    const entry = yield* entryWith(c, u32(c, 0), 0n)
    if (entry.preopen === undefined) return yield* fail(Errno.BADF)
    const v = c.channel.dataView
    v.setUint32(0, 0, true)
    v.setUint8(Layout.prestat.tag, PreopenType.DIR)
    v.setUint32(Layout.prestat.nameLen, encoder.encode(entry.preopen).length, true)
    setPayloadLength(c, Layout.prestat.sizeOf)
  })

const fd_prestat_dir_name: Handler = (c) =>
  genNow(function*() {
    const entry = yield* entryWith(c, u32(c, 0), 0n)
    if (entry.preopen === undefined) return yield* fail(Errno.BADF)
    const name = encoder.encode(entry.preopen)
    if (u32(c, 1) < name.length) return yield* fail(Errno.NAMETOOLONG)
    setPayload(c, name)
  })

type Listing = ReadonlyArray<{ readonly name: Uint8Array; readonly ino: bigint; readonly filetype: number }>

/**
 * fd_readdir. `listings` holds the listing of each open directory description (one table per
 * kernel), so that cookies stay stable between calls; cookie 0 takes a fresh listing.
 */
const readdir = (listings: WeakMap<FdEntry["description"], Listing>): Handler => (c) =>
  genNow(function*() {
    const entry = yield* entryWith(c, u32(c, 0), Rights.FD_READDIR)
    const dentry = entry.dentry
    if (dentry === undefined) return yield* fail(Errno.NOTDIR)
    const cookie = BigInt.asUintN(64, i64(c, 0))
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
    const capacity = Math.min(u32(c, 1), DATA_SIZE)
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
    setResult(c, used)
  })

const fd_renumber: Handler = (c) => c.tg.fdTable.renumber(u32(c, 0), u32(c, 1))

/** fd_sync, fd_datasync: reach the host file where one backs the fd; elsewhere the data is already where it lives. */
const sync = (rights: bigint, dataOnly: boolean): Handler => (c) =>
  flatMapNow(entryWith(c, u32(c, 0), rights), (entry) => entry.description.sync?.(dataOnly) ?? Effect.void)

const WRITE_RIGHTS = Rights.FD_WRITE | Rights.FD_ALLOCATE | Rights.FD_FILESTAT_SET_SIZE | Rights.FD_DATASYNC

const path_open: Handler = (c) =>
  genNow(function*() {
    const dirfd = u32(c, 0)
    const lookupflags = u32(c, 1)
    const pathLength = u32(c, 2)
    const oflags = u32(c, 3)
    const fdflags = u32(c, 4)
    const requestedBase = BigInt.asUintN(64, i64(c, 0))
    const requestedInheriting = BigInt.asUintN(64, i64(c, 1))
    const dir = yield* entryWith(c, dirfd, Rights.PATH_OPEN)
    if (dir.dentry === undefined) return yield* fail(Errno.NOTDIR)
    if ((requestedBase & ~dir.rightsInheriting) !== 0n) return yield* fail(Errno.NOTCAPABLE)
    if ((oflags & OFlags.CREAT) !== 0 && (dir.rightsBase & Rights.PATH_CREATE_FILE) === 0n) return yield* fail(Errno.NOTCAPABLE)
    // Truncating through a path is the directory's right, as WASI defines O_TRUNC.
    if ((oflags & OFlags.TRUNC) !== 0 && (dir.rightsBase & Rights.PATH_FILESTAT_SET_SIZE) === 0n) return yield* fail(Errno.NOTCAPABLE)
    const path = yield* guestPath(c, 0, pathLength)
    const found = yield* eitherNow(
      resolveNow(c.tg.root, dir.dentry, path, { followFinal: (lookupflags & LookupFlags.SYMLINK_FOLLOW) !== 0, beneath: dir.dentry })
    )
    let dentry: Dentry
    let created = false
    if (found._tag === "Right") {
      dentry = found.right
    } else {
      if (found.left.errno !== Errno.NOENT || (oflags & OFlags.CREAT) === 0) return yield* fail(found.left.errno)
      dentry = yield* createAt(c, dir.dentry, path, (lookupflags & LookupFlags.SYMLINK_FOLLOW) !== 0, (oflags & OFlags.EXCL) !== 0)
      created = true
    }
    const filetype = dentry.inode.filetype
    if (!created && (oflags & OFlags.CREAT) !== 0 && (oflags & OFlags.EXCL) !== 0) return yield* fail(Errno.EXIST)
    if (filetype === FileType.SYMBOLIC_LINK) return yield* fail(Errno.LOOP)
    if ((oflags & OFlags.DIRECTORY) !== 0 && filetype !== FileType.DIRECTORY) return yield* fail(Errno.NOTDIR)
    const isDirectory = filetype === FileType.DIRECTORY
    const wantsWrite = (requestedBase & WRITE_RIGHTS) !== 0n || (oflags & OFlags.TRUNC) !== 0 ||
      (fdflags & FdFlags.APPEND) !== 0
    if (isDirectory && wantsWrite) return yield* fail(Errno.ISDIR)
    if ((oflags & OFlags.TRUNC) !== 0 && filetype === FileType.REGULAR_FILE && !created) {
      if (dentry.inode.truncate === undefined) return yield* fail(Errno.ROFS)
      yield* dentry.inode.truncate(0n)
    }
    // APPEND stays a flag of the fd, which fd_write acts on, so that fd_fdstat_set_flags can
    // clear it again; the description itself writes where it is told.
    const description = yield* dentry.inode.open({ read: true, write: wantsWrite })
    const typeRights = isDirectory ? DIRECTORY_RIGHTS : FILE_RIGHTS
    const fd = yield* eitherNow(c.tg.fdTable.allocate({
      description,
      ...(isDirectory ? { dentry } : {}),
      // A terminal (/dev/tty, /dev/stdout on one) cannot seek: isatty() looks for exactly that.
      rightsBase: requestedBase & typeRights & dir.rightsInheriting & (description.isTerminal === true ? ~(Rights.FD_SEEK | Rights.FD_TELL) : ~0n),
      rightsInheriting: isDirectory ? requestedInheriting & dir.rightsInheriting : 0n,
      flags: fdflags & (FdFlags.APPEND | FdFlags.NONBLOCK | FdFlags.SYNC | FdFlags.DSYNC | FdFlags.RSYNC)
    }))
    if (Either.isLeft(fd)) {
      yield* description.close
      return yield* fail(fd.left.errno)
    }
    setResult(c, fd.right)
  })

const path_filestat_get: Handler = (c) =>
  genNow(function*() {
    const follow = (u32(c, 1) & LookupFlags.SYMLINK_FOLLOW) !== 0
    const dentry = yield* lookupPath(c, u32(c, 0), Rights.PATH_FILESTAT_GET, 0, u32(c, 2), follow)
    putFilestat(c, yield* statOf(dentry.inode))
  })

const path_readlink: Handler = (c) =>
  genNow(function*() {
    const dentry = yield* lookupPath(c, u32(c, 0), Rights.PATH_READLINK, 0, u32(c, 1), false)
    const target = encoder.encode(yield* dentry.inode.readlink)
    // Truncated to the guest's buffer, as readlink(2) does.
    const kept = target.subarray(0, Math.min(target.length, u32(c, 2)))
    setPayload(c, kept)
    setResult(c, kept.length)
  })

// ---- changes to the filesystem ---------------------------------------------------------------
// A directory can change only where its filesystem is writable (`Inode.changes`); elsewhere
// (a read-only root, `ro` bind mounts, procfs, devfs) a change fails EROFS once the path has been checked.

/**
 * The directory that holds the last component of `path` (resolved from `base`, symlinks on the
 * way followed, never leaving `beneath`'s subtree), and that component ("" for "/"; "." and ".."
 * as written, ".." NOTCAPABLE where it would name the parent of `beneath`).
 */
const parentOf = (c: SyscallContext, base: Dentry, path: string, beneath: Dentry = base) =>
  genNow(function*() {
    if (path.length === 0) return yield* fail(Errno.NOENT)
    const trimmed = path.replace(/\/+$/, "")
    const slash = trimmed.lastIndexOf("/")
    const name = trimmed.slice(slash + 1)
    if (Buffer.byteLength(name) > NAME_MAX) return yield* fail(Errno.NAMETOOLONG)
    const dirPath = slash < 0 ? (trimmed.length === 0 ? "/" : ".") : slash === 0 ? "/" : trimmed.slice(0, slash)
    const dir = yield* resolveNow(c.tg.root, base, dirPath, { followFinal: true, beneath })
    if (dir.inode.filetype !== FileType.DIRECTORY) return yield* fail(Errno.NOTDIR)
    if (name === ".." && dir === beneath && !dir.isRoot) return yield* fail(Errno.NOTCAPABLE)
    return { dir, name, trailingSlash: trimmed.length < path.length }
  })

/**
 * O_CREAT of a missing `path`: a new empty file where its directory can have one. When the last
 * component is a dangling symlink that may be followed, the file is created where it points
 * (from the link's directory, or the root for an absolute target), as Linux does, never out of
 * `base`'s subtree; with O_EXCL the link itself is in the way (EEXIST).
 */
const createAt = (c: SyscallContext, base: Dentry, path: string, follow: boolean, exclusive: boolean) =>
  genNow(function*() {
    let from = base
    let target = path
    for (let hops = 0; ; hops++) {
      const parent = yield* parentOf(c, from, target, base)
      if (parent.trailingSlash) return yield* fail(Errno.ISDIR)
      const existing = yield* eitherNow(parent.dir.lookup(parent.name))
      if (Either.isRight(existing)) {
        if (existing.right.filetype !== FileType.SYMBOLIC_LINK || !follow || exclusive) return yield* fail(Errno.EXIST)
        if (hops >= MAX_SYMLINK_TRAVERSALS) return yield* fail(Errno.LOOP)
        from = parent.dir
        target = yield* existing.right.readlink
        continue
      }
      const changes = yield* changesOf(parent.dir)
      return parent.dir.child(parent.name, yield* changes.create(parent.name))
    }
  })

/** The changes `dir` can make, or EROFS. */
const changesOf = (dir: Dentry) => (dir.inode.changes ? Effect.succeed(dir.inode.changes) : fail(Errno.ROFS))

const pathParent = (c: SyscallContext, fd: number, rights: bigint, at: number, length: number) =>
  genNow(function*() {
    const base = yield* baseDirectory(c, fd, rights)
    return yield* parentOf(c, base, yield* guestPath(c, at, length))
  })

/** Whether `name` names something in `dir` (an existing name is EEXIST even on a read-only mount). */
const exists = (dir: Dentry, name: string) => mapNow(eitherNow(dir.lookup(name)), Either.isRight)

const path_create_directory: Handler = (c) =>
  genNow(function*() {
    const { dir, name } = yield* pathParent(c, u32(c, 0), Rights.PATH_CREATE_DIRECTORY, 0, u32(c, 1))
    if (name === "" || name === "." || name === ".." || (yield* exists(dir, name))) return yield* fail(Errno.EXIST)
    yield* flatMapNow(changesOf(dir), (changes) => changes.mkdir(name))
  })

const path_remove_directory: Handler = (c) =>
  genNow(function*() {
    const { dir, name } = yield* pathParent(c, u32(c, 0), Rights.PATH_REMOVE_DIRECTORY, 0, u32(c, 1))
    if (name === ".") return yield* fail(Errno.INVAL)
    if (name === "..") return yield* fail(Errno.NOTEMPTY)
    if (name === "") return yield* fail(Errno.BUSY)
    const inode = yield* dir.lookup(name)
    if (inode.filetype !== FileType.DIRECTORY) return yield* fail(Errno.NOTDIR)
    if (dir.isMountPoint(name)) return yield* fail(Errno.BUSY)
    yield* flatMapNow(changesOf(dir), (changes) => changes.rmdir(name))
  })

const path_unlink_file: Handler = (c) =>
  genNow(function*() {
    const { dir, name, trailingSlash } = yield* pathParent(c, u32(c, 0), Rights.PATH_UNLINK_FILE, 0, u32(c, 1))
    if (name === "" || name === "." || name === "..") return yield* fail(Errno.ISDIR)
    const inode = yield* dir.lookup(name)
    if (inode.filetype === FileType.DIRECTORY) return yield* fail(Errno.ISDIR)
    // "file/" asks for a directory, which a file is not.
    if (trailingSlash) return yield* fail(Errno.NOTDIR)
    yield* flatMapNow(changesOf(dir), (changes) => changes.unlink(name))
  })

const path_symlink: Handler = (c) =>
  genNow(function*() {
    const targetLength = u32(c, 0)
    const target = yield* pathAt(c, 0, targetLength)
    if (target.includes("\0")) return yield* fail(Errno.INVAL)
    const base = yield* baseDirectory(c, u32(c, 1), Rights.PATH_SYMLINK)
    // A link that would lead out of every directory fd to the root is refused (EPERM, as
    // wasmtime and uvwasi do); a relative one is stored, and confined when followed.
    if (target.startsWith("/")) return yield* fail(Errno.PERM)
    const { dir, name, trailingSlash } = yield* parentOf(c, base, yield* guestPath(c, targetLength, u32(c, 2)))
    if (name === "" || name === "." || name === ".." || (yield* exists(dir, name))) return yield* fail(Errno.EXIST)
    if (trailingSlash) return yield* fail(Errno.NOENT)
    // The target is stored as written; it is resolved (inside the root) only when followed.
    yield* flatMapNow(changesOf(dir), (changes) => changes.symlink(name, target))
  })

const path_rename: Handler = (c) =>
  genNow(function*() {
    const fromLength = u32(c, 1)
    const from = yield* pathParent(c, u32(c, 0), Rights.PATH_RENAME_SOURCE, 0, fromLength)
    const to = yield* pathParent(c, u32(c, 2), Rights.PATH_RENAME_TARGET, fromLength, u32(c, 3))
    for (const name of [from.name, to.name]) if (name === "" || name === "." || name === "..") return yield* fail(Errno.BUSY)
    const moving = yield* from.dir.lookup(from.name)
    if ((from.trailingSlash || to.trailingSlash) && moving.filetype !== FileType.DIRECTORY) return yield* fail(Errno.NOTDIR)
    if (from.dir.isMountPoint(from.name) || to.dir.isMountPoint(to.name)) return yield* fail(Errno.BUSY)
    // Across mounts is EXDEV before anything else, read-only or not (as Linux checks).
    if (from.dir.mount !== to.dir.mount) return yield* fail(Errno.XDEV)
    const source = yield* changesOf(from.dir)
    const target = yield* changesOf(to.dir)
    if (source.filesystem !== target.filesystem) return yield* fail(Errno.XDEV)
    yield* source.rename(from.name, target, to.name)
  })

const path_link: Handler = (c) =>
  genNow(function*() {
    const fromLength = u32(c, 2)
    const follow = (u32(c, 1) & LookupFlags.SYMLINK_FOLLOW) !== 0
    const existing = yield* lookupPath(c, u32(c, 0), Rights.PATH_LINK_SOURCE, 0, fromLength, follow)
    const to = yield* pathParent(c, u32(c, 3), Rights.PATH_LINK_TARGET, fromLength, u32(c, 4))
    if (to.name === "" || to.name === "." || to.name === ".." || (yield* exists(to.dir, to.name))) return yield* fail(Errno.EXIST)
    // A new name with a trailing slash names a directory that does not exist, as link(2) finds.
    if (to.trailingSlash) return yield* fail(Errno.NOENT)
    if (existing.inode.filetype === FileType.DIRECTORY) return yield* fail(Errno.PERM)
    if (existing.parent.mount !== to.dir.mount) return yield* fail(Errno.XDEV)
    yield* flatMapNow(changesOf(to.dir), (changes) => changes.link(to.name, existing.inode))
  })

/** The times fst_flags ask for: the one given, now, or unchanged (undefined); EINVAL for both. */
const requestedTimes = (c: SyscallContext, flags: number) =>
  genNow(function*() {
    if ((flags & FstFlags.ATIM) !== 0 && (flags & FstFlags.ATIM_NOW) !== 0) return yield* fail(Errno.INVAL)
    if ((flags & FstFlags.MTIM) !== 0 && (flags & FstFlags.MTIM_NOW) !== 0) return yield* fail(Errno.INVAL)
    const now = yield* Clock.currentTimeNanos
    const pick = (given: number, atNow: number, value: bigint) => (flags & given) !== 0 ? value : (flags & atNow) !== 0 ? now : undefined
    return {
      atim: pick(FstFlags.ATIM, FstFlags.ATIM_NOW, BigInt.asUintN(64, i64(c, 0))),
      mtim: pick(FstFlags.MTIM, FstFlags.MTIM_NOW, BigInt.asUintN(64, i64(c, 1)))
    }
  })

const path_filestat_set_times: Handler = (c) =>
  genNow(function*() {
    const follow = (u32(c, 1) & LookupFlags.SYMLINK_FOLLOW) !== 0
    const dentry = yield* lookupPath(c, u32(c, 0), Rights.PATH_FILESTAT_SET_TIMES, 0, u32(c, 2), follow)
    const { atim, mtim } = yield* requestedTimes(c, u32(c, 3))
    if (dentry.inode.setTimes === undefined) return yield* fail(Errno.ROFS)
    yield* dentry.inode.setTimes(atim, mtim)
  })

/** A change through an open fd: what its description offers, EISDIR on a directory, else EROFS. */
const fdChange = <K extends "setSize" | "allocate" | "setTimes">(c: SyscallContext, rights: bigint, kind: K) =>
  flatMapNow(entryWith(c, u32(c, 0), rights), (entry) => {
    const change = entry.description[kind]
    if (change !== undefined) return Effect.succeed(change as NonNullable<FileDescription[K]>)
    return fail(entry.description.filetype === FileType.DIRECTORY ? Errno.ISDIR : Errno.ROFS)
  })

const fd_filestat_set_size: Handler = (c) =>
  flatMapNow(fdChange(c, Rights.FD_FILESTAT_SET_SIZE, "setSize"), (setSize) => setSize(BigInt.asUintN(64, i64(c, 0))))

const fd_allocate: Handler = (c) =>
  flatMapNow(fdChange(c, Rights.FD_ALLOCATE, "allocate"), (allocate) => {
    const offset = BigInt.asUintN(64, i64(c, 0))
    const length = BigInt.asUintN(64, i64(c, 1))
    return length === 0n ? fail(Errno.INVAL) : allocate(offset, length)
  })

const fd_filestat_set_times: Handler = (c) =>
  genNow(function*() {
    const setTimes = yield* fdChange(c, Rights.FD_FILESTAT_SET_TIMES, "setTimes")
    const { atim, mtim } = yield* requestedTimes(c, u32(c, 1))
    yield* setTimes(atim, mtim)
  })

// ---- poll_oneoff -----------------------------------------------------------------------------

const poll_oneoff: Handler = (c) =>
  genNow(function*() {
    const nsubs = u32(c, 0)
    if (nsubs === 0) return yield* fail(Errno.INVAL)
    const view = c.channel.dataView
    const S = Layout.subscription
    const nowRealtime = yield* Clock.currentTimeNanos
    const nowMonotonic = process.hrtime.bigint() // the same clock the worker serves as MONOTONIC
    interface Ready {
      readonly userdata: bigint
      readonly error: number
      readonly type: number
    }
    const immediate: Array<Ready> = []
    const clocks: Array<{ readonly userdata: bigint; readonly waitNs: bigint }> = []
    // fd subscriptions on descriptions that can wait (pipes); the others are ready at once.
    const streams: Array<Ready & { readonly readiness: NonNullable<FileDescription["readiness"]> }> = []
    for (let i = 0; i < nsubs; i++) {
      const base = i * S.sizeOf
      const userdata = view.getBigUint64(base + S.userdata, true)
      const tag = view.getUint8(base + S.tag)
      if (tag === EventType.CLOCK) {
        const id = view.getUint32(base + S.clock.id, true)
        const timeout = view.getBigUint64(base + S.clock.timeout, true)
        const absolute = (view.getUint16(base + S.clock.flags, true) & SubclockFlags.ABSTIME) !== 0
        const now = id === ClockId.REALTIME ? nowRealtime : id === ClockId.MONOTONIC ? nowMonotonic : undefined
        if (now === undefined) immediate.push({ userdata, error: Errno.INVAL, type: tag })
        else clocks.push({ userdata, waitNs: absolute ? timeout - now : timeout })
      } else if (tag === EventType.FD_READ || tag === EventType.FD_WRITE) {
        const fd = view.getUint32(base + S.fdReadWrite.fd, true)
        const entry = c.tg.fdTable.lookup(fd)
        const error = entry === undefined ? Errno.BADF
          : (entry.rightsBase & Rights.POLL_FD_READWRITE) === 0n ? Errno.NOTCAPABLE
          : Errno.SUCCESS
        // Files and host streams are reported ready at once (the read or write that follows
        // is what waits); pipes when they are.
        const readiness = entry?.description.readiness
        if (error === Errno.SUCCESS && readiness !== undefined) streams.push({ userdata, error, type: tag, readiness })
        else immediate.push({ userdata, error, type: tag })
      } else {
        immediate.push({ userdata, error: Errno.INVAL, type: tag })
      }
    }
    const soonest = clocks.length === 0 ? undefined : clocks.reduce((m, s) => (s.waitNs < m ? s.waitNs : m), clocks[0]!.waitNs)
    const deadline = soonest === undefined ? undefined : nowMonotonic + soonest
    const readyStreams = () => streams.filter((s) => s.readiness.ready(s.type === EventType.FD_READ ? "read" : "write"))
    let fired: Array<Ready> = [...immediate, ...readyStreams()]
    while (fired.length === 0) {
      const remaining = deadline === undefined ? undefined : deadline - process.hrtime.bigint()
      if (remaining !== undefined && remaining <= 0n) {
        fired = clocks.filter((s) => s.waitNs <= soonest!).map((s) => ({ userdata: s.userdata, error: 0, type: EventType.CLOCK }))
        break
      }
      // Until the soonest clock, or until a watched pipe changes (then look again).
      yield* blocking(
        c,
        Effect.raceAll([
          remaining === undefined ? Effect.never : Effect.sleep(Duration.nanos(remaining)),
          ...streams.map((s) => s.readiness.changed)
        ])
      )
      fired = readyStreams()
    }
    const E = Layout.event
    fired.forEach((event, i) => {
      const base = i * E.sizeOf
      for (let b = 0; b < E.sizeOf; b += 8) view.setBigUint64(base + b, 0n, true)
      view.setBigUint64(base + E.userdata, event.userdata, true)
      view.setUint16(base + E.error, event.error, true)
      view.setUint8(base + E.type, event.type)
    })
    setPayloadLength(c, fired.length * E.sizeOf)
    setResult(c, fired.length)
  })

/** proc_raise numbers signals as WASI's enum does (not as Linux does from 16 on). */
const proc_raise: Handler = (c) => {
  const signo = signalFromWasi(u32(c, 0))
  return signo !== undefined && isValidSignal(signo) ? c.raise(signo) : fail(Errno.INVAL)
}

/** No socket can exist yet (preview1 cannot create one and none are pre-opened). */
const notSocket: Handler = (c) => flatMapNow(entryWith(c, u32(c, 0), 0n), () => fail(Errno.NOTSOCK))

/** Served in the worker; reaching the sentry means a worker shim without its fast path. */
const servedInWorker: Handler = () => fail(Errno.NOSYS)

const handlers: { readonly [K in Exclude<SyscallName, "fd_readdir" | "memory_grow">]: Handler } = {
  ...processHandlers,
  args_get: servedInWorker,
  args_sizes_get: servedInWorker,
  environ_get: servedInWorker,
  environ_sizes_get: servedInWorker,
  clock_res_get: servedInWorker,
  clock_time_get: servedInWorker,
  fd_advise: (c) => flatMapNow(entryWith(c, u32(c, 0), Rights.FD_ADVISE), () => u32(c, 1) > 5 ? fail(Errno.INVAL) : Effect.void),
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
  fd_write,
  path_create_directory,
  path_filestat_get,
  path_filestat_set_times,
  path_link,
  path_open,
  path_readlink,
  path_remove_directory,
  path_rename,
  path_symlink,
  path_unlink_file,
  poll_oneoff,
  proc_exit: servedInWorker,
  proc_raise,
  // Served in the worker, except that a task with a pending stop enters the sentry through it.
  sched_yield: () => Effect.void,
  random_get: servedInWorker,
  sock_accept: notSocket,
  sock_recv: notSocket,
  sock_send: notSocket,
  sock_shutdown: notSocket
}

/** A kernel's syscall table: handlers by syscall number. */
export const makeSyscallTable = (): ReadonlyArray<Handler> => {
  const all: { readonly [K in SyscallName]: Handler } = { ...handlers, fd_readdir: readdir(new WeakMap()), memory_grow }
  return syscallNames.map((name) => all[name])
}
