/**
 * The gofer: a host directory tree served to the sandbox, read-only (the root under its
 * overlay, `ro` bind mounts) or writable (`rw` bind mounts: the guest's changes reach the host).
 *
 * Confinement: an inode is only ever created by `lookup` of one validated component under a
 * directory inode, starting from the tree's root, and each is examined with lstat, so a host
 * symlink is an inode of type symlink (resolved by the sentry inside the container root), never
 * followed by the host. Files are opened with O_NOFOLLOW, and every call that names a path acts
 * on its last component without following it.
 *
 * Node has no openat, so calls name host paths, and a path's directories could be swapped for
 * symlinks between a lookup and a later use. In a read-only tree the guest cannot change
 * anything, so it cannot do that. In a writable tree every call first checks that the directory
 * it acts in is still the one looked up (same device and inode, reached through no symlink);
 * check and call run in one synchronous turn, so none of the guest's own changes can come
 * between them. A host process that swaps directories under a live sandbox is out of scope
 * until the gofer holds directory fds.
 */
import { Errno, FileType, Whence } from "@runsc/abi"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as FsP from "node:fs/promises"
import * as Path from "node:path"
import { fail, fromHostError, type SyscallError } from "../errors.js"
import { directoryDescription } from "./directory.js"
import type { DirectoryChanges, DirEntry, FileDescription, Inode, OpenOptions, Stat } from "./inode.js"

export const fileTypeOf = (st: Fs.BigIntStats | Fs.Stats): FileType =>
  st.isDirectory() ? FileType.DIRECTORY
  : st.isFile() ? FileType.REGULAR_FILE
  : st.isSymbolicLink() ? FileType.SYMBOLIC_LINK
  : st.isCharacterDevice() ? FileType.CHARACTER_DEVICE
  : st.isBlockDevice() ? FileType.BLOCK_DEVICE
  : st.isSocket() ? FileType.SOCKET_STREAM
  : FileType.UNKNOWN

export const toStat = (st: Fs.BigIntStats): Stat => ({
  dev: st.dev,
  ino: st.ino,
  filetype: fileTypeOf(st),
  nlink: st.nlink,
  size: st.size,
  atim: st.atimeNs,
  mtim: st.mtimeNs,
  ctim: st.ctimeNs,
  mode: Number(st.mode & 0o7777n)
})

/**
 * A host call, made synchronously: on a local filesystem a call takes microseconds, and the
 * round trip through libuv's thread pool costs 80-170 µs more than the call itself (a 64 KiB
 * read: 10 µs sync, 170 µs async). The price: a slow host filesystem (NFS, FUSE) stalls the
 * sentry for as long as each call takes. Streams (stdin, pipes) never come here.
 */
const host = <A>(f: () => A): Effect.Effect<A, SyscallError> => Effect.try({ try: f, catch: fromHostError })

const lstat = (hostPath: string) => Fs.lstatSync(hostPath, { bigint: true })

/** Host times take seconds as a double: sub-microsecond precision is lost on the host. */
const seconds = (ns: bigint) => Number(ns) / 1e9

/** Throws ENOENT (as a host error) unless `inode`'s host path still names it, through no symlink. */
const check = (inode: HostInode): void => {
  const st = lstat(inode.hostPath)
  const same = Fs.realpathSync.native(inode.hostPath) === inode.hostPath && fileTypeOf(st) === inode.filetype &&
    st.dev === inode.lookupStat.dev && st.ino === inode.lookupStat.ino
  if (!same) throw Object.assign(new Error("moved"), { code: "ENOENT" })
}

/**
 * The checks of a writable host tree (see the module's comment). Most host calls are
 * synchronous, so a check and the call after it run in one turn of the sentry; the one that is
 * not (opening a file to write, see `open`) holds the tree's lock, which every call takes, so
 * no change of the guest's can come between a check and its call.
 */
class HostWrites {
  constructor(private readonly lock: Effect.Semaphore) {}

  /** Runs `f` once each of `places` is known to still be where it was looked up. */
  in<A>(places: ReadonlyArray<HostInode>, f: () => A): Effect.Effect<A, SyscallError> {
    return this.lock.withPermits(1)(host(() => {
      places.forEach(check)
      return f()
    }))
  }

  /** `in` for an asynchronous call. */
  inAsync<A>(places: ReadonlyArray<HostInode>, f: () => Promise<A>): Effect.Effect<A, SyscallError> {
    return this.lock.withPermits(1)(Effect.zipRight(host(() => places.forEach(check)), Effect.tryPromise({ try: f, catch: fromHostError })))
  }
}

