/**
 * Path resolution inside a container's root, component by component, as the sentry does it.
 *
 * Invariants: resolution starts at a dentry of this tree and only ever moves to a child found
 * by `Inode.lookup` or to a parent recorded in the dentry chain, so no path — absolute, full of
 * "..", or through symlinks whose targets point anywhere — can name something outside the
 * root: ".." of the root is the root, and an absolute symlink target restarts at the root.
 *
 * WASI's `path_*` calls resolve further confined (`beneath`): within the subtree of their
 * directory fd, as wasmtime and uvwasi do. A ".." above that directory, or an absolute symlink
 * target (which would restart at the root), is NOTCAPABLE — except when that directory is the
 * container's root, whose subtree is everything: there ".." of the root stays the root and
 * absolute targets restart at it, as on Linux.
 */
import { Errno, FileType } from "@runsc/abi"
import { Effect } from "effect"
import { fail, type SyscallError } from "../errors.js"
import type { Inode } from "./inode.js"
import { fnNow } from "../settled.js"

/**
 * Filesystems mounted over paths of a tree, by absolute path ("/proc"). A mounted inode hides
 * whatever the underlying tree has at that path.
 */
export type MountTable = ReadonlyMap<string, Inode>

const noMounts: MountTable = new Map()

/** A resolved name: an inode plus the chain of parents it was reached through. */
export class Dentry {
  private constructor(
    readonly inode: Inode,
    readonly name: string,
    private readonly parentDentry: Dentry | undefined,
    readonly mounts: MountTable
  ) {}

  static root(inode: Inode, mounts: MountTable = noMounts): Dentry {
    return new Dentry(inode, "/", undefined, mounts)
  }

  /** The parent; the root is its own parent. */
  get parent(): Dentry {
    return this.parentDentry ?? this
  }

  get isRoot(): boolean {
    return this.parentDentry === undefined
  }

  child(name: string, inode: Inode): Dentry {
    return new Dentry(inode, name, this, this.mounts)
  }

  /**
   * What its chain of parents holds of the sentry's heap (each link and its name), which a
   * directory fd keeps while it is open: up to 2,048 links for a path of PATH_MAX.
   */
  get chainHeap(): number {
    let bytes = 0
    for (let d: Dentry = this; !d.isRoot; d = d.parent) bytes += 64 + 2 * d.name.length
    return bytes
  }

  /** The inode at `name` under this directory: a filesystem mounted there, else the tree's own. */
  lookup(name: string): Effect.Effect<Inode, SyscallError> {
    if (this.mounts.size > 0) {
      const mounted = this.mounts.get(this.childPath(name))
      if (mounted) return Effect.succeed(mounted)
    }
    return this.inode.lookup(name)
  }

  /** Whether a filesystem is mounted at `name` under this directory (it cannot be removed or renamed). */
  isMountPoint(name: string): boolean {
    return this.mounts.has(this.childPath(name))
  }

  /** The names under this directory where a filesystem is mounted, with what is mounted there. */
  get mountedChildren(): ReadonlyArray<readonly [string, Inode]> {
    if (this.mounts.size === 0) return []
    const prefix = this.isRoot ? "/" : `${this.path}/`
    return [...this.mounts].flatMap(([path, inode]) =>
      path.startsWith(prefix) && path.length > prefix.length && !path.includes("/", prefix.length) ? [[path.slice(prefix.length), inode] as const] : [])
  }

  /** The mount this dentry lies in: the deepest mount path at or above it ("/" for the root's tree). */
  get mount(): string {
    for (let d: Dentry = this; !d.isRoot; d = d.parent) if (this.mounts.has(d.path)) return d.path
    return "/"
  }

  private childPath(name: string): string {
    return this.isRoot ? `/${name}` : `${this.path}/${name}`
  }

