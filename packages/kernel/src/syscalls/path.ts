/**
 * The path family: calls that name a file by a path beneath a directory fd (open, stat, the
 * changes to a directory). Each decodes its arguments through its declaration
 * (platform/syscallAbi.ts) and validates in the order Linux does (fd, then rights, then path).
 *
 * A change lands where the directory's filesystem takes it (the overlay root, tmpfs); a
 * read-only one (a `root.readonly` root, `ro` bind mounts, procfs, devfs) refuses with EROFS once
 * fd and path have been checked, as a read-only mount does.
 */
import { DIRECTORY_RIGHTS, Errno, FdFlags, FILE_RIGHTS, FileType, LookupFlags, OFlags, Rights } from "@runsc/abi"
import { Either } from "effect"
import { fail } from "../errors.js"
import { type FileDescription, type OpenOptions, statOf } from "../fs/inode.js"
import { type Dentry, MAX_SYMLINK_TRAVERSALS, resolveNow } from "../fs/resolve.js"
import { args, type BytesArg, results } from "../platform/syscallAbi.js"
import { eitherNow, flatMapNow, fnNow } from "../settled.js"
import { type Handler, pathArg, setPayload, type SyscallContext } from "./context.js"
import { putFilestat, requestedTimes } from "./filestat.js"
import { baseDirectory, changesOf, entryWith, exists, guestPath, lookupPath, parentOf } from "./lookup.js"

// Each call's accessors, looked up once (see platform/syscallAbi.ts).
const PathOpenArgs = args.path_open
const PathOpenResults = results.path_open
const PathFilestatGetArgs = args.path_filestat_get
const PathReadlinkArgs = args.path_readlink
const PathReadlinkResults = results.path_readlink
const PathCreateDirectoryArgs = args.path_create_directory
const PathRemoveDirectoryArgs = args.path_remove_directory
const PathUnlinkFileArgs = args.path_unlink_file
const PathSymlinkArgs = args.path_symlink
const PathRenameArgs = args.path_rename
const PathLinkArgs = args.path_link
const PathFilestatSetTimesArgs = args.path_filestat_set_times

const encoder = new TextEncoder()

const WRITE_RIGHTS = Rights.FD_WRITE | Rights.FD_ALLOCATE | Rights.FD_FILESTAT_SET_SIZE | Rights.FD_DATASYNC

