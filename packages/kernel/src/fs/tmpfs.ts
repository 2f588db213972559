/**
 * tmpfs: a filesystem that lives in the sentry's memory — directories, regular files, symlinks
 * and hard links — for the spec's tmpfs mounts and the overlay's upper layer.
 *
 * Invariants: every node belongs to exactly one Tmpfs, whose byte count is the sum of the sizes
 * of its files that have a name or an open description (an unlinked file's data lives until its
 * last close, as on Linux, and counts until then) and never exceeds its limit (`size=`), nor the sandbox's memory account that all its
 * in-memory filesystems share: a write or truncate that would go past either fails ENOSPC and
 * changes nothing. Every node and name is charged to that account's heap share too
 * (`chargeHeap`), from the change that makes it until it is gone: a node while it has a name (a
 * regular file: or an open description), a name while it is in its directory. So a guest making
 * empty files, directories or links meets ENOSPC, as at Linux's nr_inodes, long before the
 * sentry's heap is full. A directory's entries never include "." or "..". Link counts follow
 * POSIX: a file's nlink is its number of names; a directory's is 2 + its subdirectories.
 */
import { Errno, FileType, Whence } from "@runsc/abi"
import { type Clock, Effect, Exit } from "effect"
import { fail, type SyscallError } from "../errors.js"
import type { MemoryAccount } from "../memoryAccount.js"
import { asVoidNow, mapNow } from "../settled.js"
import { directoryDescription } from "./directory.js"
import type { DirectoryChanges, DirEntry, FileDescription, Inode, OpenOptions, Stat } from "./inode.js"

/** Whether `file`'s data must be kept (and counted): it has a name, or an open description. */
const isHeld = (file: FileNode): boolean => file.nlink > 0n || file.opens > 0

/** Past this a file is EFBIG (128 TiB: far beyond any sandbox's memory, which refuses first). */
const MAX_FILE_SIZE = 2 ** 47
/** A file's data lives in pages of this many bytes. */
const PAGE = 64 * 1024

/**
 * File data in fixed pages, each allocated when first written: growing a file copies nothing
 * (one growing array copied a 64 MiB file's bytes 2 GiB over), and a hole costs no memory.
 */
class Pages {
  private readonly pages: Array<Uint8Array | undefined> = []

  /** Copies `data` in at `at`, all or nothing; false when the sentry's heap has no room for a page. */
  write(data: Uint8Array, at: number): boolean {
    const first = Math.floor(at / PAGE)
    const last = Math.floor((at + data.length - 1) / PAGE)
    try {
      for (let p = first; p <= last; p++) this.pages[p] ??= new Uint8Array(PAGE)
    } catch {
      return false
    }
    for (let done = 0; done < data.length;) {
      const position = at + done
      const offset = position % PAGE
      const take = Math.min(PAGE - offset, data.length - done)
      this.pages[Math.floor(position / PAGE)]!.set(data.subarray(done, done + take), offset)
      done += take
    }
    return true
  }

  /** Fills `target` from `at` (a hole reads as zeros). */
  read(target: Uint8Array, at: number): void {
    for (let done = 0; done < target.length;) {
      const position = at + done
      const offset = position % PAGE
      const take = Math.min(PAGE - offset, target.length - done)
      const page = this.pages[Math.floor(position / PAGE)]
      if (page === undefined) target.fill(0, done, done + take)
      else target.set(page.subarray(offset, offset + take), done)
      done += take
    }
  }

  /** Forgets every byte from `size` on, so that growing the file again reads zeros there. */
  truncate(size: number): void {
    const kept = Math.ceil(size / PAGE)
    if (this.pages.length > kept) this.pages.length = kept
    if (size % PAGE !== 0) this.pages[kept - 1]?.fill(0, size % PAGE)
  }
}

