/**
 * The gofer: a host directory tree, or a single host file, served to the sandbox, read-only (the
 * root under its overlay, `ro` bind mounts) or writable (`rw` bind mounts: the guest's changes
 * reach the host).
 *
 * Confinement is the native core's (goferCore.ts, native/gofer.c). A tree is a descriptor
 * (O_PATH) of the mount's source, which the core opens by its path when the tree is mounted and
 * closes with the mount's scope. Every later host call resolves down from that descriptor,
 * following no host symlink (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or openat with
 * O_NOFOLLOW one component at a time), to the directory the call acts in; checks that this is
 * still the directory the sentry looked up (device and inode); and acts on one entry of it,
 * relative to it and unfollowed. No call after the mount names a host path. So a guest that
 * renames directories or plants symlinks through another mount of the same host tree (or another
 * sandbox, through its own mounts) cannot make a call reach outside the tree. A directory that
 * moved or was replaced under an inode the sentry holds is ENOENT below it; a file that was
 * replaced is ENOENT to open.
 *
 * A host symlink is an inode of type symlink, resolved by the sentry inside the container root.
 * Devices, FIFOs and sockets of the host tree are never read or written, and never handed to a
 * guest: they could block the sentry or reach host resources. One the sentry looked up as such
 * is refused without a host call (EACCES); one swapped in for a file after the lookup is at most
 * opened by the core, non-blocking and O_NOCTTY, found by fstat not to be a regular file and
 * closed at once (refused too), so it cannot block the sentry either.
 *
 * Host calls are synchronous: on a local filesystem one takes microseconds, and a round trip
 * through libuv's thread pool costs 80-170 µs more. The price: a slow host filesystem (NFS,
 * FUSE) stalls the sentry for as long as each call takes. Each call runs to its end before the
 * sentry does anything else, so no guest's change comes between its steps.
 */
