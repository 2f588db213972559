/**
 * Building blocks of the filesystems the sentry makes up rather than reads from the host
 * (procfs, devfs): directories whose entries are computed when looked at, symlinks with computed
 * targets, and stats on the sentry's clock. Each filesystem has its own device number.
 */
import { Errno, FileType } from "@runsc/abi"
import { Clock, Effect } from "effect"
import { fail } from "../errors.js"
import { directoryDescription } from "./directory.js"
import type { DirEntry, Inode, Stat } from "./inode.js"

/**
 * A filesystem the sentry serves, mounted at `path` of a process's view: procfs and devfs are
 * made for each process (they show the caller); a tmpfs is one tree that every process of its
 * container shares.
 */
export type SyntheticMount =
  | { readonly path: string; readonly fs: "proc" | "dev" }
  | { readonly path: string; readonly fs: "tmpfs"; readonly root: Inode }
  | { readonly path: string; readonly fs: "bind"; readonly root: Inode; readonly source: string; readonly readOnly: boolean }


/** A stat of a synthetic file: every time is now. */
export const syntheticStat = (dev: bigint, ino: bigint, filetype: FileType, size: bigint, mode: number): Effect.Effect<Stat> =>
  Effect.map(Clock.currentTimeNanos, (now) => ({
    dev,
    ino,
    filetype,
    nlink: filetype === FileType.DIRECTORY ? 2n : 1n,
    size,
    atim: now,
    mtim: now,
    ctim: now,
    mode
  }))

export const notDirectory: Pick<Inode, "lookup" | "readdir"> = {
  lookup: () => fail(Errno.NOTDIR),
  readdir: fail(Errno.NOTDIR)
}

export const syntheticSymlink = (dev: bigint, ino: bigint, target: () => string): Inode => ({
  filetype: FileType.SYMBOLIC_LINK,
  stat: Effect.suspend(() => syntheticStat(dev, ino, FileType.SYMBOLIC_LINK, BigInt(target().length), 0o777)),
  ...notDirectory,
  readlink: Effect.sync(target),
  open: () => fail(Errno.LOOP)
})

/** A read-only directory whose entries `entries` computes at each lookup and listing. */
export const syntheticDirectory = (dev: bigint, ino: bigint, entries: () => ReadonlyArray<readonly [string, Inode]>): Inode => {
  const inode: Inode = {
    filetype: FileType.DIRECTORY,
    stat: syntheticStat(dev, ino, FileType.DIRECTORY, 0n, 0o555),
    lookup: (name) => {
      const found = entries().find(([n]) => n === name)
      return found ? Effect.succeed(found[1]) : fail(Errno.NOENT)
    },
    readdir: Effect.flatMap(
      Effect.sync(entries),
      (list) => Effect.forEach(list, ([name, child]) => Effect.map(child.stat, (st): DirEntry => ({ name, ino: st.ino, filetype: child.filetype })))
    ),
    readlink: fail(Errno.INVAL),
    open: (options) => (options.write ? fail(Errno.ISDIR) : Effect.succeed(directoryDescription(inode)))
  }
  return inode
}