/**
 * What a tmpfs node is charged for the sentry's heap it holds beyond its file data: its object,
 * its Inode view and the view's closures (measured on Node 20: a file ~1.0 KiB, a directory ~2.0
 * KiB, a symbolic link ~0.9 KiB and its target), with room for an overlay's node when the tmpfs
 * is an upper layer. A directory is charged twice this.
 */
export const NODE_HEAP = 1536
const DIRECTORY_HEAP = 2 * NODE_HEAP
/** A name's: its entry in its directory's map, and its string (2 bytes a unit: it need not be Latin-1). */
export const nameHeap = (name: string): number => 64 + 2 * name.length
const linkHeap = (target: string): number => NODE_HEAP + 2 * target.length

/** tmpfs device numbers start here ("TMP" << 8); each instance takes the next. */
const TMPFS_DEV_BASE = 0x544d5000n

interface Times {
  atim: bigint
  mtim: bigint
  ctim: bigint
}

type Node = FileNode | DirNode | LinkNode | SocketNode

interface Common {
  readonly ino: bigint
  mode: number
  nlink: bigint
  readonly times: Times
}

interface FileNode extends Common {
  readonly type: typeof FileType.REGULAR_FILE
  readonly data: Pages
  size: number
  /** Open descriptions of it: with its names, what keeps its data (and its bytes counted). */
  opens: number
}

interface DirNode extends Common {
  readonly type: typeof FileType.DIRECTORY
  readonly entries: Map<string, Node>
}

interface LinkNode extends Common {
  readonly type: typeof FileType.SYMBOLIC_LINK
  readonly target: string
}

/**
 * A Unix socket's file: what its bind made, naming the socket a connect to the path reaches.
 * Held weakly: a file that outlives its socket (until unlinked) does not keep it.
 */
interface SocketNode extends Common {
  readonly type: typeof FileType.SOCKET_STREAM | typeof FileType.SOCKET_DGRAM
  readonly socket: WeakRef<object>
}

/**
 * Gives back to the sandbox's memory account what the in-memory filesystem rooted at `root`
 * holds (a tmpfs mount or an overlay root of a container that is gone); nothing for others.
 */
export const releaseMemory = (root: Inode): void => {
  const filesystem = root.changes?.filesystem as { readonly detach?: () => void } | undefined
  filesystem?.detach?.()
}

const notDirectory = (): Effect.Effect<never, SyscallError> => fail(Errno.NOTDIR)
const notDirectoryNow = fail(Errno.NOTDIR)
const notLink = fail(Errno.INVAL)

/** One tmpfs instance: its device number, inode numbers and byte budget. */
export class Tmpfs {
  private nextIno = 1n
  private used = 0
  private heap = 0

  private constructor(
    readonly limit: number,
    readonly dev: bigint,
    private account: MemoryAccount | undefined,
    /** Read synchronously, so that a file's reads and writes answer settled (see settled.ts). */
    private readonly clock: Clock.Clock
  ) {}

  /**
   * A new empty tmpfs of at most `limit` bytes of file data (and within `account`, when given);
   * its root directory's inode.
   */
  static make(options: {
    readonly limit?: number
    readonly mode?: number
    readonly instance: number
    readonly account?: MemoryAccount | undefined
  }): Effect.Effect<Inode> {
    return Effect.clockWith((clock) =>
      Effect.sync(() => {
        const fs = new Tmpfs(options.limit ?? Number.MAX_SAFE_INTEGER, TMPFS_DEV_BASE + BigInt(options.instance), options.account, clock)
        return fs.inode(fs.node<DirNode>({ type: FileType.DIRECTORY, mode: options.mode ?? 0o1777, entries: new Map() }, fs.now()))
      }))
  }

  private now(): bigint {
    return this.clock.unsafeCurrentTimeNanos()
  }

  /** Bytes of file data held now. */
  get bytesUsed(): number {
    return this.used
  }

  /** Heap bytes its nodes and names are charged now (NODE_HEAP, nameHeap, ...). */
  get heapUsed(): number {
    return this.heap
  }