import { Errno, FileType, Whence } from "@runsc/abi"
import { Effect, Exit, type Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { fail, fromHostError, type GoferUnavailable, type SyscallError } from "../errors.js"
import { flatMapNow, mapNow } from "../settled.js"
import { directoryDescription } from "./directory.js"
import { coreError, failed, fileTypeOfMode, goferCore, readStat, statBuffer } from "./goferCore.js"
import type { HostFdBudget } from "./hostFds.js"
import type { HostSocketFiles } from "./hostSocketFiles.js"
import type { DirectoryChanges, DirEntry, FileDescription, Inode, OpenOptions, Stat } from "./inode.js"

/** Node's stat of a host fd as a FileType (host stdio, which the sandbox process was given). */
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

type Core = Effect.Effect.Success<typeof goferCore>

/**
 * A core call's result, settled (see settled.ts): the call is made now, when `call` is called,
 * and its errno is the failure. Host calls on this tree never wait for another party (only
 * directories and regular files are ever opened), so they run on the sentry's thread.
 */
const call = <A>(f: () => A | number): Effect.Effect<A, SyscallError> => {
  const result = f()
  return failed(result) ? Exit.fail(coreError(result)) : Exit.succeed(result as A)
}

/**
 * The stat a core call filled `statBuffer` with: read in the same synchronous step as the call,
 * since the buffer is shared and the fiber may yield between two steps.
 */
const withStat = (result: number): Stat | number => (failed(result) ? result : readStat())

/** A Node fd call (reads, writes, truncation on a regular file the core opened), made now; settled. */
const host = <A>(f: () => A): Effect.Effect<A, SyscallError> => {
  try {
    return Exit.succeed(f())
  } catch (error) {
    return Exit.fail(fromHostError(error))
  }
}

/** The largest file offset (off_t). */
const MAX_OFFSET = (1n << 63n) - 1n

/** "Leave this time as it is", to the core. */
const OMIT = -1n
const ENOENT = -Os.constants.errno.ENOENT

const { O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_WRONLY } = Fs.constants

/** A mounted host tree: the descriptor every call starts from, held until the mount's scope closes. */
class HostTree {
  constructor(
    readonly core: Core,
    private descriptor: number,
    readonly writable: boolean,
    /** What counts the descriptors the tree holds for guests: its own and its open files'. */
    readonly fds: HostFdBudget,
    /** The sandbox's sockets bound to host socket files (none: no socket file reaches one). */
    readonly sockets: HostSocketFiles | undefined
  ) {}

  /** -1 once closed, which every call then fails with EBADF: a closed number may be reused by another file. */
  get fd(): number {
    return this.descriptor
  }

  close(): void {
    if (this.descriptor < 0) return
    this.core.close(this.descriptor)
    this.fds.give()
    this.descriptor = -1
  }
}

class HostInode implements Inode {
  readonly filetype: FileType
  readonly identity: string | undefined
  readonly changes?: DirectoryChanges
  /** Below the tree's root ("" for the root itself): where the core walks to when this is a directory. */
  readonly path: string

  constructor(
    readonly tree: HostTree,
    /** The directory it was looked up in (undefined for the tree's root). */
    private readonly parent: HostInode | undefined,
    /** Its name in `parent`. */
    readonly name: string,
    readonly lookupStat: Stat
  ) {
    this.filetype = lookupStat.filetype
    this.path = parent === undefined ? "" : parent.path === "" ? name : `${parent.path}/${name}`
    // What the guest may change cannot be cached by what it was at lookup.
    this.identity = tree.writable ? undefined : `${lookupStat.dev}:${lookupStat.ino}:${lookupStat.size}:${lookupStat.mtim}:${lookupStat.ctim}`
    if (tree.writable && this.filetype === FileType.DIRECTORY) this.changes = hostChanges(this)
  }

  /** The core's arguments naming this directory: the tree, the path below it, and what it was looked up as. */
  dirCall<A>(f: (core: Core, root: number, dir: string, dev: bigint, ino: bigint) => A | number): Effect.Effect<A, SyscallError> {
    return call(() => f(this.tree.core, this.tree.fd, this.path, this.lookupStat.dev, this.lookupStat.ino))
  }

  /**
   * A core call on this inode itself: made in its directory on its name, or, for the tree's root,
   * on the root directory itself (name ""). A tree whose root is a file has no directory: see `isFileRoot`.
   */
  selfCall<A>(f: (core: Core, root: number, dir: string, dev: bigint, ino: bigint, name: string) => A | number): Effect.Effect<A, SyscallError> {
    const at = this.parent ?? this
    return at.dirCall((core, root, dir, dev, ino) => f(core, root, dir, dev, ino, this.parent === undefined ? "" : this.name))
  }

  /** A socket file's socket, where the sandbox bound one to it (hostSocketFiles.ts). */
  get boundSocket(): object | undefined {
    return this.filetype === FileType.SOCKET_STREAM ? this.tree.sockets?.find(this.lookupStat.dev, this.lookupStat.ino) : undefined
  }

  /** A bind mount of a single file: its tree's descriptor is the file itself. */
  private get isFileRoot(): boolean {
    return this.parent === undefined && this.filetype !== FileType.DIRECTORY
  }

  // stat, readdir and readlink are effects that may be kept and run later (an open
  // directory's stat): they call the core when run. `statNow` calls it at once.
  get stat(): Effect.Effect<Stat, SyscallError> {
    return Effect.suspend(() => this.statNow())
  }

  statNow(): Effect.Effect<Stat, SyscallError> {
    if (this.isFileRoot) return call(() => withStat(this.tree.core.fstat(this.tree.fd, statBuffer)))
    return this.selfCall((core, root, dir, dev, ino, name) => withStat(core.stat(root, dir, dev, ino, name, statBuffer)))
  }

  lookup(name: string): Effect.Effect<Inode, SyscallError> {
    if (this.filetype !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
    // A missing name is common (PATH searches, O_CREAT): the core answers it without an exception.
    return mapNow(
      this.dirCall((core, root, dir, dev, ino) => withStat(core.stat(root, dir, dev, ino, name, statBuffer))),
      (st): Inode => new HostInode(this.tree, this, name, st)
    )
  }

  get readdir(): Effect.Effect<ReadonlyArray<DirEntry>, SyscallError> {
    if (this.filetype !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
    return Effect.suspend(() =>
      mapNow(
        this.dirCall((core, root, dir, dev, ino) => core.readdir(root, dir, dev, ino)),
        ([names, inos, modes]) => names.map((name, i): DirEntry => ({ name, ino: inos[i]!, filetype: fileTypeOfMode(modes[i]!) })).sort(byName)
      ))
  }

  get readlink(): Effect.Effect<string, SyscallError> {
    if (this.filetype !== FileType.SYMBOLIC_LINK) return fail(Errno.INVAL)
    return Effect.suspend(() => this.selfCall((core, root, dir, dev, ino, name) => core.readlink(root, dir, dev, ino, name)))
  }

  /** A host fd of this regular file, opened with `flags`, checked to be the file looked up. */
  private openHost(flags: number): Effect.Effect<number, SyscallError> {
    const checked = (core: Core, fd: number): number => {
      if (failed(fd) || (statBuffer[0] === BigInt.asIntN(64, this.lookupStat.dev) && statBuffer[1] === BigInt.asIntN(64, this.lookupStat.ino))) return fd
      // Another file has taken the name since the lookup.
      core.close(fd)
      return -ENOENT
    }
    return this.isFileRoot
      ? call(() => checked(this.tree.core, this.tree.core.reopen(this.tree.fd, flags, statBuffer)))
      : this.selfCall((core, root, dir, dev, ino, name) => checked(core, core.open(root, dir, dev, ino, name, flags, 0, statBuffer)))
  }

  open(options: OpenOptions): Effect.Effect<FileDescription, SyscallError> {
    if (this.filetype === FileType.DIRECTORY) return options.write ? fail(Errno.ISDIR) : Effect.succeed(directoryDescription(this))
    if (this.filetype !== FileType.REGULAR_FILE) return fail(Errno.ACCES)
    if (options.write && !this.tree.writable) return fail(Errno.ROFS)
    const flags = options.write ? (options.read ? O_RDWR : O_WRONLY) : O_RDONLY
    const fds = this.tree.fds
    const counted = options.transient !== true
    if (counted && !fds.take()) return fail(Errno.NFILE)
    const opened = this.openHost(flags)
    if (Exit.isExit(opened) && Exit.isFailure(opened) && counted) fds.give()
    return mapNow(opened, (fd): FileDescription => new HostFileDescription(fd, this, options, counted))
  }

  readonly truncate = (size: bigint): Effect.Effect<void, SyscallError> =>
    !this.tree.writable ? fail(Errno.ROFS) : flatMapNow(this.openHost(O_WRONLY), (fd) =>
      host(() => {
        try {
          Fs.ftruncateSync(fd, Number(size))
        } finally {
          Fs.closeSync(fd)
        }
      }))

  readonly setTimes = (atim: bigint | undefined, mtim: bigint | undefined): Effect.Effect<void, SyscallError> => {
    if (!this.tree.writable) return fail(Errno.ROFS)
    if (this.isFileRoot) {
      return flatMapNow(this.openHost(O_RDONLY), (fd) =>
        call(() => {
          const result = this.tree.core.futimens(fd, atim ?? OMIT, mtim ?? OMIT)
          this.tree.core.close(fd)
          return result
        }))
    }
    // A symlink's own times, never its target's.
    return this.selfCall((core, root, dir, dev, ino, name) => core.utimens(root, dir, dev, ino, name, atim ?? OMIT, mtim ?? OMIT))
  }
}

const byName = (a: DirEntry, b: DirEntry) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)

/** The changes of a directory of a writable host tree: each one core call on one entry, unfollowed. */
const hostChanges = (dir: HostInode): DirectoryChanges & { readonly directory: HostInode } => ({
  filesystem: dir.tree,
  directory: dir,
  // A socket file on the host, which names the guest's socket through the sandbox's registry.
  ...(dir.tree.sockets === undefined ? {} : {
    bindSocket: (name: string, _kind: FileType, socket: object, mode = 0o755) =>
      mapNow(
        dir.dirCall((core, root, path, dev, ino) => withStat(core.mksock(root, path, dev, ino, name, mode, statBuffer))),
        (st) => dir.tree.sockets!.add(st.dev, st.ino, socket)
      )
  }),
  create: (name, mode = 0o644) =>
    mapNow(
      dir.dirCall((core, root, path, dev, ino) => {
        const fd = core.open(root, path, dev, ino, name, O_CREAT | O_EXCL | O_WRONLY, mode, statBuffer)
        if (failed(fd)) return fd
        core.close(fd)
        return readStat()
      }),
      (st): Inode => new HostInode(dir.tree, dir, name, st)
    ),
  createOpen: (name, options) => {
    const counted = options.transient !== true
    if (counted && !dir.tree.fds.take()) return fail(Errno.NFILE)
    const access = options.write ? (options.read ? O_RDWR : O_WRONLY) : O_RDONLY
    const made = dir.dirCall((core, root, path, dev, ino) => {
      const fd = core.open(root, path, dev, ino, name, O_CREAT | O_EXCL | access, 0o644, statBuffer)
      return failed(fd) ? fd : { fd, st: readStat() }
    })
    if (Exit.isExit(made) && Exit.isFailure(made) && counted) dir.tree.fds.give()
    return mapNow(made, ({ fd, st }) => {
      const inode = new HostInode(dir.tree, dir, name, st)
      return { inode, description: new HostFileDescription(fd, inode, options, counted) }
    })
  },
  mkdir: (name, mode = 0o755) => dir.dirCall((core, root, path, dev, ino) => core.mkdir(root, path, dev, ino, name, mode)),
  symlink: (name, target) => dir.dirCall((core, root, path, dev, ino) => core.symlink(target, root, path, dev, ino, name)),
  link: (name, target) => {
    if (!(target instanceof HostInode) || target.tree !== dir.tree) return fail(Errno.XDEV)
    if (target.filetype === FileType.DIRECTORY) return fail(Errno.PERM)
    // The file's own directory and name, and the file it must still be there.
    return target.selfCall((core, root, fromDir, fromDev, fromIno, fromName) =>
      core.link(root, fromDir, fromDev, fromIno, fromName, target.lookupStat.ino, root, dir.path, dir.lookupStat.dev, dir.lookupStat.ino, name))
  },
  unlink: (name) => dir.dirCall((core, root, path, dev, ino) => core.unlink(root, path, dev, ino, name, false)),
  rmdir: (name) => dir.dirCall((core, root, path, dev, ino) => core.unlink(root, path, dev, ino, name, true)),
  rename: (name, to, toName) => {
    const target = (to as { readonly directory?: unknown }).directory
    if (to.filesystem !== dir.tree || !(target instanceof HostInode)) return fail(Errno.XDEV)
    return dir.dirCall((core, root, path, dev, ino) =>
      core.rename(root, path, dev, ino, name, root, target.path, target.lookupStat.dev, target.lookupStat.ino, toName))
  }
})

/** A regular host file, read and written through its own host fd. */
class HostFileDescription implements FileDescription {
  readonly filetype = FileType.REGULAR_FILE
  private ownPosition = 0n
  /** Where the offset lives while the guest's worker serves the file itself. */
  private shared: { readonly position: BigInt64Array; readonly index: number } | undefined
  readonly lendable: FileDescription["lendable"]
  constructor(
    private readonly fd: number,
    private readonly inode: HostInode,
    private readonly options: OpenOptions,
    /** Whether its descriptor counts in the sandbox's budget (see OpenOptions.transient). */
    private readonly counted: boolean
  ) {
    // Reads, writes, seeks and fstat on the host fd are all this description does, beside its
    // offset (an APPEND fd's writes stay with the sentry: lendFastPaths lends it no writes).
    this.lendable = {
      hostFd: fd,
      file: { readable: options.read, writable: inode.tree.writable && options.write, hostStat: true },
      share: (position, index) => {
        position[index] = this.ownPosition
        this.shared = { position, index }
      },
      unshare: () => {
        if (this.shared !== undefined) this.ownPosition = this.shared.position[this.shared.index]!
        this.shared = undefined
      }
    }
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
    return mapNow(this.readInto(buffer, offset), (n) => buffer.subarray(0, n))
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
      const written = Fs.writeSync(this.fd, data, 0, data.length, Number(offset ?? this.position))
      if (offset === undefined) this.position += BigInt(written)
      return written
    })
  }

  get append(): ((data: Uint8Array) => Effect.Effect<number, SyscallError>) | undefined {
    if (!this.inode.tree.writable) return undefined
    return (data) =>
      this.options.write
        ? call(() => {
          const written = this.inode.tree.core.appendWrite(this.fd, data, statBuffer)
          // Where this write ended, not the file's size now: another writer may follow at once.
          if (!failed(written)) this.position = statBuffer[0]!
          return written
        })
        : fail(Errno.BADF)
  }

  seek(delta: bigint, whence: number): Effect.Effect<bigint, SyscallError> {
    return flatMapNow(
      whence === Whence.END ? mapNow(this.statNow(), (s) => s.size) : Effect.succeed(whence === Whence.CUR ? this.position : 0n),
      (base) => {
        if (whence > Whence.END) return fail(Errno.INVAL)
        const next = base + delta
        // Past the largest offset (2^63 - 1) is EINVAL, as Linux's lseek answers.
        if (next < 0n || next > MAX_OFFSET) return fail(Errno.INVAL)
        this.position = next
        return Effect.succeed(next)
      }
    )
  }

  /** The open file's own stat (fstat): right even after the name moved. */
  get stat(): Effect.Effect<Stat, SyscallError> {
    return Effect.suspend(() => this.statNow())
  }

  statNow(): Effect.Effect<Stat, SyscallError> {
    return call(() => withStat(this.inode.tree.core.fstat(this.fd, statBuffer)))
  }

  get close(): Effect.Effect<void> {
    return Effect.sync(() => this.closeHost())
  }

  closeNow(): Effect.Effect<void> {
    this.closeHost()
    return Effect.void
  }

  private closed = false

  /** Once: a second close must not close a number since reused, nor give the budget back twice. */
  private closeHost(): void {
    if (this.closed) return
    this.closed = true
    this.inode.tree.core.close(this.fd)
    if (this.counted) this.inode.tree.fds.give()
  }

  get setSize(): ((size: bigint) => Effect.Effect<void, SyscallError>) | undefined {
    if (!this.inode.tree.writable) return undefined
    return (size) => (this.options.write ? host(() => Fs.ftruncateSync(this.fd, Number(size))) : fail(Errno.BADF))
  }

  get allocate(): ((offset: bigint, length: bigint) => Effect.Effect<void, SyscallError>) | undefined {
    if (!this.inode.tree.writable) return undefined
    // Extends (sparse) and never clobbers: Node has no posix_fallocate.
    return (offset, length) =>
      this.options.write
        ? host(() => {
          if (offset + length > Fs.fstatSync(this.fd, { bigint: true }).size) Fs.ftruncateSync(this.fd, Number(offset + length))
        })
        : fail(Errno.BADF)
  }

  get setTimes(): ((atim: bigint | undefined, mtim: bigint | undefined) => Effect.Effect<void, SyscallError>) | undefined {
    if (!this.inode.tree.writable) return undefined
    return (atim, mtim) => call(() => this.inode.tree.core.futimens(this.fd, atim ?? OMIT, mtim ?? OMIT))
  }

  /** fsync / fdatasync of a file of a writable tree (a read-only one has nothing to flush). */
  get sync(): ((dataOnly: boolean) => Effect.Effect<void, SyscallError>) | undefined {
    if (!this.inode.tree.writable) return undefined
    return (dataOnly) => call(() => this.inode.tree.core.fsync(this.fd, dataOnly))
  }
}

