/**
 * An open directory, whatever filesystem it belongs to: its stat and times; reads, writes and
 * seeks fail with EISDIR. Its entries are listed through the fd's dentry (fd_readdir).
 */
import { Errno, FileType } from "@runsc/abi"
import { Effect } from "effect"
import { fail } from "../errors.js"
import type { FileDescription, Inode } from "./inode.js"

const isDirectory = fail(Errno.ISDIR)

export const directoryDescription = (inode: Inode): FileDescription => {
  const description: { -readonly [K in keyof FileDescription]: FileDescription[K] } = {
    filetype: FileType.DIRECTORY,
    read: () => isDirectory,
    write: () => isDirectory,
    seek: () => isDirectory,
    stat: inode.stat,
    close: Effect.void
  }
  if (inode.statNow !== undefined) description.statNow = () => inode.statNow!()
  // futimens on a directory fd is allowed wherever the directory's times may change.
  if (inode.setTimes) description.setTimes = (atim, mtim) => inode.setTimes!(atim, mtim)
  return description
}
