/**
 * File attributes as the guest sees them: the filestat struct (fd_filestat_get,
 * path_filestat_get) and the times a `*_filestat_set_times` call asks for.
 */
import { Errno, FstFlags, Layout } from "@runsc/abi"
import { Clock } from "effect"
import { fail } from "../errors.js"
import type { Stat } from "../fs/inode.js"
import { fnNow } from "../settled.js"
import { setPayloadLength, type SyscallContext } from "./context.js"

/** Writes `st` as the response's filestat payload. */
export const putFilestat = (c: SyscallContext, st: Stat): void => {
  const v = c.channel.dataView
  const L = Layout.filestat
  v.setBigUint64(L.dev, st.dev, true)
  v.setBigUint64(L.ino, st.ino, true)
  v.setUint8(L.filetype, st.filetype)
  for (let i = L.filetype + 1; i < L.nlink; i++) v.setUint8(i, 0)
  v.setBigUint64(L.nlink, st.nlink, true)
  v.setBigUint64(L.size, st.size, true)
  v.setBigUint64(L.atim, st.atim, true)
  v.setBigUint64(L.mtim, st.mtim, true)
  v.setBigUint64(L.ctim, st.ctim, true)
  setPayloadLength(c, L.sizeOf)
}

/**
 * The times fst_flags ask for: the one given (`atim`, `mtim`, as the guest's u64s), now, or
 * unchanged (undefined); EINVAL for both.
 */
export const requestedTimes = fnNow(function*(flags: number, atim: bigint, mtim: bigint) {
  if ((flags & FstFlags.ATIM) !== 0 && (flags & FstFlags.ATIM_NOW) !== 0) return yield* fail(Errno.INVAL)
  if ((flags & FstFlags.MTIM) !== 0 && (flags & FstFlags.MTIM_NOW) !== 0) return yield* fail(Errno.INVAL)
  const now = yield* Clock.currentTimeNanos
  const pick = (given: number, atNow: number, value: bigint) => (flags & given) !== 0 ? value : (flags & atNow) !== 0 ? now : undefined
  return {
    atim: pick(FstFlags.ATIM, FstFlags.ATIM_NOW, BigInt.asUintN(64, atim)),
    mtim: pick(FstFlags.MTIM, FstFlags.MTIM_NOW, BigInt.asUintN(64, mtim))
  }
})