export interface HostMountOptions {
  readonly writable?: boolean
  /**
   * The sandbox's budget of host descriptors (ENFILE past it): the kernel's (`Kernel.hostFds`),
   * which all of a sandbox's mounts share, so that together they leave the sandbox its own.
   */
  readonly fds: HostFdBudget
  /** The sandbox's sockets bound to host socket files (`Kernel.hostSockets`), which all its mounts share. */
  readonly sockets?: HostSocketFiles
  /**
   * The tree's descriptor, opened by someone else (donation.ts) and now the mount's: `source`
   * is then only its name, never opened.
   */
  readonly donated?: number
}

/**
 * The inode a bind mount of `source` shows: a host directory or a single regular file,
 * read-only unless `writable`; anything else is EINVAL. `source` is the operator's choice, so
 * symlinks in it are followed, once, here (or by the donor); below it none ever is. The tree's
 * descriptor is closed when the scope closes, after which every call on its inodes fails EBADF.
 */
export const hostMount = (source: string, options: HostMountOptions): Effect.Effect<Inode, SyscallError | GoferUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const core = yield* goferCore
    const fds = options.fds
    const tree = yield* Effect.acquireRelease(
      Effect.suspend(() => {
        if (!fds.take()) {
          if (options.donated !== undefined) core.close(options.donated)
          return fail(Errno.NFILE)
        }
        const fd = options.donated ?? core.openRoot(source)
        if (!failed(fd)) return Effect.succeed(new HostTree(core, fd, options.writable === true, fds, options.sockets))
        fds.give()
        return Effect.fail(coreError(fd))
      }),
      (tree) => Effect.sync(() => tree.close())
    )
    const st = yield* call(() => withStat(core.fstat(tree.fd, statBuffer)))
    if (st.filetype !== FileType.DIRECTORY && st.filetype !== FileType.REGULAR_FILE) return yield* fail(Errno.INVAL)
    return new HostInode(tree, undefined, "", st)
  })

/** The root inode of a host directory tree (see `hostMount`); ENOTDIR when `hostRoot` is not a directory. */
export const hostRoot = (hostRoot: string, options: Pick<HostMountOptions, "fds" | "donated" | "sockets">): Effect.Effect<Inode, SyscallError | GoferUnavailable, Scope.Scope> =>
  Effect.flatMap(hostMount(hostRoot, options), (inode) => (inode.filetype === FileType.DIRECTORY ? Effect.succeed(inode) : fail(Errno.NOTDIR)))
