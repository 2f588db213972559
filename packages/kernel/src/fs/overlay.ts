/**
 * The copy-on-write overlay over a container's root: the gofer's read-only host tree (lower)
 * under an in-memory tmpfs (upper) that takes every change, as runsc's default `--overlay2
 * root:memory` does. The host tree is never written; what the guest changes is gone with the
 * container.
 *
 * Invariants:
 * - A name is visible when the directory's upper has it, or its lower has it, it is not whited
 *   out, and the directory has a lower at all (one made in the upper is opaque).
 * - Every visible name this overlay has handed out is one node (the directory's `children`), so
 *   a copy-up is seen by every fd and dentry that holds the node. Names never looked up cost
 *   nothing.
 * - A directory's upper exists before any of its children's does (copy-up goes top down); the
 *   root's always does.
 * - Changes run one at a time (one lock per overlay): a change takes several steps (a copy-up
 *   reads a whole lower file), other fibers run between them, and none may change the names a
 *   change works on meanwhile. Lookups take no lock: each directory counts its name changes,
 *   and a lookup that saw the count move looks again.
 *
 * As on Linux's overlayfs: a file's inode number changes when it is copied up; an fd opened
 * read-only before the copy-up keeps reading the lower file; renaming a directory that has a
 * lower layer fails EXDEV (callers such as `mv` then copy).
 */
import { Errno, FileType } from "@runsc/abi"
import { Effect, Either, Exit } from "effect"
import { fail, type SyscallError } from "../errors.js"
import { asVoidNow, eitherNow, flatMapNow, fnNow, isSettled, mapNow } from "../settled.js"
import { ChangeLock } from "./changeLock.js"
import { directoryDescription } from "./directory.js"
import { forwarding } from "./forwarding.js"
import { type DirectoryChanges, type DirEntry, type FileDescription, type Inode, type OpenOptions, type Stat, statOf } from "./inode.js"
import type { MemoryAccount } from "../memoryAccount.js"
import { releaseMemory, Tmpfs } from "./tmpfs.js"

/** Overlay device numbers start here ("OVL" << 8); each instance takes the next. */
const OVERLAY_DEV_BASE = 0x4f564c00n
/** Set in the inode number of anything served from the upper layer, so the two layers' numbers never collide. */
const UPPER_INO = 1n << 63n
/** Lower-layer misses a directory remembers before it starts over. */
const MAX_REMEMBERED_MISSES = 4096
/** Bytes a copy-up reads from the lower file at a time. */
const COPY_CHUNK = 1 << 20

export interface OverlayOptions {
  /** Numbers the overlay (its device number). */
  readonly instance: number
  /** The sandbox's memory, which the upper layer's file data counts against (ENOSPC past it). */
  readonly account?: MemoryAccount
}

/** A writable view of `lower` (a directory), whose changes live in memory. */
export const overlay = (lower: Inode, options: OverlayOptions): Effect.Effect<Inode, SyscallError> =>
  Effect.gen(function*() {
    if (lower.filetype !== FileType.DIRECTORY) return yield* fail(Errno.NOTDIR)
    const st = yield* lower.stat
    const upper = yield* Tmpfs.make({ instance: options.instance, mode: st.mode, account: options.account })
    yield* upper.setTimes!(st.atim, st.mtim)
    const fs = new Overlay(OVERLAY_DEV_BASE + BigInt(options.instance), upper)
    return new OverlayDir(fs, undefined, "/", upper, lower)
  })

class Overlay {
  private readonly lock = new ChangeLock()

  constructor(readonly dev: bigint, private readonly upper: Inode) {}

  /** Gives the upper layer's bytes back to the sandbox's account (see releaseMemory). */
  detach(): void {
    releaseMemory(this.upper)
  }

  /** Makes `change` under the overlay's lock: at once when no other change runs (see ChangeLock). */
  locked<A, E>(change: () => Effect.Effect<A, E>): Effect.Effect<A, E> {
    return this.lock.run(change)
  }

  view(st: Stat, fromUpper: boolean): Stat {
    return Object.assign({}, st, { dev: this.dev, ino: fromUpper ? st.ino | UPPER_INO : st.ino })
  }
}

abstract class OverlayNode implements Inode {
  /** Set once the node's name is gone: it can no longer be copied up. */
  removed = false
  abstract readonly filetype: FileType
  abstract readonly readdir: Effect.Effect<ReadonlyArray<DirEntry>, SyscallError>
  abstract readonly readlink: Effect.Effect<string, SyscallError>
  abstract lookup(name: string): Effect.Effect<OverlayNode, SyscallError>
  abstract open(options: OpenOptions): Effect.Effect<FileDescription, SyscallError>

