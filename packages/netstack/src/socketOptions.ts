/** What stream and datagram sockets keep alike: their option flags, buffer sizes and fstat. */
import { FileType } from "@runsc/abi"
import type { SocketFlag, SocketSize, SocketTimeLimit, Stat } from "@runsc/kernel"
import { Effect } from "effect"

/** A socket's receive (and send) buffer unless SO_RCVBUF (SO_SNDBUF) says otherwise. */
const DEFAULT_BUFFER = 128 * 1024
/** Linux's bounds of what SO_RCVBUF/SO_SNDBUF set. */
const MIN_BUFFER = 4608
const MAX_BUFFER = 4 * 1024 * 1024

/** The buffer SO_RCVBUF/SO_SNDBUF `value` makes: Linux doubles what is asked, within its bounds. */
const bufferSizeOf = (value: number): number => Math.min(Math.max(value * 2, MIN_BUFFER), MAX_BUFFER)

export class SocketOptions {
  private readonly flags = new Set<SocketFlag>()
  receiveBuffer = DEFAULT_BUFFER
  sendBuffer = DEFAULT_BUFFER
  /** SO_RCVTIMEO and SO_SNDTIMEO, in milliseconds (undefined: no limit). */
  readonly timeLimits: { [K in SocketTimeLimit]?: number | undefined } = {}

  has(flag: SocketFlag): boolean {
    return this.flags.has(flag)
  }

  setFlag(option: SocketFlag, value: boolean): Effect.Effect<void> {
    return Effect.sync(() => {
      if (value) this.flags.add(option)
      else this.flags.delete(option)
    })
  }

  /** SO_RCVBUF/SO_SNDBUF: Linux doubles what is asked, within its bounds. */
  setSize(option: SocketSize, value: number): Effect.Effect<void> {
    return Effect.sync(() => {
      if (option === "receiveBuffer") this.receiveBuffer = bufferSizeOf(value)
      else this.sendBuffer = bufferSizeOf(value)
    })
  }

  getSize(option: SocketSize): Effect.Effect<number> {
    return Effect.sync(() => (option === "receiveBuffer" ? this.receiveBuffer : this.sendBuffer))
  }

  /** A new connection's copy (an accepted socket has its listener's options). */
  copy(): SocketOptions {
    const copy = new SocketOptions()
    for (const flag of this.flags) copy.flags.add(flag)
    copy.receiveBuffer = this.receiveBuffer
    copy.sendBuffer = this.sendBuffer
    Object.assign(copy.timeLimits, this.timeLimits)
    return copy
  }
}

/** A socket's fstat: its own inode number, nothing on disk. */
export const socketStat = (ino: bigint, filetype: FileType): Effect.Effect<Stat> =>
  Effect.sync(() => ({ dev: 0n, ino, filetype, nlink: 1n, size: 0n, atim: 0n, mtim: 0n, ctim: 0n, mode: 0o777 }))
