/**
 * An open directory, whatever filesystem it belongs to: its stat and times; reads, writes and
 * seeks fail with EISDIR. Its entries are listed through the fd's dentry (fd_readdir).
 */
import { Errno, FileType } from "@runsc/abi"
import { Effect } from "effect"
import { fail } from "../errors.js"
import type { FileDescription, Inode } from "./inode.js"

const isDirectory = fail(Errno.ISDIR)

export const directoryDescription = (inode: Inode): FileDescription => ({
  filetype: FileType.DIRECTORY,
  read: () => isDirectory,
  write: () => isDirectory,
  seek: () => isDirectory,
  stat: inode.stat,
  ...(inode.statNow !== undefined ? { statNow: () => inode.statNow!() } : {}),
  close: Effect.void,
  // futimens on a directory fd is allowed wherever the directory's times may change.
  ...(inode.setTimes ? { setTimes: (atim: bigint | undefined, mtim: bigint | undefined) => inode.setTimes!(atim, mtim) } : {})
})
