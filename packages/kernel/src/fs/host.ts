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
 * anything, so it cannot do that. In a writable tree every call runs under the tree's lock,
 * after checking that the directory it acts in is still the one looked up (same device and
 * inode, still a directory, reached without a symlink): the guest's own changes, which take the
 * same lock, cannot slip in between. A host process that swaps directories under a live sandbox
 * is out of scope until the gofer holds directory fds.
 */
import { Errno, FileType, Whence } from "@runsc/abi"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as FsP from "node:fs/promises"
import * as Path from "node:path"
import { fromHostError, SyscallError } from "../errors.js"
import { directoryDescription } from "./directory.js"
import type { DirectoryChanges, DirEntry, FileDescription, Inode, OpenOptions, Stat } from "./inode.js"

const fail = (errno: Errno) => Effect.fail(new SyscallError({ errno }))

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

const host = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: fromHostError })

/**
 * pread on a host fd. The callback `fs.read` is used because it honours a bigint position;
 * FileHandle.read silently treats one as "the current position", and a number loses offsets
 * past 2^53.
 */
export const readAt = (fd: number, length: number, position: bigint | null): Effect.Effect<Uint8Array, SyscallError> =>
  Effect.async<Uint8Array, SyscallError>((resume) => {
    const buffer = Buffer.allocUnsafe(length)
    Fs.read(fd, buffer, 0, length, position as number | null, (error, bytesRead) =>
      resume(error ? Effect.fail(fromHostError(error)) : Effect.succeed(buffer.subarray(0, bytesRead))))
  })

/** pwrite on a host fd (at the end for an O_APPEND fd, as Linux does even with an offset). */
const writeAt = (fd: number, data: Uint8Array, position: bigint | null): Effect.Effect<number, SyscallError> =>
  Effect.async<number, SyscallError>((resume) => {
    Fs.write(fd, data, 0, data.length, position as number | null, (error, written) =>
      resume(error ? Effect.fail(fromHostError(error)) : Effect.succeed(written)))
  })

const lstat = (hostPath: string) => host(() => FsP.lstat(hostPath, { bigint: true }))

/** Host times take seconds as a double: sub-microsecond precision is lost on the host. */
const seconds = (ns: bigint) => Number(ns) / 1e9

/** The lock and checks of a writable host tree (see the module's comment). */
class HostWrites {
  constructor(private readonly semaphore: Effect.Semaphore) {}

  /** Runs `f` under the tree's lock once each of `places` is known to still be where it was looked up. */
  in<A>(places: ReadonlyArray<HostInode>, f: () => Promise<A>): Effect.Effect<A, SyscallError> {
    return this.semaphore.withPermits(1)(Effect.zipRight(Effect.forEach(places, check, { discard: true }), host(f)))
  }
}

