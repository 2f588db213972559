/**
 * The gofer: a host directory tree served read-only to the sandbox.
 *
 * Confinement: an inode is only ever created by `lookup` of one validated component under a
 * directory inode, starting from the root, and each is examined with lstat, so a host symlink
 * is an inode of type symlink (resolved by the sentry inside the container root), never
 * followed by the host. Files are opened with O_NOFOLLOW. The guest cannot create host files
 * (writes fail with EROFS), so it cannot plant a symlink to race these checks; a host-side
 * process that swaps directories for symlinks under a live sandbox is out of scope until the
 * gofer holds directory fds (Node has no openat).
 */
import { Errno, FileType, Whence } from "@runsc/abi"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as FsP from "node:fs/promises"
import * as Path from "node:path"
import { fromHostError, SyscallError } from "../errors.js"
import { directoryDescription } from "./directory.js"
import type { DirEntry, FileDescription, Inode, OpenOptions, Stat } from "./inode.js"

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

const lstat = (hostPath: string) => host(() => FsP.lstat(hostPath, { bigint: true }))

class HostInode implements Inode {
  readonly filetype: FileType
  readonly lookupStat: Stat
  readonly identity: string
  constructor(private readonly hostPath: string, st: Fs.BigIntStats) {
    this.filetype = fileTypeOf(st)
    this.lookupStat = toStat(st)
    this.identity = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
  }

  get stat(): Effect.Effect<Stat, SyscallError> {
    return Effect.map(lstat(this.hostPath), toStat)
  }

  lookup(name: string): Effect.Effect<Inode, SyscallError> {
    if (this.filetype !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
    const child = Path.join(this.hostPath, name)
    return Effect.map(lstat(child), (st) => new HostInode(child, st))
  }

  get readdir(): Effect.Effect<ReadonlyArray<DirEntry>, SyscallError> {
    if (this.filetype !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
    return host(async () => {
      const names = (await FsP.readdir(this.hostPath)).sort()
      const entries = await Promise.all(names.map(async (name): Promise<DirEntry | undefined> => {
        // An entry removed between readdir and lstat is simply not listed.
        const st = await FsP.lstat(Path.join(this.hostPath, name), { bigint: true }).catch(() => undefined)
        return st && { name, ino: st.ino, filetype: fileTypeOf(st) }
      }))
      return entries.filter((e): e is DirEntry => e !== undefined)
    })
  }

  get readlink(): Effect.Effect<string, SyscallError> {
    if (this.filetype !== FileType.SYMBOLIC_LINK) return fail(Errno.INVAL)
    return host(() => FsP.readlink(this.hostPath))
  }

  open(options: OpenOptions): Effect.Effect<FileDescription, SyscallError> {
    if (options.write) return fail(this.filetype === FileType.DIRECTORY ? Errno.ISDIR : Errno.ROFS)
    switch (this.filetype) {
      case FileType.DIRECTORY:
        return Effect.succeed(directoryDescription(this))
      case FileType.REGULAR_FILE:
        return Effect.map(
          host(() => FsP.open(this.hostPath, Fs.constants.O_RDONLY | Fs.constants.O_NOFOLLOW)),
          (handle) => new HostFileDescription(handle, this)
        )
      default:
        // Devices, sockets and fifos of the host tree are not opened: they could block the
        // sentry or reach host resources.
        return fail(Errno.ACCES)
    }
  }

}

/** A read-only regular host file, read through its own host fd. */
class HostFileDescription implements FileDescription {
  readonly filetype = FileType.REGULAR_FILE
  private position = 0n
  constructor(private readonly handle: FsP.FileHandle, private readonly inode: Inode) {}

  read(length: number, offset?: bigint): Effect.Effect<Uint8Array, SyscallError> {
    const at = offset ?? this.position
    return Effect.map(readAt(this.handle.fd, length, at), (bytes) => {
      if (offset === undefined) this.position += BigInt(bytes.length)
      return bytes
    })
  }

  write(): Effect.Effect<number, SyscallError> {
    return fail(Errno.BADF)
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

  get stat(): Effect.Effect<Stat, SyscallError> {
    return this.inode.stat
  }

  get close(): Effect.Effect<void> {
    return Effect.promise(() => this.handle.close().catch(() => undefined))
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
 * single regular file. Resolved once, like the root; anything else is EINVAL.
 */
export const hostMount = (source: string): Effect.Effect<Inode, SyscallError> =>
  Effect.flatMap(host(() => FsP.realpath(source)), (real) =>
    Effect.flatMap(lstat(real), (st) =>
      st.isDirectory() || st.isFile() ? Effect.succeed<Inode>(new HostInode(real, st)) : fail(Errno.INVAL)))