class HostInode implements Inode {
  readonly filetype: FileType
  readonly lookupStat: Stat
  readonly identity: string | undefined
  readonly changes?: DirectoryChanges

  constructor(
    readonly hostPath: string,
    st: Fs.BigIntStats,
    /** The directory it was looked up in (undefined for the tree's root). */
    private readonly parent: HostInode | undefined,
    /** Set for a writable tree. */
    readonly writes: HostWrites | undefined
  ) {
    this.filetype = fileTypeOf(st)
    this.lookupStat = toStat(st)
    // What the guest may change cannot be cached by what it was at lookup.
    this.identity = writes === undefined ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : undefined
    if (writes !== undefined && this.filetype === FileType.DIRECTORY) this.changes = hostChanges(this, writes)
  }

  /**
   * The inode whose host path must be checked before this one's is used: its directory (calls
   * act on the last component unfollowed), or itself for the tree's root.
   */
  get place(): HostInode {
    return this.parent ?? this
  }

  /** Runs `f` on this inode's host path: in a writable tree, in a checked directory. */
  at<A>(f: (hostPath: string) => A): Effect.Effect<A, SyscallError> {
    return this.writes === undefined ? host(() => f(this.hostPath)) : this.writes.in([this.place], () => f(this.hostPath))
  }

  /** Runs `f` on the host path of `name` in this directory, or of the directory itself (see `at`). */
  child<A>(name: string | undefined, f: (hostPath: string) => A): Effect.Effect<A, SyscallError> {
    const path = name === undefined ? this.hostPath : Path.join(this.hostPath, name)
    return this.writes === undefined ? host(() => f(path)) : this.writes.in([this], () => f(path))
  }

  get stat(): Effect.Effect<Stat, SyscallError> {
    return this.at((p) => toStat(lstat(p)))
  }

