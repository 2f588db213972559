/**
 * Pipes inside the sandbox (fd_pipe, proc_spawn's RUNSC_FD_PIPE): a bounded byte buffer with a
 * read end and a write end, each an open file description that fd tables share by reference.
 *
 * Semantics are pipe(7)'s: a read waits until there are bytes or no write end is left (then 0,
 * end of file); a write waits while the buffer is full and fails EPIPE once no read end is left
 * (the caller raises SIGPIPE); a write of at most PIPE_BUF bytes is never interleaved with
 * another. Waiting is a fiber suspension, never a thread: a blocked reader costs nothing and is
 * interrupted when its task is killed.
 */
import { Errno, FileType } from "@runsc/abi"
import { Effect } from "effect"
import { Changes } from "../changes.js"
import { fail, type SyscallError } from "../errors.js"
import { ByteChunks } from "./byteChunks.js"
import type { FileDescription, Stat } from "./inode.js"

/** Linux's default pipe capacity. */
export const PIPE_CAPACITY = 65536
/** Writes up to this size are atomic. */
export const PIPE_BUF = 4096

class PipeBuffer extends ByteChunks {
  readers = 1
  writers = 1
  /** Contents or ends changed. */
  readonly changes = new Changes()

  override take(max: number): Uint8Array {
    const out = super.take(max)
    this.changes.notify()
    return out
  }

  override put(data: Uint8Array): void {
    super.put(data)
    this.changes.notify()
  }
}

export interface Pipe {
  readonly read: FileDescription
  readonly write: FileDescription
}

/**
 * A new pipe; `ino` identifies it in fstat (unique within the kernel). `closedBoth` runs once both
 * ends are closed (the sandbox's memory then takes back the pipe's buffer).
 */
export const makePipe = (ino: bigint, closedBoth?: () => void): Pipe => {
  const buffer = new PipeBuffer()
  const stat = Effect.sync((): Stat => ({
    dev: 0n,
    ino,
    filetype: FileType.UNKNOWN,
    nlink: 1n,
    size: BigInt(buffer.size),
    atim: 0n,
    mtim: 0n,
    ctim: 0n,
    mode: 0o600
  }))

  const read = (length: number, offset?: bigint, nonBlocking?: boolean): Effect.Effect<Uint8Array, SyscallError> =>
    Effect.suspend(() => {
      if (offset !== undefined) return fail(Errno.SPIPE)
      if (length === 0) return Effect.succeed(new Uint8Array(0))
      if (buffer.size > 0) return Effect.succeed(buffer.take(length))
      if (buffer.writers === 0) return Effect.succeed(new Uint8Array(0))
      if (nonBlocking) return fail(Errno.AGAIN)
      return Effect.zipRight(buffer.changes.next, read(length, offset, nonBlocking))
    })

  /** Writes everything (waiting for room as needed) unless the read end goes away. */
  const write = (data: Uint8Array, offset?: bigint, nonBlocking?: boolean): Effect.Effect<number, SyscallError> =>
    Effect.suspend(() => {
      if (offset !== undefined) return fail(Errno.SPIPE)
      let written = 0
      const loop: Effect.Effect<number, SyscallError> = Effect.suspend(() => {
        if (buffer.readers === 0) return written > 0 ? Effect.succeed(written) : fail(Errno.PIPE)
        const remaining = data.length - written
        if (remaining === 0) return Effect.succeed(written)
        const room = PIPE_CAPACITY - buffer.size
        // A small write goes in whole or not at all, so it is never interleaved with another.
        const fits = remaining <= PIPE_BUF ? room >= remaining : room > 0
        if (!fits) {
          if (nonBlocking) return written > 0 ? Effect.succeed(written) : fail(Errno.AGAIN)
          return Effect.zipRight(buffer.changes.next, loop)
        }
        const n = Math.min(room, remaining)
        buffer.put(data.subarray(written, written + n))
        written += n
        return loop
      })
      return loop
    })

  const readiness = {
    ready: (event: "read" | "write"): boolean =>
      event === "read" ? buffer.size > 0 || buffer.writers === 0 : buffer.size < PIPE_CAPACITY || buffer.readers === 0,
    changed: Effect.suspend(() => buffer.changes.next)
  }

  const end = (side: "read" | "write"): FileDescription => {
    // Once: a second close of one end must not count as the other end's reader or writer going.
    let closed = false
    return {
      filetype: FileType.UNKNOWN,
      readiness,
      read: side === "read" ? read : () => fail(Errno.BADF),
      write: side === "write" ? write : () => fail(Errno.BADF),
      seek: () => fail(Errno.SPIPE),
      stat,
      close: Effect.sync(() => {
        if (closed) return
        closed = true
        if (side === "read") buffer.readers--
        else buffer.writers--
        buffer.changes.notify()
        if (buffer.readers === 0 && buffer.writers === 0) closedBoth?.()
      })
    }
  }
  return { read: end("read"), write: end("write") }
}
