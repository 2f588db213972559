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
import { Errno, FdFlags } from "@runsc/abi"
import { Effect } from "effect"
import { fail, type SyscallError } from "../errors.js"
import type { FdEntry } from "../fs/fdTable.js"
import { type Dentry, resolveNow } from "../fs/resolve.js"
import type { BytesArg } from "../platform/syscallAbi.js"
import { flatMapNow, fnNow } from "../settled.js"
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
