/**
 * What a syscall's arguments name, checked as Linux checks them (fd, then rights, then path):
 * an fd's entry carrying the rights the call needs, a directory fd as the base of a lookup, a
 * guest path resolved beneath it. Shared by the fd, path, poll and socket families.
 *
 * Paths given to `path_*` calls are WASI's, not Linux's: relative to their directory fd and
 * resolved beneath it (`guestPath`, `resolve`'s `beneath`), so an absolute path or a step above
 * the fd is NOTCAPABLE, as wasmtime and uvwasi answer; only the container's root, whose `..` is
 * itself, behaves as Linux's `/` does.
 */
import { Errno, FdFlags, FileType } from "@runsc/abi"
import { Effect, Either } from "effect"
import { fail, type SyscallError } from "../errors.js"
import type { FdEntry } from "../fs/fdTable.js"
import { type Dentry, NAME_MAX, resolveNow } from "../fs/resolve.js"
import type { BytesArg } from "../platform/syscallAbi.js"
import { eitherNow, flatMapNow, fnNow, mapNow } from "../settled.js"
import { pathArg, type SyscallContext } from "./context.js"

/** The entry for `fd`, which must carry every right in `rights` (BADF, then NOTCAPABLE). */
export const entryWith = (c: SyscallContext, fd: number, rights: bigint): Effect.Effect<FdEntry, SyscallError> => {
  const entry = c.tg.fdTable.lookup(fd)
  if (entry === undefined) return fail(Errno.BADF)
  if ((entry.rightsBase & rights) !== rights) return fail(Errno.NOTCAPABLE)
  return Effect.succeed(entry)
}

/** A directory fd usable as the base of a path lookup. */
export const baseDirectory = (c: SyscallContext, fd: number, rights: bigint): Effect.Effect<Dentry, SyscallError> =>
  flatMapNow(entryWith(c, fd, rights), (entry) => entry.dentry ? Effect.succeed(entry.dentry) : fail(Errno.NOTDIR))

/**
 * A path argument of a `path_*` call: relative to its directory fd, as WASI has it (wasi-libc
 * turns "/etc/passwd" into the preopen "/" and "etc/passwd"); an absolute one is NOTCAPABLE.
 */
export const guestPath = (c: SyscallContext, path: BytesArg): Effect.Effect<string, SyscallError> =>
  flatMapNow(pathArg(c, path), (path) => path.startsWith("/") ? fail(Errno.NOTCAPABLE) : Effect.succeed(path))

export const lookupPath = fnNow(function*(c: SyscallContext, fd: number, rights: bigint, pathField: BytesArg, follow: boolean) {
  const base = yield* baseDirectory(c, fd, rights)
  const path = yield* guestPath(c, pathField)
  return yield* resolveNow(c.tg.root, base, path, { followFinal: follow, beneath: base })
})

/** The changes `dir` can make, or EROFS. */
export const changesOf = (dir: Dentry) => (dir.inode.changes ? Effect.succeed(dir.inode.changes) : fail(Errno.ROFS))

/** Whether the fd was opened or set O_NONBLOCK: a call that would wait fails EAGAIN. */
export const isNonBlocking = (entry: FdEntry): boolean => (entry.flags & FdFlags.NONBLOCK) !== 0

/**
 * The directory that holds the last component of `path` (resolved from `base`, symlinks on the
 * way followed, never leaving `beneath`'s subtree), and that component ("" for "/"; "." and ".."
 * as written, ".." NOTCAPABLE where it would name the parent of `beneath`).
 */
export const parentOf = fnNow(function*(c: SyscallContext, base: Dentry, path: string, beneath: Dentry = base) {
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

/** Whether `name` names something in `dir` (an existing name is EEXIST even on a read-only mount). */
export const exists = (dir: Dentry, name: string) => mapNow(eitherNow(dir.lookup(name)), Either.isRight)