  lookup(name: string): Effect.Effect<Inode, SyscallError> {
    if (this.filetype !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
    // A missing name is common (PATH searches, O_CREAT): asked without making Node build an error.
    const found = this.child(name, (p) => {
      const st = Fs.lstatSync(p, { bigint: true, throwIfNoEntry: false })
      return st && new HostInode(p, st, this, this.writes)
    })
    return Effect.flatMap(found, (inode) => (inode === undefined ? fail(Errno.NOENT) : Effect.succeed(inode)))
  }

  get readdir(): Effect.Effect<ReadonlyArray<DirEntry>, SyscallError> {
    if (this.filetype !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
    // Listing follows the path to its end: the directory itself must be checked, not only its parent.
    return this.child(undefined, (dir) =>
      Fs.readdirSync(dir).sort().flatMap((name): Array<DirEntry> => {
        try {
          const st = lstat(Path.join(dir, name))
          return [{ name, ino: st.ino, filetype: fileTypeOf(st) }]
        } catch {
          // An entry removed between readdir and lstat is simply not listed.
          return []
        }
      }))
  }

  get readlink(): Effect.Effect<string, SyscallError> {
    if (this.filetype !== FileType.SYMBOLIC_LINK) return fail(Errno.INVAL)
    return this.at((p) => Fs.readlinkSync(p))
  }

  open(options: OpenOptions): Effect.Effect<FileDescription, SyscallError> {
    if (this.filetype === FileType.DIRECTORY) return options.write ? fail(Errno.ISDIR) : Effect.succeed(directoryDescription(this))
    // Devices, sockets and fifos of the host tree are not opened: they could block the sentry
    // or reach host resources.
    if (this.filetype !== FileType.REGULAR_FILE) return fail(Errno.ACCES)
    if (options.write && this.writes === undefined) return fail(Errno.ROFS)
    const { O_APPEND, O_NOFOLLOW, O_RDONLY, O_RDWR, O_WRONLY } = Fs.constants
    const flags = O_NOFOLLOW | (options.write ? (options.read ? O_RDWR : O_WRONLY) | (options.append ? O_APPEND : 0) : O_RDONLY)
    if (this.writes === undefined) return Effect.map(this.at((p) => Fs.openSync(p, flags)), (fd) => new HostFileDescription(fd, this, options))
    // A FileHandle, because Node 20's permission model refuses fsync on a plain fd of a
    // confined sandbox and allows FileHandle.sync.
    return Effect.map(
      this.writes.inAsync([this.place], () => FsP.open(this.hostPath, flags)),
      (handle) => new HostFileDescription(handle.fd, this, options, handle)
    )
  }

  readonly truncate = (size: bigint): Effect.Effect<void, SyscallError> =>
    this.writes === undefined ? fail(Errno.ROFS) : this.at((p) => {
      const fd = Fs.openSync(p, Fs.constants.O_WRONLY | Fs.constants.O_NOFOLLOW)
      try {
        Fs.ftruncateSync(fd, Number(size))
      } finally {
        Fs.closeSync(fd)
      }
    })

  readonly setTimes = (atim: bigint | undefined, mtim: bigint | undefined): Effect.Effect<void, SyscallError> =>
    this.writes === undefined ? fail(Errno.ROFS) : this.at((p) => {
      const st = lstat(p)
      // lutimes: a symlink's own times, never its target's.
      Fs.lutimesSync(p, seconds(atim ?? st.atimeNs), seconds(mtim ?? st.mtimeNs))
    })
}

/** The changes of a directory of a writable host tree: each a host call on its last component, unfollowed. */
const hostChanges = (dir: HostInode, writes: HostWrites): DirectoryChanges & { readonly directory: HostInode } => ({
  filesystem: writes,
  directory: dir,
  create: (name, mode = 0o644) =>
    Effect.zipRight(
      dir.child(name, (p) => {
        const { O_CREAT, O_EXCL, O_NOFOLLOW, O_WRONLY } = Fs.constants
        Fs.closeSync(Fs.openSync(p, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, mode))
      }),
      dir.lookup(name)
    ),
  mkdir: (name, mode = 0o755) => dir.child(name, (p) => Fs.mkdirSync(p, mode)),
  symlink: (name, target) =>
    dir.child(name, (p) => Fs.symlinkSync(target, p)).pipe(
      // Node 20's permission model refuses every symlink of a confined sandbox (it checks the
      // target as a host path): the filesystem does not support symlinks, as Linux says it.
      Effect.catchIf((e) => e.errno === Errno.ACCES, () => fail(Errno.PERM))
    ),
  link: (name, target) => {
    if (!(target instanceof HostInode) || target.writes !== writes) return fail(Errno.XDEV)
    if (target.filetype === FileType.DIRECTORY) return fail(Errno.PERM)
    // link(2) does not follow a symlink it links; both directories are checked.
    return writes.in([target.place, dir], () => Fs.linkSync(target.hostPath, Path.join(dir.hostPath, name)))
  },
  unlink: (name) =>
    dir.child(name, (p) => {
      if (lstat(p).isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" })
      Fs.unlinkSync(p)
    }),
  rmdir: (name) => dir.child(name, (p) => Fs.rmdirSync(p)),
  rename: (name, to, toName) => {
    const target = (to as { readonly directory?: unknown }).directory
    if (to.filesystem !== writes || !(target instanceof HostInode)) return fail(Errno.XDEV)
    return writes.in([dir, target], () => Fs.renameSync(Path.join(dir.hostPath, name), Path.join(target.hostPath, toName)))
  }
})

/** A regular host file, read and written through its own host fd. */
class HostFileDescription implements FileDescription {
  readonly filetype = FileType.REGULAR_FILE
  private ownPosition = 0n
  /** Where the offset lives while the guest's worker reads the file itself. */
  private shared: { readonly position: BigInt64Array; readonly index: number } | undefined
  readonly workerReadable: FileDescription["workerReadable"]
  constructor(
    private readonly fd: number,
    private readonly inode: HostInode,
    private readonly options: OpenOptions,
    /** Set for files of a writable tree: what fsync goes through. */
    private readonly handle?: FsP.FileHandle
  ) {
    // Only a file of a read-only tree: what the worker reads cannot change under the sentry.
    this.workerReadable = inode.writes === undefined && options.read && !options.write
      ? {
        hostFd: fd,
        share: (position, index) => {
          position[index] = this.ownPosition
          this.shared = { position, index }
        },
        unshare: () => {
          if (this.shared !== undefined) this.ownPosition = this.shared.position[this.shared.index]!
          this.shared = undefined
        }
      }
      : undefined
  }

  private get position(): bigint {
    return this.shared === undefined ? this.ownPosition : this.shared.position[this.shared.index]!
  }

  private set position(value: bigint) {
    if (this.shared === undefined) this.ownPosition = value
    else this.shared.position[this.shared.index] = value
  }

  read(length: number, offset?: bigint): Effect.Effect<Uint8Array, SyscallError> {
    const buffer = Buffer.allocUnsafe(length)
    return Effect.map(this.readInto(buffer, offset), (n) => buffer.subarray(0, n))
  }

  readInto(target: Uint8Array, offset?: bigint): Effect.Effect<number, SyscallError> {
    if (!this.options.read) return fail(Errno.BADF)
    return host(() => {
      const n = Fs.readSync(this.fd, target, 0, target.length, offset ?? this.position)
      if (offset === undefined) this.position += BigInt(n)
      return n
    })
  }

  write(data: Uint8Array, offset?: bigint): Effect.Effect<number, SyscallError> {
    if (!this.options.write) return fail(Errno.BADF)
    return host(() => {
      // An O_APPEND fd writes at the end whatever the offset, as Linux does.
      const written = Fs.writeSync(this.fd, data, 0, data.length, this.options.append ? null : Number(offset ?? this.position))
      if (offset === undefined) this.position = this.options.append ? Fs.fstatSync(this.fd, { bigint: true }).size : this.position + BigInt(written)
      return written
    })
  }

  seek(delta: bigint, whence: number): Effect.Effect<bigint, SyscallError> {
    return Effect.flatMap(
      whence === Whence.END ? Effect.map(this.stat, (s) => s.size) : Effect.succeed(whence === Whence.CUR ? this.position : 0n),
      (base) => {
        if (whence > Whence.END) return fail(Errno.INVAL)
        const next = base + delta
        if (next < 0n) return fail(Errno.INVAL)
        this.position = next
        return Effect.succeed(next)
      }
    )
  }

  /** The open file's own stat (fstat): right even after the name moved. */
  get stat(): Effect.Effect<Stat, SyscallError> {
    return host(() => toStat(Fs.fstatSync(this.fd, { bigint: true })))
  }

  get close(): Effect.Effect<void> {
    const handle = this.handle
    if (handle !== undefined) return Effect.promise(() => handle.close().catch(() => undefined))
    return Effect.sync(() => {
      try {
        Fs.closeSync(this.fd)
      } catch {
        // Already closed: nothing to release.
      }
    })
  }

  get setSize(): ((size: bigint) => Effect.Effect<void, SyscallError>) | undefined {
    if (this.inode.writes === undefined) return undefined
    return (size) => (this.options.write ? host(() => Fs.ftruncateSync(this.fd, Number(size))) : fail(Errno.BADF))
  }

  get allocate(): ((offset: bigint, length: bigint) => Effect.Effect<void, SyscallError>) | undefined {
    if (this.inode.writes === undefined) return undefined
    // Extends (sparse) and never clobbers: Node has no posix_fallocate.
    return (offset, length) =>
      this.options.write
        ? host(() => {
          if (offset + length > Fs.fstatSync(this.fd, { bigint: true }).size) Fs.ftruncateSync(this.fd, Number(offset + length))
        })
        : fail(Errno.BADF)
  }

  get setTimes(): ((atim: bigint | undefined, mtim: bigint | undefined) => Effect.Effect<void, SyscallError>) | undefined {
    if (this.inode.writes === undefined) return undefined
    return (atim, mtim) =>
      host(() => {
        const st = Fs.fstatSync(this.fd, { bigint: true })
        Fs.futimesSync(this.fd, seconds(atim ?? st.atimeNs), seconds(mtim ?? st.mtimeNs))
      })
  }

  /** fsync / fdatasync of a file of a writable tree (a read-only one has nothing to flush). */
  get sync(): ((dataOnly: boolean) => Effect.Effect<void, SyscallError>) | undefined {
    const handle = this.handle
    if (handle === undefined) return undefined
    return (dataOnly) => Effect.tryPromise({ try: () => (dataOnly ? handle.datasync() : handle.sync()), catch: fromHostError })
  }
}

/**
 * The root inode of a host tree. Fails when `hostRoot` is not a directory; the root itself may
 * be a symlink on the host (it is chosen by the operator, not the guest), so it is resolved once.
 */
export const hostRoot = (hostRoot: string): Effect.Effect<Inode, SyscallError> =>
  Effect.flatMap(hostMount(hostRoot), (inode) => (inode.filetype === FileType.DIRECTORY ? Effect.succeed(inode) : fail(Errno.NOTDIR)))

/**
 * The inode a bind mount of `source` shows: a host directory (confined like the root) or a
 * single regular file, read-only unless `writable`. Resolved once, like the root; anything
 * else is EINVAL.
 */
export const hostMount = (source: string, options: { readonly writable?: boolean } = {}): Effect.Effect<Inode, SyscallError> =>
  Effect.flatMap(host(() => Fs.realpathSync.native(source)), (real) =>
    Effect.flatMap(host(() => lstat(real)), (st) =>
      st.isDirectory() || st.isFile()
        ? Effect.map(
          options.writable === true ? Effect.map(Effect.makeSemaphore(1), (lock) => new HostWrites(lock)) : Effect.succeed(undefined),
          (writes): Inode => new HostInode(real, st, undefined, writes)
        )
        : fail(Errno.INVAL)))