const path_open: Handler = fnNow(function*(c: SyscallContext) {
  const dirfd = PathOpenArgs.fd(c)
  const lookupflags = PathOpenArgs.dirflags(c)
  const oflags = PathOpenArgs.oflags(c)
  const fdflags = PathOpenArgs.fdflags(c)
  const requestedBase = BigInt.asUintN(64, PathOpenArgs.rightsBase(c))
  const requestedInheriting = BigInt.asUintN(64, PathOpenArgs.rightsInheriting(c))
  const dir = yield* entryWith(c, dirfd, Rights.PATH_OPEN)
  if (dir.dentry === undefined) return yield* fail(Errno.NOTDIR)
  if ((requestedBase & ~dir.rightsInheriting) !== 0n) return yield* fail(Errno.NOTCAPABLE)
  if ((oflags & OFlags.CREAT) !== 0 && (dir.rightsBase & Rights.PATH_CREATE_FILE) === 0n) return yield* fail(Errno.NOTCAPABLE)
  // Truncating through a path is the directory's right, as WASI defines O_TRUNC.
  if ((oflags & OFlags.TRUNC) !== 0 && (dir.rightsBase & Rights.PATH_FILESTAT_SET_SIZE) === 0n) return yield* fail(Errno.NOTCAPABLE)
  const path = yield* guestPath(c, PathOpenArgs.path)
  const found = yield* eitherNow(
    resolveNow(c.tg.root, dir.dentry, path, { followFinal: (lookupflags & LookupFlags.SYMLINK_FOLLOW) !== 0, beneath: dir.dentry })
  )
  const wantsWrite = (requestedBase & WRITE_RIGHTS) !== 0n || (oflags & OFlags.TRUNC) !== 0 ||
    (fdflags & FdFlags.APPEND) !== 0
  // APPEND stays a flag of the fd, which fd_write acts on, so that fd_fdstat_set_flags can
  // clear it again; the description itself writes where it is told.
  const options: OpenOptions = { read: true, write: wantsWrite }
  let dentry: Dentry
  let created = false
  /** The new file's description, where its filesystem opened it as it created it. */
  let opened: FileDescription | undefined
  if (found._tag === "Right") {
    dentry = found.right
  } else {
    if (found.left.errno !== Errno.NOENT || (oflags & OFlags.CREAT) === 0) return yield* fail(found.left.errno)
    const made = yield* createAt(c, dir.dentry, path, (lookupflags & LookupFlags.SYMLINK_FOLLOW) !== 0, (oflags & OFlags.EXCL) !== 0, options)
    dentry = made.dentry
    opened = made.description
    created = true
  }
  const filetype = dentry.inode.filetype
  if (!created && (oflags & OFlags.CREAT) !== 0 && (oflags & OFlags.EXCL) !== 0) return yield* fail(Errno.EXIST)
  if (filetype === FileType.SYMBOLIC_LINK) return yield* fail(Errno.LOOP)
  if ((oflags & OFlags.DIRECTORY) !== 0 && filetype !== FileType.DIRECTORY) {
    if (opened !== undefined) yield* opened.close
    return yield* fail(Errno.NOTDIR)
  }
  const isDirectory = filetype === FileType.DIRECTORY
  if (isDirectory && wantsWrite) return yield* fail(Errno.ISDIR)
  if ((oflags & OFlags.TRUNC) !== 0 && filetype === FileType.REGULAR_FILE && !created) {
    if (dentry.inode.truncate === undefined) return yield* fail(Errno.ROFS)
    yield* dentry.inode.truncate(0n)
  }
  const description = opened ?? (yield* dentry.inode.open(options))
  // A directory fd keeps the chain of names it was reached by: charged to the heap share while
  // it is open (ENOMEM past it). Uncharged, fds of a directory 2,000 deep, each opened by its
  // full path, grew the sentry's heap without a bound its account saw.
  const chain = isDirectory ? dentry.chainHeap : 0
  const memory = c.services.memoryOf(c.tg)
  if (chain > 0 && !memory.chargeHeap(chain)) {
    yield* description.close
    return yield* fail(Errno.NOMEM)
  }
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
    memory.releaseHeap(chain)
    yield* description.close
    return yield* fail(fd.left.errno)
  }
  if (chain > 0) c.tg.fdTable.whenClosed(description, () => memory.releaseHeap(chain))
  PathOpenResults.opened(c, fd.right)
})

const path_filestat_get: Handler = fnNow(function*(c: SyscallContext) {
  const Stat = PathFilestatGetArgs
  const follow = (Stat.flags(c) & LookupFlags.SYMLINK_FOLLOW) !== 0
  const dentry = yield* lookupPath(c, Stat.fd(c), Rights.PATH_FILESTAT_GET, Stat.path, follow)
  putFilestat(c, yield* statOf(dentry.inode))
})

const path_readlink: Handler = fnNow(function*(c: SyscallContext) {
  const Readlink = PathReadlinkArgs
  const dentry = yield* lookupPath(c, Readlink.fd(c), Rights.PATH_READLINK, Readlink.path, false)
  const target = encoder.encode(yield* dentry.inode.readlink)
  // Truncated to the guest's buffer, as readlink(2) does.
  const kept = target.subarray(0, Math.min(target.length, Readlink.buf(c)))
  setPayload(c, kept)
  PathReadlinkResults.bufused(c, kept.length)
})

// ---- changes to the filesystem ---------------------------------------------------------------
// A directory can change only where its filesystem is writable (`Inode.changes`); elsewhere
// (a read-only root, `ro` bind mounts, procfs, devfs) a change fails EROFS once the path has been checked.

