/**
 * A process's stdio relayed over a Unix socket: for a CLI whose own fds cannot be reopened by
 * path (sockets, as Node gives its children), the CLI listens on a socket file and the sandbox
 * connects to it; the connection is then the guest's fd, as a stream.
 *
 * Reads wait for bytes (a fiber suspension), and see end of file once the CLI ends its side;
 * writes resolve once the bytes are handed to the socket; closing ends the sandbox's side,
 * which the CLI sees as end of file.
 */
import { Errno, FileType } from "@runsc/abi"
import { Changes, type FileDescription, type Stat, SyscallError } from "@runsc/kernel"
import { Effect } from "effect"
import * as Net from "node:net"

const fail = (errno: Errno) => Effect.fail(new SyscallError({ errno }))

/** Connects to the CLI's relay socket at `path`. */
export const connectRelay = (path: string): Effect.Effect<FileDescription, Error> =>
  Effect.async<FileDescription, Error>((resume) => {
    const socket = Net.createConnection({ path })
    socket.once("connect", () => {
      socket.removeAllListeners("error")
      resume(Effect.succeed(socketDescription(socket)))
    })
    socket.once("error", (e) => resume(Effect.fail(e)))
  })

const socketDescription = (socket: Net.Socket): FileDescription => {
  const chunks: Array<Uint8Array> = []
  let ended = false
  let broken = false
  const changes = new Changes()
  const notify = () => changes.notify()
  socket.on("data", (chunk: Buffer) => {
    chunks.push(chunk)
    notify()
  })
  socket.on("drain", notify)
  socket.on("end", () => {
    ended = true
    notify()
  })
  socket.on("error", () => {
    broken = true
    ended = true
    notify()
  })
  socket.on("close", () => {
    ended = true
    notify()
  })

  const read = (length: number, offset?: bigint, nonBlocking?: boolean): Effect.Effect<Uint8Array, SyscallError> =>
    Effect.suspend(() => {
      if (offset !== undefined) return fail(Errno.SPIPE)
      if (chunks.length > 0) {
        const head = chunks[0]!
        if (head.length <= length) return Effect.succeed(chunks.shift()!)
        chunks[0] = head.subarray(length)
        return Effect.succeed(head.subarray(0, length))
      }
      if (ended) return Effect.succeed(new Uint8Array(0))
      if (nonBlocking) return fail(Errno.AGAIN)
      return Effect.zipRight(changes.next, read(length, offset, nonBlocking))
    })

  const write = (data: Uint8Array, offset?: bigint): Effect.Effect<number, SyscallError> => {
    if (offset !== undefined) return fail(Errno.SPIPE)
    if (broken || socket.destroyed) return fail(Errno.PIPE)
    // Copied: the caller's bytes live in a buffer the next syscall reuses.
    const bytes = Buffer.from(data)
    return Effect.async<number, SyscallError>((resume) => {
      socket.write(bytes, (error) => resume(error ? fail(Errno.PIPE) : Effect.succeed(bytes.length)))
    })
  }

  return {
    filetype: FileType.UNKNOWN,
    read,
    write,
    seek: () => fail(Errno.SPIPE),
    stat: Effect.sync((): Stat => ({
      dev: 0n,
      ino: 0n,
      filetype: FileType.UNKNOWN,
      nlink: 1n,
      size: 0n,
      atim: 0n,
      mtim: 0n,
      ctim: 0n,
      mode: 0o600
    })),
    readiness: {
      ready: (event) => (event === "read" ? chunks.length > 0 || ended : !socket.writableNeedDrain),
      changed: Effect.suspend(() => changes.next)
    },
    close: Effect.sync(() => {
      socket.end()
    })
  }
}