  constructor(
    readonly overlay: Overlay,
    public parent: OverlayDir | undefined,
    public name: string,
    public upper: Inode | undefined,
    readonly lower: Inode | undefined
  ) {}

  protected get layer(): Inode {
    return this.upper ?? this.lower!
  }

  readonly stat: Effect.Effect<Stat, SyscallError> = Effect.suspend(() => this.statNow())

  statNow(): Effect.Effect<Stat, SyscallError> {
    const fromUpper = this.upper !== undefined
    // A merged directory's subdirectories are not counted (that would take a listing of both
    // layers): nlink 1, as Linux's overlayfs reports, tells `find` not to rely on it.
    const merged = fromUpper && this.lower !== undefined && this.filetype === FileType.DIRECTORY
    return mapNow(statOf(this.layer), (st) => {
      const view = this.overlay.view(st, fromUpper)
      return merged ? Object.assign(view, { nlink: 1n }) : view
    })
  }

  get lookupStat(): Stat | undefined {
    return this.upper === undefined ? this.lower!.lookupStat : undefined
  }

  /** Only a lower file is known not to change under the cache (the root is the sandbox's alone). */
  get identity(): string | undefined {
    return this.upper === undefined ? this.lower!.identity : undefined
  }

  setTimes(atim: bigint | undefined, mtim: bigint | undefined): Effect.Effect<void, SyscallError> {
    return flatMapNow(upperOf(this), (upper) => upper.setTimes!(atim, mtim))
  }
}

/** `node`'s upper copy: the one it has (no lock needed: it never goes), or one made under the overlay's lock. */
const upperOf = (node: OverlayNode): Effect.Effect<Inode, SyscallError> =>
  node.upper !== undefined ? Effect.succeed(node.upper) : node.overlay.locked(() => copyUp(node))

/**
 * Gives `node` an upper copy (and its directories first), with the lower's mode, contents or
 * target, and times. The caller holds the overlay's lock. Made when called (see settled.ts).
 */
const copyUp = fnNow(function*(node: OverlayNode) {
  const chain: Array<OverlayNode> = []
  for (let n: OverlayNode = node; n.upper === undefined; n = n.parent!) {
    if (n.removed) return yield* fail(Errno.NOENT)
    chain.unshift(n)
  }
  for (const n of chain) n.upper = yield* copyOne(n)
  return node.upper!
})

const copyOne = fnNow(function*(node: OverlayNode) {
  const dir = node.parent!.upper!
  const changes = dir.changes!
  const lower = node.lower!
  const st = yield* statOf(lower)
  switch (lower.filetype) {
    case FileType.DIRECTORY:
      yield* changes.mkdir(node.name, st.mode)
      break
    case FileType.SYMBOLIC_LINK:
      yield* changes.symlink(node.name, yield* lower.readlink)
      break
    case FileType.REGULAR_FILE: {
      const file = yield* changes.create(node.name, st.mode)
      // A copy that cannot complete (ENOSPC) leaves no half file behind.
      const copied = yield* eitherNow(copyContents(lower, file))
      if (Either.isLeft(copied)) {
        yield* eitherNow(changes.unlink(node.name))
        return yield* Exit.fail(copied.left)
      }
      break
    }
    default:
      // Host devices, fifos and sockets are never opened, so never copied.
      return yield* fail(Errno.ACCES)
  }
  const upper = yield* dir.lookup(node.name)
  yield* upper.setTimes!(st.atim, st.mtim)
  return upper
})

const copyContents = (from: Inode, to: Inode): Effect.Effect<void, SyscallError> =>
  flatMapNow(from.open({ read: true, write: false, transient: true }), (source) =>
    closingAfter(source, flatMapNow(to.open({ read: false, write: true, transient: true }), (target) => closingAfter(target, copyAll(source, target)))))

const copyAll = fnNow(function*(source: FileDescription, target: FileDescription) {
  for (let offset = 0n; ;) {
    const chunk = yield* source.read(COPY_CHUNK, offset)
    if (chunk.length === 0) return
    yield* target.write(chunk, offset)
    offset += BigInt(chunk.length)
  }
})