/**
 * O_CREAT of a missing `path`: a new empty file where its directory can have one, opened with
 * `open` (`description`) where its filesystem creates and opens in one step. When the last
 * component is a dangling symlink that may be followed, the file is created where it points
 * (from the link's directory, or the root for an absolute target), as Linux does, never out of
 * `base`'s subtree; with O_EXCL the link itself is in the way (EEXIST).
 *
 * The name was just found missing, so the create is tried first; only a name that is taken
 * after all (EEXIST: a dangling symlink, or a race) or a read-only directory is looked up.
 */
const createAt = fnNow(function*(c: SyscallContext, base: Dentry, path: string, follow: boolean, exclusive: boolean, open: OpenOptions) {
  let from = base
  let target = path
  for (let hops = 0; ; hops++) {
    const parent = yield* parentOf(c, from, target, base)
    if (parent.trailingSlash) return yield* fail(Errno.ISDIR)
    // A name a filesystem is mounted on is taken, whatever the directory under it holds.
    if (parent.dir.isMountPoint(parent.name)) return yield* fail(Errno.EXIST)
    const changes = parent.dir.inode.changes
    if (changes !== undefined) {
      if (changes.createOpen !== undefined) {
        const made = yield* eitherNow(changes.createOpen(parent.name, open))
        if (Either.isRight(made)) return { dentry: parent.dir.child(parent.name, made.right.inode), description: made.right.description }
        if (made.left.errno !== Errno.EXIST) return yield* fail(made.left.errno)
      } else {
        const made = yield* eitherNow(changes.create(parent.name))
        if (Either.isRight(made)) return { dentry: parent.dir.child(parent.name, made.right), description: undefined }
        if (made.left.errno !== Errno.EXIST) return yield* fail(made.left.errno)
      }
    }
    const existing = yield* eitherNow(parent.dir.lookup(parent.name))
    if (Either.isLeft(existing)) return yield* fail(changes === undefined ? Errno.ROFS : Errno.EXIST)
    if (existing.right.filetype !== FileType.SYMBOLIC_LINK || !follow || exclusive) return yield* fail(Errno.EXIST)
    if (hops >= MAX_SYMLINK_TRAVERSALS) return yield* fail(Errno.LOOP)
    from = parent.dir
    target = yield* existing.right.readlink
  }
})


const pathParent = fnNow(function*(c: SyscallContext, fd: number, rights: bigint, path: BytesArg) {
  const base = yield* baseDirectory(c, fd, rights)
  return yield* parentOf(c, base, yield* guestPath(c, path))
})


const path_create_directory: Handler = fnNow(function*(c: SyscallContext) {
  const { fd, path } = PathCreateDirectoryArgs
  const { dir, name } = yield* pathParent(c, fd(c), Rights.PATH_CREATE_DIRECTORY, path)
  if (name === "" || name === "." || name === ".." || (yield* exists(dir, name))) return yield* fail(Errno.EXIST)
  yield* flatMapNow(changesOf(dir), (changes) => changes.mkdir(name))
})

const path_remove_directory: Handler = fnNow(function*(c: SyscallContext) {
  const { fd, path } = PathRemoveDirectoryArgs
  const { dir, name } = yield* pathParent(c, fd(c), Rights.PATH_REMOVE_DIRECTORY, path)
  if (name === ".") return yield* fail(Errno.INVAL)
  if (name === "..") return yield* fail(Errno.NOTEMPTY)
  if (name === "") return yield* fail(Errno.BUSY)
  const inode = yield* dir.lookup(name)
  if (inode.filetype !== FileType.DIRECTORY) return yield* fail(Errno.NOTDIR)
  if (dir.isMountPoint(name)) return yield* fail(Errno.BUSY)
  yield* flatMapNow(changesOf(dir), (changes) => changes.rmdir(name))
})