  /** The absolute path of this dentry inside its tree (for strace and errors, never the host's). */
  get path(): string {
    const parts: Array<string> = []
    for (let d: Dentry = this; !d.isRoot; d = d.parent) parts.push(d.name)
    return `/${parts.reverse().join("/")}`
  }
}

export const MAX_SYMLINK_TRAVERSALS = 40
/** Limits in bytes of UTF-8, as Linux counts them. */
export const NAME_MAX = 255
export const PATH_MAX = 4096

export interface ResolveOptions {
  /** Follow a symlink in the last component (SYMLINK_FOLLOW / O_NOFOLLOW unset). */
  readonly followFinal: boolean
  /**
   * Confine every step to this directory's subtree (a WASI directory fd; `start` lies in it):
   * a ".." above it or an absolute path or symlink target fails NOTCAPABLE, unless it is the
   * root (whose ".." is itself, and from which absolute paths start anyway).
   */
  readonly beneath?: Dentry | undefined
}

/**
 * Resolves `path` from `start` (absolute paths from `root`). A trailing slash requires the
 * result to be a directory. Errors: ENOENT (missing, or empty path), ENOTDIR, ELOOP,
 * ENAMETOOLONG, EINVAL (NUL in the path), NOTCAPABLE (a step out of `beneath`).
 */
export const resolve = (root: Dentry, start: Dentry, path: string, options: ResolveOptions): Effect.Effect<Dentry, SyscallError> =>
  Effect.suspend(() => resolveNow(root, start, path, options))

/**
 * `resolve`, walking when called rather than when run: settled where every lookup on the way
 * is (see settled.ts), so that a syscall handler resolving a path needs no fiber step.
 */
export const resolveNow: (root: Dentry, start: Dentry, path: string, options: ResolveOptions) => Effect.Effect<Dentry, SyscallError> =
  fnNow(function*(root: Dentry, start: Dentry, path: string, options: ResolveOptions) {
    if (path.length === 0) return yield* fail(Errno.NOENT)
    if (Buffer.byteLength(path) > PATH_MAX) return yield* fail(Errno.NAMETOOLONG)
    if (path.includes("\0")) return yield* fail(Errno.INVAL)

    const beneath = options.beneath
    // Only the root's subtree holds the root: from anywhere else "/" is out of reach.
    const restartAtRoot = beneath === undefined || beneath.isRoot ? Effect.succeed(root) : fail(Errno.NOTCAPABLE)
    let traversals = 0
    let current = path.startsWith("/") ? yield* restartAtRoot : start
    // Components still to walk, in order; a followed symlink splices its target in front.
    const pending = path.split("/").filter((c) => c.length > 0)
    let mustBeDirectory = path.endsWith("/")

    while (pending.length > 0) {
      const name = pending.shift()!
      if (current.inode.filetype !== FileType.DIRECTORY) return yield* fail(Errno.NOTDIR)
      if (name === ".") continue
      if (name === "..") {
        if (current === beneath && !current.isRoot) return yield* fail(Errno.NOTCAPABLE)
        current = current.parent
        continue
      }
      if (Buffer.byteLength(name) > NAME_MAX) return yield* fail(Errno.NAMETOOLONG)
      const inode = yield* current.lookup(name)
      const isLast = pending.length === 0
      if (inode.filetype === FileType.SYMBOLIC_LINK && (!isLast || options.followFinal || mustBeDirectory)) {
        if (++traversals > MAX_SYMLINK_TRAVERSALS) return yield* fail(Errno.LOOP)
        const target = yield* inode.readlink
        if (target.length === 0) return yield* fail(Errno.NOENT)
        if (target.startsWith("/")) current = yield* restartAtRoot
        if (isLast && target.endsWith("/")) mustBeDirectory = true
        pending.unshift(...target.split("/").filter((c) => c.length > 0))
        continue
      }
      current = current.child(name, inode)
    }
    if (mustBeDirectory && current.inode.filetype !== FileType.DIRECTORY) return yield* fail(Errno.NOTDIR)
    return current
  })