  /** Charges `bytes` of nodes or names to the account's heap share; false (nothing charged) when refused. */
  private chargeHeap(bytes: number): boolean {
    if (this.account !== undefined && !this.account.chargeHeap(bytes)) return false
    this.heap += bytes
    return true
  }

  private releaseHeap(bytes: number): void {
    this.heap -= bytes
    this.account?.releaseHeap(bytes)
  }

  /** `node` has lost a name: when it was the last one (and, for a file, no description holds it), the node goes. */
  private lostName(node: Node): void {
    if (node.type === FileType.DIRECTORY) {
      node.nlink = 0n
      this.releaseHeap(DIRECTORY_HEAP)
      return
    }
    node.nlink--
    if (node.type === FileType.REGULAR_FILE) this.letGo(node)
    else if (node.nlink === 0n) this.releaseHeap(node.type === FileType.SYMBOLIC_LINK ? linkHeap(node.target) : NODE_HEAP)
  }

  /** A new node from `fields`, a literal of the caller's that becomes the node (no spread: see makeInode). */
  private node<T extends Node>(fields: Omit<T, "ino" | "times" | "nlink">, now: bigint): T {
    return Object.assign(fields, { ino: this.nextIno++, nlink: fields.type === FileType.DIRECTORY ? 2n : 1n, times: { atim: now, mtim: now, ctim: now } }) as unknown as T
  }

  /**
   * Grows or shrinks `file` to `size` bytes (zero-filled), within the byte budget, which counts
   * every file that has a name or an open description; the errno when that is refused.
   */
  private resizeNow(file: FileNode, size: number): Errno | undefined {
    if (size > MAX_FILE_SIZE || size < 0) return Errno.FBIG
    const counted = isHeld(file)
    const growth = size - file.size
    if (counted && growth > 0 && (this.used + growth > this.limit || (this.account !== undefined && !this.account.charge(growth)))) {
      return Errno.NOSPC
    }
    if (size < file.size) file.data.truncate(size)
    if (counted) this.count(growth, growth > 0)
    file.size = size
    return undefined
  }

  /** `file` has lost its last name or its last open description: if both, its data goes, and its bytes with it. */
  private letGo(file: FileNode): void {
    if (isHeld(file)) return
    this.count(-file.size)
    file.data.truncate(0)
    file.size = 0
    this.releaseHeap(NODE_HEAP)
  }

  /** Gives this filesystem's bytes back to the sandbox's account (its container is gone). */
  detach(): void {
    this.account?.release(this.used)
    this.account?.releaseHeap(this.heap)
    this.account = undefined
  }

  /** Counts `bytes` (negative: given back) in this filesystem and, unless `charged` already, its account. */
  private count(bytes: number, charged = false): void {
    this.used += bytes
    if (!charged) this.account?.release(-bytes)
  }

  private stat(node: Node): Stat {
    return {
      dev: this.dev,
      ino: node.ino,
      filetype: node.type,
      nlink: node.nlink,
      size: BigInt(node.type === FileType.REGULAR_FILE ? node.size : node.type === FileType.SYMBOLIC_LINK ? Buffer.byteLength(node.target) : 0),
      atim: node.times.atim,
      mtim: node.times.mtim,
      ctim: node.times.ctim,
      mode: node.mode
    }
  }

  /**
   * Sets `node`'s access and/or modification time (undefined: unchanged); its ctime is now.
   * Like every change here, done when called, and answered settled (see settled.ts).
   */
  private setTimes(node: Node) {
    return (atim: bigint | undefined, mtim: bigint | undefined): Effect.Effect<void> => {
      const now = this.now()
      if (atim !== undefined) node.times.atim = atim
      if (mtim !== undefined) node.times.mtim = mtim
      node.times.ctim = now
      return Effect.void
    }
  }