const path_unlink_file: Handler = fnNow(function*(c: SyscallContext) {
  const { fd, path } = PathUnlinkFileArgs
  const { dir, name, trailingSlash } = yield* pathParent(c, fd(c), Rights.PATH_UNLINK_FILE, path)
  if (name === "" || name === "." || name === "..") return yield* fail(Errno.ISDIR)
  const inode = yield* dir.lookup(name)
  if (inode.filetype === FileType.DIRECTORY) return yield* fail(Errno.ISDIR)
  // "file/" asks for a directory, which a file is not.
  if (trailingSlash) return yield* fail(Errno.NOTDIR)
  yield* flatMapNow(changesOf(dir), (changes) => changes.unlink(name))
})

const path_symlink: Handler = fnNow(function*(c: SyscallContext) {
  const Symlink = PathSymlinkArgs
  const target = yield* pathArg(c, Symlink.oldPath)
  if (target.includes("\0")) return yield* fail(Errno.INVAL)
  const base = yield* baseDirectory(c, Symlink.fd(c), Rights.PATH_SYMLINK)
  // A link that would lead out of every directory fd to the root is refused (EPERM, as
  // wasmtime and uvwasi do); a relative one is stored, and confined when followed.
  if (target.startsWith("/")) return yield* fail(Errno.PERM)
  const { dir, name, trailingSlash } = yield* parentOf(c, base, yield* guestPath(c, Symlink.newPath))
  if (name === "" || name === "." || name === ".." || (yield* exists(dir, name))) return yield* fail(Errno.EXIST)
  if (trailingSlash) return yield* fail(Errno.NOENT)
  // The target is stored as written; it is resolved (inside the root) only when followed.
  yield* flatMapNow(changesOf(dir), (changes) => changes.symlink(name, target))
})

const path_rename: Handler = fnNow(function*(c: SyscallContext) {
  const Rename = PathRenameArgs
  const from = yield* pathParent(c, Rename.fd(c), Rights.PATH_RENAME_SOURCE, Rename.oldPath)
  const to = yield* pathParent(c, Rename.newFd(c), Rights.PATH_RENAME_TARGET, Rename.newPath)
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

const path_link: Handler = fnNow(function*(c: SyscallContext) {
  const Link = PathLinkArgs
  const follow = (Link.oldFlags(c) & LookupFlags.SYMLINK_FOLLOW) !== 0
  const existing = yield* lookupPath(c, Link.oldFd(c), Rights.PATH_LINK_SOURCE, Link.oldPath, follow)
  const to = yield* pathParent(c, Link.newFd(c), Rights.PATH_LINK_TARGET, Link.newPath)
  if (to.name === "" || to.name === "." || to.name === ".." || (yield* exists(to.dir, to.name))) return yield* fail(Errno.EXIST)
  // A new name with a trailing slash names a directory that does not exist, as link(2) finds.
  if (to.trailingSlash) return yield* fail(Errno.NOENT)
  if (existing.inode.filetype === FileType.DIRECTORY) return yield* fail(Errno.PERM)
  if (existing.parent.mount !== to.dir.mount) return yield* fail(Errno.XDEV)
  yield* flatMapNow(changesOf(to.dir), (changes) => changes.link(to.name, existing.inode))
})


const path_filestat_set_times: Handler = fnNow(function*(c: SyscallContext) {
  const SetTimes = PathFilestatSetTimesArgs
  const follow = (SetTimes.flags(c) & LookupFlags.SYMLINK_FOLLOW) !== 0
  const dentry = yield* lookupPath(c, SetTimes.fd(c), Rights.PATH_FILESTAT_SET_TIMES, SetTimes.path, follow)
  const { atim, mtim } = yield* requestedTimes(SetTimes.fstFlags(c), SetTimes.atim(c), SetTimes.mtim(c))
  if (dentry.inode.setTimes === undefined) return yield* fail(Errno.ROFS)
  yield* dentry.inode.setTimes(atim, mtim)
})

export const pathHandlers = {
  path_create_directory,
  path_filestat_get,
  path_filestat_set_times,
  path_link,
  path_open,
  path_readlink,
  path_remove_directory,
  path_rename,
  path_symlink,
  path_unlink_file
} as const satisfies Record<string, Handler>