/** `effect`'s outcome, with `description` closed after it whatever that is: at once when it is settled. */
const closingAfter = <A, E>(description: FileDescription, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  isSettled(effect) ? flatMapNow(description.closeNow?.() ?? description.close, () => effect) : Effect.ensuring(effect, description.close)

/** A regular file, symlink or socket file of the overlay. */
class OverlayFile extends OverlayNode {
  readonly filetype: FileType = this.layer.filetype
  readonly readdir = fail(Errno.NOTDIR)
  readonly readlink: Effect.Effect<string, SyscallError> = Effect.suspend(() => this.layer.readlink)

  /** A socket file's socket: bound in the upper layer, or (a host socket file bound through a shared mount) in the lower. */
  get boundSocket(): object | undefined {
    return this.layer.boundSocket
  }

  lookup(): Effect.Effect<OverlayNode, SyscallError> {
    return fail(Errno.NOTDIR)
  }

  open(options: OpenOptions): Effect.Effect<FileDescription, SyscallError> {
    // Only a regular file is copied up to be written: a symlink or a socket file is refused as
    // its open is on Linux, and nothing is copied for an open that fails.
    if (options.write && this.filetype !== FileType.REGULAR_FILE) return fail(this.filetype === FileType.SYMBOLIC_LINK ? Errno.LOOP : Errno.NXIO)
    const layer = options.write ? upperOf(this) : Effect.succeed(this.layer)
    return flatMapNow(layer, (inode) => {
      const fromUpper = inode === this.upper
      return mapNow(inode.open(options), (description) => this.described(description, fromUpper))
    })
  }

  truncate(size: bigint): Effect.Effect<void, SyscallError> {
    if (this.filetype !== FileType.REGULAR_FILE) return fail(Errno.INVAL)
    return flatMapNow(upperOf(this), (upper) => upper.truncate!(size))
  }

  /**
   * `description` as the overlay shows it: its stat in the overlay's numbers; futimens copies up.
   * The layer's description has no user but this one, so a rootfs file can be lent to a worker.
   */
  private described(description: FileDescription, fromUpper: boolean): FileDescription {
    return forwarding(description, {
      stat: Effect.map(description.stat, (st) => this.overlay.view(st, fromUpper)),
      statNow: () => mapNow(statOf(description), (st) => this.overlay.view(st, fromUpper)),
      setTimes: (atim, mtim) => this.setTimes(atim, mtim),
      // The worker's fstat would show the layer's numbers, not the overlay's.
      lendable: description.lendable?.file === undefined ? description.lendable : { ...description.lendable, file: { ...description.lendable.file, hostStat: false } }
    })
  }
}

/** What a lookup found under a directory, before it becomes a node. */
interface Found {
  readonly upper?: Inode
  readonly lower?: Inode
}

class OverlayDir extends OverlayNode {
  readonly filetype = FileType.DIRECTORY
  /** Lower names removed from this directory. */
  private readonly whiteouts = new Set<string>()
  /** The node of every visible name looked up so far. */
  private readonly children = new Map<string, OverlayNode>()
  /** Names the lower directory is known not to have (see lowerLookup). */
  private readonly absentBelow = new Set<string>()
  /** Counts changes to this directory's names (see the lock-free lookup). */
  private version = 0
  readonly readlink = fail(Errno.INVAL)
  readonly changes: OverlayChanges = this.makeChanges()

  /** Looks when called (settled where both layers answer so). */
  lookup(name: string): Effect.Effect<OverlayNode, SyscallError> {
    const cached = this.children.get(name)
    if (cached !== undefined) return Effect.succeed(cached)
    const version = this.version
    return flatMapNow(eitherNow(this.find(name)), (found) => {
      // The names changed while the layers were asked: ask again.
      if (this.version !== version) return this.lookup(name)
      if (Either.isLeft(found)) return Exit.fail(found.left)
      const raced = this.children.get(name)
      if (raced !== undefined) return Effect.succeed(raced)
      const node = this.nodeFor(name, found.right)
      this.children.set(name, node)
      return Effect.succeed(node)
    })
  }

  private find(name: string): Effect.Effect<Found, SyscallError> {
    return OverlayDir.find(this, name)
  }

  private static readonly find = fnNow(function*(self: OverlayDir, name: string) {
    if (self.upper !== undefined) {
      const upper = yield* eitherNow(self.upper.lookup(name))
      if (Either.isRight(upper)) return { upper: upper.right }
      if (upper.left.errno !== Errno.NOENT) return yield* Exit.fail(upper.left)
    }
    if (self.whiteouts.has(name)) return yield* fail(Errno.NOENT)
    const lower = yield* self.lowerLookup(name)
    return lower === undefined ? yield* fail(Errno.NOENT) : { lower }
  })

  private nodeFor(name: string, found: Found): OverlayNode {
    const filetype = (found.upper ?? found.lower)!.filetype
    return filetype === FileType.DIRECTORY
      ? new OverlayDir(this.overlay, this, name, found.upper, found.lower)
      : new OverlayFile(this.overlay, this, name, found.upper, found.lower)
  }

  get readdir(): Effect.Effect<ReadonlyArray<DirEntry>, SyscallError> {
    return Effect.gen(this, function*() {
      const upper = this.upper === undefined ? [] : yield* this.upper.readdir
      const lower = this.lower === undefined ? [] : yield* this.lower.readdir
      const shown = new Set(upper.map((e) => e.name))
      return [
        ...upper.map((e) => ({ ...e, ino: e.ino | UPPER_INO })),
        ...lower.filter((e) => !shown.has(e.name) && !this.whiteouts.has(e.name))
      ]
    })
  }

  open(options: OpenOptions): Effect.Effect<FileDescription, SyscallError> {
    return options.write ? fail(Errno.ISDIR) : Effect.succeed(directoryDescription(this))
  }

  /**
   * `name` in the lower layer, if it is there. Misses are remembered (up to a bound): the lower
   * tree is the sandbox's alone while it runs (runsc's exclusive file access for the root), so
   * a name found missing stays missing, and creating files asks the host nothing.
   */
  private lowerLookup(name: string): Effect.Effect<Inode | undefined, SyscallError> {
    if (this.lower === undefined || this.absentBelow.has(name)) return Effect.succeed(undefined)
    return flatMapNow(eitherNow(this.lower.lookup(name)), (found): Effect.Effect<Inode | undefined, SyscallError> => {
      if (Either.isRight(found)) return Effect.succeed(found.right)
      if (found.left.errno !== Errno.NOENT) return Exit.fail(found.left)
      if (this.absentBelow.size >= MAX_REMEMBERED_MISSES) this.absentBelow.clear()
      this.absentBelow.add(name)
      return Effect.succeed(undefined)
    })
  }

  private lowerHas(name: string): Effect.Effect<boolean> {
    return mapNow(eitherNow(this.lowerLookup(name)), (found) => Either.isRight(found) && found.right !== undefined)
  }

  /** Adds a name to the upper layer with `make`, unless it is visible already. Lock held. */
  private add(name: string, make: (upper: DirectoryChanges) => Effect.Effect<unknown, SyscallError>) {
    return OverlayDir.add(this, name, make)
  }

  private static readonly add = fnNow(function*(self: OverlayDir, name: string, make: (upper: DirectoryChanges) => Effect.Effect<unknown, SyscallError>) {
    if (self.removed) return yield* fail(Errno.NOENT)
    if (Either.isRight(yield* eitherNow(self.lookup(name)))) return yield* fail(Errno.EXIST)
    const upper = yield* copyUp(self)
    yield* make(upper.changes!)
    const node = self.nodeFor(name, { upper: yield* upper.lookup(name) })
    self.whiteouts.delete(name)
    self.children.set(name, node)
    self.version++
    return node
  })

  /** Removes the visible `name` (`node`): from the upper layer, and a lower one is whited out. Lock held. */
  private remove(name: string, node: OverlayNode, removeUpper: (upper: DirectoryChanges) => Effect.Effect<void, SyscallError>) {
    return OverlayDir.remove(this, name, node, removeUpper)
  }

  private static readonly remove = fnNow(function*(self: OverlayDir, name: string, node: OverlayNode, removeUpper: (upper: DirectoryChanges) => Effect.Effect<void, SyscallError>) {
    // The directory is copied up even when only a whiteout changes, so its times record the change.
    const upper = yield* copyUp(self)
    if (node.upper !== undefined) yield* removeUpper(upper.changes!)
    if (yield* self.lowerHas(name)) self.whiteouts.add(name)
    self.children.delete(name)
    self.version++
    node.removed = true
  })

  private static readonly unlink = fnNow(function*(self: OverlayDir, name: string) {
    const node = yield* self.lookup(name)
    if (node.filetype === FileType.DIRECTORY) return yield* fail(Errno.ISDIR)
    yield* self.remove(name, node, (upper) => upper.unlink(name))
  })

  private static readonly rmdir = fnNow(function*(self: OverlayDir, name: string) {
    const node = yield* self.lookup(name)
    if (!(node instanceof OverlayDir)) return yield* fail(Errno.NOTDIR)
    // Empty as the guest sees it: lower names all whited out, upper empty.
    if ((yield* node.readdir).length > 0) return yield* fail(Errno.NOTEMPTY)
    yield* self.remove(name, node, (upper) => upper.rmdir(name))
  })

  private makeChanges(): OverlayChanges {
    // Each change is made under the overlay's lock, at once when no other change runs.
    const locked = <A>(change: () => Effect.Effect<A, SyscallError>) => this.overlay.locked(change)
    return {
      filesystem: this.overlay,
      directory: this,
      create: (name, mode) => locked(() => this.add(name, (upper) => upper.create(name, mode))),
      mkdir: (name, mode) => locked(() => asVoidNow(this.add(name, (upper) => upper.mkdir(name, mode)))),
      symlink: (name, target) => locked(() => asVoidNow(this.add(name, (upper) => upper.symlink(name, target)))),
      bindSocket: (name, kind, socket, mode) => locked(() => asVoidNow(this.add(name, (upper) => upper.bindSocket!(name, kind, socket, mode)))),
      link: (name, target) => {
        if (!(target instanceof OverlayNode) || target.overlay !== this.overlay) return fail(Errno.XDEV)
        if (target.filetype === FileType.DIRECTORY) return fail(Errno.PERM)
        return locked(() => asVoidNow(this.add(name, (upper) => flatMapNow(copyUp(target), (file) => upper.link(name, file)))))
      },
      unlink: (name) => locked(() => OverlayDir.unlink(this, name)),
      rmdir: (name) => locked(() => OverlayDir.rmdir(this, name)),
      rename: (name, to, toName) =>
        locked(() => {
          if (!("directory" in to) || !(to.directory instanceof OverlayDir) || to.directory.overlay !== this.overlay) {
            return fail(Errno.XDEV)
          }
          return this.rename(name, to.directory, toName)
        })
    }
  }

  /** rename(2) as the merged view sees it. Lock held. */
  private rename(name: string, target: OverlayDir, toName: string): Effect.Effect<void, SyscallError> {
    return OverlayDir.rename(this, name, target, toName)
  }

  private static readonly rename = fnNow(function*(self: OverlayDir, name: string, target: OverlayDir, toName: string) {
    const node = yield* self.lookup(name)
    const replaced = Either.getRight(yield* eitherNow(target.lookup(toName)))
    if (replaced._tag === "Some" && (yield* sameFile(node, replaced.value))) return
    if (node instanceof OverlayDir) {
      for (let d: OverlayDir | undefined = target; d !== undefined; d = d.parent) if (d === node) return yield* fail(Errno.INVAL)
      if (replaced._tag === "Some" && !(replaced.value instanceof OverlayDir)) return yield* fail(Errno.NOTDIR)
      if (replaced._tag === "Some" && (yield* replaced.value.readdir).length > 0) return yield* fail(Errno.NOTEMPTY)
      // Moving a directory with a lower layer would mean copying its whole tree.
      if (node.lower !== undefined) return yield* fail(Errno.XDEV)
    } else if (replaced._tag === "Some" && replaced.value instanceof OverlayDir) {
      return yield* fail(Errno.ISDIR)
    }
    yield* copyUp(node)
    const targetUpper = yield* copyUp(target)
    // A name replaced only in the lower layer is simply shadowed by the upper one moved there
    // (a moved directory has no lower layer, so it shows nothing of the one it replaced).
    yield* self.upper!.changes!.rename(name, targetUpper.changes!, toName)
    if (yield* self.lowerHas(name)) self.whiteouts.add(name)
    self.children.delete(name)
    target.whiteouts.delete(toName)
    if (replaced._tag === "Some") replaced.value.removed = true
    target.children.set(toName, node)
    node.parent = target
    node.name = toName
    self.version++
    target.version++
  })
}

/** Whether two nodes are one file: one node, or two upper names of one file (hard links). */
const sameFile = (a: OverlayNode, b: OverlayNode): Effect.Effect<boolean, SyscallError> => {
  if (a === b) return Effect.succeed(true)
  if (a.upper === undefined || b.upper === undefined) return Effect.succeed(false)
  const second = b.upper
  return flatMapNow(statOf(a.upper), (x) => mapNow(statOf(second), (y) => x.ino === y.ino))
}

interface OverlayChanges extends DirectoryChanges {
  readonly directory: OverlayDir
}