  private touch(node: Node, which: "m" | "c"): Effect.Effect<void> {
    const now = this.now()
    if (which === "m") node.times.mtim = now
    node.times.ctim = now
    return Effect.void
  }

  /** Sets `file`'s size and touches it (`which` time) when that is allowed; settled. */
  private resizeTouching(file: FileNode, size: number, which: "m" | "c"): Effect.Effect<void, SyscallError> {
    const refused = this.resizeNow(file, size)
    return refused === undefined ? this.touch(file, which) : fail(refused)
  }

  /** The Inode view of each node, made at its first lookup and kept while the node lives. */
  private readonly views = new WeakMap<Node, Inode>()

  /** The Inode view of `node` (one per node). */
  inode(node: Node): Inode {
    let view = this.views.get(node)
    if (view === undefined) {
      view = this.makeInode(node)
      this.views.set(node, view)
    }
    return view
  }

  // Built by assignment, not object spread: on Node 20 a spread costs ~1 µs, and views are made
  // on the create path of every file.
  private makeInode(node: Node): Inode {
    const fs = this
    const inode: { -readonly [K in keyof Inode]: Inode[K] } & { readonly tmpfs: { readonly fs: Tmpfs; readonly node: Node } } = {
      filetype: node.type,
      stat: Effect.sync(() => fs.stat(node)),
      statNow: () => Exit.succeed(fs.stat(node)),
      tmpfs: { fs, node },
      setTimes: fs.setTimes(node),
      lookup: notDirectory,
      readdir: notDirectoryNow,
      readlink: notLink,
      open: () => fail(Errno.LOOP)
    }
    if (node.type === FileType.SYMBOLIC_LINK) {
      inode.readlink = Effect.succeed(node.target)
    } else if (node.type === FileType.REGULAR_FILE) {
      // A view kept past the file's last name and description opens it anew: it is charged again.
      inode.open = (options) =>
        isHeld(node) || fs.chargeHeap(NODE_HEAP) ? Effect.succeed(fs.fileDescription(node, options)) : fail(Errno.NOSPC)
      inode.truncate = (size: bigint) => fs.resizeTouching(node, Number(size), "m")
    } else if (node.type !== FileType.DIRECTORY) {
      // A socket file is connected to, never opened (ENXIO, as Linux's open of one).
      inode.open = () => fail(Errno.NXIO)
      const socket = node.socket
      Object.defineProperty(inode, "boundSocket", { get: () => socket.deref() })
    } else {
      const dir = node
      inode.lookup = (name) => {
        const child = dir.entries.get(name)
        return child ? Effect.succeed(fs.inode(child)) : fail(Errno.NOENT)
      }
      inode.readdir = Effect.sync(() => [...dir.entries].map(([name, child]): DirEntry => ({ name, ino: child.ino, filetype: child.type })))
      inode.open = (options) => (options.write ? fail(Errno.ISDIR) : Effect.succeed(directoryDescription(inode)))
      inode.changes = fs.changes(dir)
    }
    return inode
  }