/** Fails ENOENT unless `inode`'s host path still names it, through no symlink. */
const check = (inode: HostInode): Effect.Effect<void, SyscallError> =>
  host(async () => {
    const [real, st] = await Promise.all([FsP.realpath(inode.hostPath), FsP.lstat(inode.hostPath, { bigint: true })])
    return real === inode.hostPath && fileTypeOf(st) === inode.filetype && st.dev === inode.lookupStat.dev && st.ino === inode.lookupStat.ino
  }).pipe(Effect.flatMap((same) => (same ? Effect.void : fail(Errno.NOENT))))

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

  /** Runs `f` on this inode's host path: in a writable tree, under the lock, in a checked directory. */
  at<A>(f: (hostPath: string) => Promise<A>): Effect.Effect<A, SyscallError> {
    return this.writes === undefined ? host(() => f(this.hostPath)) : this.writes.in([this.place], () => f(this.hostPath))
  }

  /** Runs `f` on the host path of `name` in this directory, or of the directory itself (see `at`). */
  child<A>(name: string | undefined, f: (hostPath: string) => Promise<A>): Effect.Effect<A, SyscallError> {
    const path = name === undefined ? this.hostPath : Path.join(this.hostPath, name)
    return this.writes === undefined ? host(() => f(path)) : this.writes.in([this], () => f(path))
  }

  get stat(): Effect.Effect<Stat, SyscallError> {
    return Effect.map(this.at((p) => FsP.lstat(p, { bigint: true })), toStat)
  }

  lookup(name: string): Effect.Effect<Inode, SyscallError> {
    if (this.filetype !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
    return this.child(name, async (p) => new HostInode(p, await FsP.lstat(p, { bigint: true }), this, this.writes))
  }

  get readdir(): Effect.Effect<ReadonlyArray<DirEntry>, SyscallError> {
    if (this.filetype !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
    // Listing follows the path to its end: the directory itself must be checked, not only its parent.
    return this.child(undefined, async (dir) => {
      const names = (await FsP.readdir(dir)).sort()
      const entries = await Promise.all(names.map(async (name): Promise<DirEntry | undefined> => {
        // An entry removed between readdir and lstat is simply not listed.
        const st = await FsP.lstat(Path.join(dir, name), { bigint: true }).catch(() => undefined)
        return st && { name, ino: st.ino, filetype: fileTypeOf(st) }
      }))
      return entries.filter((e): e is DirEntry => e !== undefined)
    })
  }

  get readlink(): Effect.Effect<string, SyscallError> {
    if (this.filetype !== FileType.SYMBOLIC_LINK) return fail(Errno.INVAL)
    return this.at((p) => FsP.readlink(p))
  }

  open(options: OpenOptions): Effect.Effect<FileDescription, SyscallError> {
    if (this.filetype === FileType.DIRECTORY) return options.write ? fail(Errno.ISDIR) : Effect.succeed(directoryDescription(this))
    // Devices, sockets and fifos of the host tree are not opened: they could block the sentry
    // or reach host resources.
    if (this.filetype !== FileType.REGULAR_FILE) return fail(Errno.ACCES)
    if (options.write && this.writes === undefined) return fail(Errno.ROFS)
    const { O_APPEND, O_NOFOLLOW, O_RDONLY, O_RDWR, O_WRONLY } = Fs.constants
    const flags = O_NOFOLLOW | (options.write ? (options.read ? O_RDWR : O_WRONLY) | (options.append ? O_APPEND : 0) : O_RDONLY)
    return Effect.map(this.at((p) => FsP.open(p, flags)), (handle) => new HostFileDescription(handle, this, options))
  }

  readonly truncate = (size: bigint): Effect.Effect<void, SyscallError> =>
    this.writes === undefined ? fail(Errno.ROFS) : this.at(async (p) => {
      const handle = await FsP.open(p, Fs.constants.O_WRONLY | Fs.constants.O_NOFOLLOW)
      await handle.truncate(Number(size)).finally(() => handle.close())
    })

  readonly setTimes = (atim: bigint | undefined, mtim: bigint | undefined): Effect.Effect<void, SyscallError> =>
    this.writes === undefined ? fail(Errno.ROFS) : this.at(async (p) => {
      const st = await FsP.lstat(p, { bigint: true })
      // lutimes: a symlink's own times, never its target's.
      await FsP.lutimes(p, seconds(atim ?? st.atimeNs), seconds(mtim ?? st.mtimeNs))
    })
}

/** The changes of a directory of a writable host tree: each a host call on its last component, unfollowed. */
const hostChanges = (dir: HostInode, writes: HostWrites): DirectoryChanges & { readonly directory: HostInode } => ({
  filesystem: writes,
  directory: dir,
  create: (name, mode = 0o644) =>
    Effect.zipRight(
      dir.child(name, async (p) => {
        const { O_CREAT, O_EXCL, O_NOFOLLOW, O_WRONLY } = Fs.constants
        await (await FsP.open(p, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, mode)).close()
      }),
      dir.lookup(name)
    ),
  mkdir: (name, mode = 0o755) => dir.child(name, (p) => FsP.mkdir(p, mode)),
  symlink: (name, target) => dir.child(name, (p) => FsP.symlink(target, p)),
  link: (name, target) => {
    if (!(target instanceof HostInode) || target.writes !== writes) return fail(Errno.XDEV)
    if (target.filetype === FileType.DIRECTORY) return fail(Errno.PERM)
    // link(2) does not follow a symlink it links; both directories are checked under one lock.
    return writes.in([target.place, dir], () => FsP.link(target.hostPath, Path.join(dir.hostPath, name)))
  },
  unlink: (name) =>
    dir.child(name, async (p) => {
      if ((await FsP.lstat(p)).isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" })
      await FsP.unlink(p)
    }),
  rmdir: (name) => dir.child(name, (p) => FsP.rmdir(p)),
  rename: (name, to, toName) => {
    const target = (to as { readonly directory?: unknown }).directory
    if (to.filesystem !== writes || !(target instanceof HostInode)) return fail(Errno.XDEV)
    return writes.in([dir, target], () => FsP.rename(Path.join(dir.hostPath, name), Path.join(target.hostPath, toName)))
  }
})

/** A regular host file, read and written through its own host fd. */
class HostFileDescription implements FileDescription {
  readonly filetype = FileType.REGULAR_FILE
  private position = 0n
  constructor(private readonly handle: FsP.FileHandle, private readonly inode: HostInode, private readonly options: OpenOptions) {}

  read(length: number, offset?: bigint): Effect.Effect<Uint8Array, SyscallError> {
    if (!this.options.read) return fail(Errno.BADF)
    const at = offset ?? this.position
    return Effect.map(readAt(this.handle.fd, length, at), (bytes) => {
      if (offset === undefined) this.position += BigInt(bytes.length)
      return bytes
    })
  }

  write(data: Uint8Array, offset?: bigint): Effect.Effect<number, SyscallError> {
    if (!this.options.write) return fail(Errno.BADF)
    if (this.options.append) {
      return Effect.flatMap(writeAt(this.handle.fd, data, null), (written) =>
        Effect.map(this.fdStat, (st) => {
          if (offset === undefined) this.position = st.size
          return written
        }))
    }
    return Effect.map(writeAt(this.handle.fd, data, offset ?? this.position), (written) => {
      if (offset === undefined) this.position += BigInt(written)
      return written
    })
  }

  seek(delta: bigint, whence: number): Effect.Effect<bigint, SyscallError> {
    return Effect.flatMap(
      whence === Whence.END ? Effect.map(this.fdStat, (s) => s.size) : Effect.succeed(whence === Whence.CUR ? this.position : 0n),
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
  private get fdStat(): Effect.Effect<Stat, SyscallError> {
    return Effect.map(host(() => this.handle.stat({ bigint: true })), toStat)
  }

  get stat(): Effect.Effect<Stat, SyscallError> {
    return this.fdStat
  }

  get close(): Effect.Effect<void> {
    return Effect.promise(() => this.handle.close().catch(() => undefined))
  }

  get setSize(): ((size: bigint) => Effect.Effect<void, SyscallError>) | undefined {
    if (this.inode.writes === undefined) return undefined
    return (size) => (this.options.write ? host(() => this.handle.truncate(Number(size))) : fail(Errno.BADF))
  }

  get allocate(): ((offset: bigint, length: bigint) => Effect.Effect<void, SyscallError>) | undefined {
    if (this.inode.writes === undefined) return undefined
    // Extends (sparse) and never clobbers: Node has no posix_fallocate.
    return (offset, length) =>
      this.options.write
        ? Effect.flatMap(this.fdStat, (st) => offset + length > st.size ? host(() => this.handle.truncate(Number(offset + length))) : Effect.void)
        : fail(Errno.BADF)
  }

  get setTimes(): ((atim: bigint | undefined, mtim: bigint | undefined) => Effect.Effect<void, SyscallError>) | undefined {
    if (this.inode.writes === undefined) return undefined
    return (atim, mtim) =>
      Effect.flatMap(this.fdStat, (st) => host(() => this.handle.utimes(seconds(atim ?? st.atim), seconds(mtim ?? st.mtim))))
  }

  /** fsync / fdatasync of the host file. */
  sync(dataOnly: boolean): Effect.Effect<void, SyscallError> {
    return host(() => (dataOnly ? this.handle.datasync() : this.handle.sync()))
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
  Effect.gen(function*() {
    const real = yield* host(() => FsP.realpath(source))
    const st = yield* lstat(real)
    if (!st.isDirectory() && !st.isFile()) return yield* fail(Errno.INVAL)
    const writes = options.writable === true ? new HostWrites(yield* Effect.makeSemaphore(1)) : undefined
    return new HostInode(real, st, undefined, writes)
  })