  /** What a directory of this tmpfs can change: every call checks first, then changes all or nothing. */
  private changes(dir: DirNode): TmpfsChanges {
    const fs = this
    // Each change is made when called, checks first, and answers settled.
    // `heap`: what the new node holds of the sentry's heap (0 for a new name of a node that has one).
    const add = (name: string, heap: number, make: (now: bigint) => Node): Effect.Effect<Inode, SyscallError> => {
      const now = fs.now()
      // A removed directory (nlink 0) takes no new names, as on Linux.
      if (dir.nlink === 0n) return fail(Errno.NOENT)
      if (dir.entries.has(name)) return fail(Errno.EXIST)
      if (!fs.chargeHeap(heap + nameHeap(name))) return fail(Errno.NOSPC)
      const node = make(now)
      dir.entries.set(name, node)
      if (node.type === FileType.DIRECTORY) dir.nlink++
      dir.times.mtim = now
      dir.times.ctim = now
      return Effect.succeed(fs.inode(node))
    }
    const drop = (name: string, node: Node): Effect.Effect<void> => {
      const now = fs.now()
      dir.entries.delete(name)
      fs.releaseHeap(nameHeap(name))
      if (node.type === FileType.DIRECTORY) dir.nlink--
      else node.times.ctim = now
      // A file's data goes with its last name, unless a description still has it open.
      fs.lostName(node)
      dir.times.mtim = now
      dir.times.ctim = now
      return Effect.void
    }
    return {
      filesystem: fs,
      create: (name, mode = 0o644) => add(name, NODE_HEAP, (now) => fs.node<FileNode>({ type: FileType.REGULAR_FILE, mode, data: new Pages(), size: 0, opens: 0 }, now)),
      mkdir: (name, mode = 0o755) => asVoidNow(add(name, DIRECTORY_HEAP, (now) => fs.node<DirNode>({ type: FileType.DIRECTORY, mode, entries: new Map() }, now))),
      symlink: (name, target) => asVoidNow(add(name, linkHeap(target), (now) => fs.node<LinkNode>({ type: FileType.SYMBOLIC_LINK, mode: 0o777, target }, now))),
      bindSocket: (name, kind, socket, mode = 0o755) => {
        if (kind !== FileType.SOCKET_STREAM && kind !== FileType.SOCKET_DGRAM) return fail(Errno.INVAL)
        return asVoidNow(add(name, NODE_HEAP, (now) => fs.node<SocketNode>({ type: kind, mode, socket: new WeakRef(socket) }, now)))
      },
      link: (name, target) => {
        const origin = (target as { readonly tmpfs?: { readonly fs: Tmpfs; readonly node: Node } }).tmpfs
        if (origin === undefined || origin.fs !== fs) return fail(Errno.XDEV)
        const node = origin.node
        if (node.type === FileType.DIRECTORY) return fail(Errno.PERM)
        // A node that lost its last name (an open file, a view kept) takes no new one, as on Linux.
        if (node.nlink === 0n) return fail(Errno.NOENT)
        return asVoidNow(add(name, 0, () => {
          node.nlink++
          return node
        }))
      },
      unlink: (name) => {
        const node = dir.entries.get(name)
        if (node === undefined) return fail(Errno.NOENT)
        if (node.type === FileType.DIRECTORY) return fail(Errno.ISDIR)
        return drop(name, node)
      },
      rmdir: (name) => {
        const node = dir.entries.get(name)
        if (node === undefined) return fail(Errno.NOENT)
        if (node.type !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
        if (node.entries.size > 0) return fail(Errno.NOTEMPTY)
        return drop(name, node)
      },
      rename: (name, to, toName) => {
        if (to.filesystem !== fs) return fail(Errno.XDEV)
        const target = (to as TmpfsChanges).directory
        const node = dir.entries.get(name)
        if (node === undefined) return fail(Errno.NOENT)
        const replaced = target.entries.get(toName)
        if (replaced === node) return Effect.void
        if (node.type === FileType.DIRECTORY) {
          // A directory cannot move under itself.
          if (fs.contains(node, target)) return fail(Errno.INVAL)
          if (replaced !== undefined && replaced.type !== FileType.DIRECTORY) return fail(Errno.NOTDIR)
          if (replaced !== undefined && replaced.type === FileType.DIRECTORY && replaced.entries.size > 0) return fail(Errno.NOTEMPTY)
        } else if (replaced?.type === FileType.DIRECTORY) {
          return fail(Errno.ISDIR)
        }
        // A removed directory takes no new names (as in add).
        if (target.nlink === 0n) return fail(Errno.NOENT)
        // The name moves: its entry goes, and a new one comes unless it replaces one.
        const growth = (replaced === undefined ? nameHeap(toName) : 0) - nameHeap(name)
        if (growth > 0 && !fs.chargeHeap(growth)) return fail(Errno.NOSPC)
        const now = fs.now()
        if (replaced !== undefined) {
          if (replaced.type === FileType.DIRECTORY) target.nlink--
          fs.lostName(replaced)
        }
        dir.entries.delete(name)
        if (growth < 0) fs.releaseHeap(-growth)
        target.entries.set(toName, node)
        if (node.type === FileType.DIRECTORY) {
          dir.nlink--
          target.nlink++
        }
        for (const d of [dir, target]) {
          d.times.mtim = now
          d.times.ctim = now
        }
        node.times.ctim = now
        return Effect.void
      },
      directory: dir
    }
  }

  /** Whether `dir` is `ancestor` or lies below it. */
  private contains(ancestor: DirNode, dir: DirNode): boolean {
    if (ancestor === dir) return true
    for (const child of ancestor.entries.values()) {
      if (child.type === FileType.DIRECTORY && this.contains(child, dir)) return true
    }
    return false
  }

  private fileDescription(file: FileNode, options: OpenOptions): FileDescription {
    const fs = this
    let position = 0
    let closed = false
    file.opens++
    // Reads, writes, seeks, stat and close act when called and answer settled (see inode.ts).
    const readInto = (target: Uint8Array, offset?: bigint): Effect.Effect<number, SyscallError> => {
      if (!options.read) return fail(Errno.BADF)
      const at = offset === undefined ? position : Number(offset)
      const n = Math.max(0, Math.min(file.size - at, target.length))
      file.data.read(target.subarray(0, n), at)
      if (offset === undefined) position += n
      file.times.atim = fs.now()
      return Effect.succeed(n)
    }
    const close = () => {
      if (closed) return
      closed = true
      file.opens--
      fs.letGo(file)
    }
    return {
      filetype: FileType.REGULAR_FILE,
      read: (length, offset) => {
        const chunk = new Uint8Array(length)
        return mapNow(readInto(chunk, offset), (n) => chunk.subarray(0, n))
      },
      readInto,
      write: (data, offset) => {
        if (!options.write) return fail(Errno.BADF)
        const at = offset !== undefined ? Number(offset) : position
        const end = at + data.length
        // Writing nothing changes nothing, past the end of the file included.
        if (data.length === 0) return Effect.succeed(0)
        const size = file.size
        const refused = end > size ? fs.resizeNow(file, end) : undefined
        if (refused !== undefined) return fail(refused)
        // The sentry's heap cannot hold it: the guest sees a full filesystem, the sentry lives on.
        if (!file.data.write(data, at)) {
          fs.resizeNow(file, size)
          return fail(Errno.NOSPC)
        }
        if (offset === undefined) position = end
        const now = fs.now()
        file.times.mtim = now
        file.times.ctim = now
        return Effect.succeed(data.length)
      },
      seek: (delta, whence) => {
        const from = whence === Whence.SET ? 0 : whence === Whence.CUR ? position : whence === Whence.END ? file.size : -1
        const to = from + Number(delta)
        if (from < 0 || to < 0) return fail(Errno.INVAL)
        position = to
        return Effect.succeed(BigInt(to))
      },
      stat: Effect.sync(() => fs.stat(file)),
      statNow: () => Exit.succeed(fs.stat(file)),
      close: Effect.sync(close),
      closeNow: () => {
        close()
        return Effect.void
      },
      setSize: (size) => (options.write ? fs.resizeTouching(file, Number(size), "m") : fail(Errno.BADF)),
      allocate: (offset, length) => {
        if (!options.write) return fail(Errno.BADF)
        const end = Number(offset + length)
        return end > file.size ? fs.resizeTouching(file, end, "c") : Effect.void
      },
      setTimes: fs.setTimes(file)
    }
  }
}

interface TmpfsChanges extends DirectoryChanges {
  readonly directory: DirNode
}
