/**
 * strace: a line when a syscall enters the sentry and one when it leaves, with the task, the
 * decoded arguments (fds with what they name, paths, socket addresses, buffers escaped and cut at `logSize`), the
 * result, the errno name and the time spent. Calls served inside the worker are not seen, as
 * vDSO calls are not seen by strace on Linux; with strace on, writes are not served there.
 */
import { AddressFamily, AddrPort, Errno, errnoName, SockType, type SyscallName } from "@runsc/abi"
import { decodeAddrPort, formatAddress } from "../net/addrPort.js"
import { Word } from "../platform/channel.js"
import { args, type BytesArg, u64Result } from "../platform/syscallAbi.js"
import type { SyscallContext } from "./context.js"

export interface StraceOptions {
  /** Only these syscalls are logged; all when undefined. */
  readonly syscalls?: ReadonlySet<string>
  /** Bytes of each buffer shown before it is cut. */
  readonly logSize: number
  readonly emit: (line: string) => void
}

const utf8 = new TextDecoder()

const escape = (bytes: Uint8Array, logSize: number): string => {
  const shown = bytes.subarray(0, logSize)
  let out = ""
  for (const b of shown) {
    out += b === 0x0a ? "\\n" : b === 0x09 ? "\\t" : b === 0x22 ? "\\\"" : b === 0x5c ? "\\\\"
      : b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`
  }
  return `"${out}"${bytes.length > logSize ? "..." : ""}`
}

const fdName = (c: SyscallContext, fd: number): string => {
  const entry = c.tg.fdTable.lookup(fd)
  if (entry === undefined) return `${fd}`
  if (entry.dentry) return `${fd} ${entry.dentry.path}`
  if (entry.description.passthroughHostFd !== undefined) return `${fd} host:[${entry.description.passthroughHostFd}]`
  return `${fd}`
}

const path = (c: SyscallContext, field: BytesArg): string => {
  const at = field.at(c)
  return JSON.stringify(utf8.decode(c.channel.data.subarray(at, at + field.length(c))))
}

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`

const FAMILY_NAMES: Readonly<Record<number, string>> = { [AddressFamily.INET4]: "AF_INET", [AddressFamily.INET6]: "AF_INET6", [AddressFamily.UNIX]: "AF_UNIX" }
const TYPE_NAMES: Readonly<Record<number, string>> = { [SockType.STREAM]: "SOCK_STREAM", [SockType.DGRAM]: "SOCK_DGRAM" }

/** The `addr_port` at `at` in the data area, as people read it. */
const address = (c: SyscallContext, at: number): string => {
  const size = c.channel.data[at] === AddressFamily.UNIX ? AddrPort.unixSizeOf : AddrPort.sizeOf
  const decoded = decodeAddrPort(c.channel.data.subarray(at, at + size))
  return typeof decoded === "number" ? `{${errnoName(decoded)}}` : formatAddress(decoded)
}

/** Decodes the request now in the channel; called before the handler overwrites the data area. */
const formatArgs = (name: SyscallName, c: SyscallContext, logSize: number): string => {
  switch (name) {
    case "fd_write":
    case "fd_pwrite": {
      const A = args[name]
      const bytes = c.channel.data.subarray(0, A.iovs.length(c))
      const offset = name === "fd_pwrite" ? `, ${args.fd_pwrite.offset(c)}` : ""
      return `${fdName(c, A.fd(c))}, ${escape(bytes, logSize)}, ${bytes.length}${offset}`
    }
    case "fd_read":
      return `${fdName(c, args.fd_read.fd(c))}, ${args.fd_read.iovs(c)}`
    case "fd_pread":
      return `${fdName(c, args.fd_pread.fd(c))}, ${args.fd_pread.iovs(c)}, ${args.fd_pread.offset(c)}`
    case "fd_seek":
      return `${fdName(c, args.fd_seek.fd(c))}, ${args.fd_seek.offset(c)}, ${args.fd_seek.whence(c)}`
    case "fd_readdir":
      return `${fdName(c, args.fd_readdir.fd(c))}, ${args.fd_readdir.buf(c)}, cookie ${args.fd_readdir.cookie(c)}`
    case "path_open": {
      const A = args.path_open
      return `${fdName(c, A.fd(c))}, ${path(c, A.path)}, lookup ${hex(A.dirflags(c))}, oflags ${hex(A.oflags(c))}, fdflags ${hex(A.fdflags(c))}, rights ${hex(Number(A.rightsBase(c) & 0xffffffffn))}`
    }
    case "path_filestat_get":
      return `${fdName(c, args[name].fd(c))}, ${path(c, args[name].path)}, lookup ${hex(args[name].flags(c))}`
    case "path_filestat_set_times":
    case "path_readlink":
    case "path_create_directory":
    case "path_remove_directory":
    case "path_unlink_file":
      return `${fdName(c, args[name].fd(c))}, ${path(c, args[name].path)}`
    case "path_rename": {
      const A = args.path_rename
      return `${fdName(c, A.fd(c))}, ${path(c, A.oldPath)}, ${fdName(c, A.newFd(c))}, ${path(c, A.newPath)}`
    }
    case "path_link": {
      const A = args.path_link
      return `${fdName(c, A.oldFd(c))}, ${path(c, A.oldPath)}, ${fdName(c, A.newFd(c))}, ${path(c, A.newPath)}`
    }
    case "path_symlink": {
      const A = args.path_symlink
      return `${path(c, A.oldPath)}, ${fdName(c, A.fd(c))}, ${path(c, A.newPath)}`
    }
    case "poll_oneoff":
      return `nsubs ${args.poll_oneoff.nsubs(c)}`
    case "sock_open":
    case "sock_pair": {
      const A = args[name]
      return `${FAMILY_NAMES[A.family(c)] ?? A.family(c)}, ${TYPE_NAMES[A.type(c)] ?? A.type(c)}, ${A.protocol(c)}`
    }
    case "sock_bind":
    case "sock_connect":
      return `${fdName(c, args[name].fd(c))}, ${address(c, args[name].addr.at(c))}`
    case "sock_send_to": {
      const A = args.sock_send_to
      const bytes = c.channel.data.subarray(0, A.iovs.length(c))
      return `${fdName(c, A.fd(c))}, ${escape(bytes, logSize)}, ${bytes.length}, ${hex(A.flags(c))}, to ${address(c, A.addr.at(c))}`
    }
    case "proc_spawn": {
      const A = args.proc_spawn
      const argvAt = A.argv.at(c)
      const argv = c.channel.data.subarray(argvAt, argvAt + A.argv.length(c))
      return `${path(c, A.path)}, [${[...utf8.decode(argv).split("\0").slice(0, -1)].map((s) => JSON.stringify(s)).join(", ")}], nfds ${A.nfds(c)}, pgid ${A.pgid(c)}, flags ${hex(A.flags(c))}`
    }
    default: {
      const n = c.channel.words[Word.NARGS]!
      const ints = Array.from({ length: n }, (_, i) => (i === 0 && name.startsWith("fd_") ? fdName(c, arg32(c, 0) >>> 0) : `${arg32(c, i)}`))
      return ints.join(", ")
    }
  }
}

const arg32 = (c: SyscallContext, i: number) => c.channel.words[Word.ARG0 + i]!

const formatResult = (name: SyscallName, c: SyscallContext, errno: number, logSize: number): string => {
  if (errno !== Errno.SUCCESS) return `-1 ${errnoName(errno)}`
  switch (name) {
    case "fd_read":
    case "fd_pread": {
      const n = c.channel.words[Word.RESULT0]!
      return `${n} ${escape(c.channel.data.subarray(0, n), logSize)}`
    }
    case "fd_write":
    case "fd_pwrite":
    case "path_open":
    case "fd_readdir":
    case "poll_oneoff":
    case "path_readlink":
      return `${c.channel.words[Word.RESULT0]}`
    case "fd_seek":
    case "fd_tell":
      return `${u64Result(c.channel)}`
    case "proc_spawn":
    case "proc_join":
    case "proc_id":
    case "fd_dup":
    case "sock_open":
    case "sock_accept":
    case "sock_accept_v2":
    case "sock_send_to":
    case "sock_recv_from":
      return `${c.channel.words[Word.RESULT0]}`
    case "fd_pipe":
    case "sock_pair":
      return `[${c.channel.words[Word.RESULT0]}, ${c.channel.words[Word.RESULT1]}]`
    default:
      return "0"
  }
}

export interface StraceCall {
  readonly prefix: string
  readonly args: string
}

/** The entry line; returns what the exit line needs, or undefined when filtered out. */
export const straceEnter = (options: StraceOptions, name: SyscallName, c: SyscallContext): StraceCall | undefined => {
  if (options.syscalls && !options.syscalls.has(name)) return undefined
  const pid = `${c.tg.rootPid}`.padStart(4)
  const comm = (c.tg.argv[0] ?? "").split("/").pop()
  const call = { prefix: `[${pid}:${pid}] ${comm}`, args: formatArgs(name, c, options.logSize) }
  options.emit(`${call.prefix} E ${name}(${call.args})`)
  return call
}

export const straceExit = (
  options: StraceOptions,
  call: StraceCall,
  name: SyscallName,
  c: SyscallContext,
  errno: number,
  elapsedNs: bigint
): void => {
  const micros = Number(elapsedNs) / 1000
  options.emit(`${call.prefix} X ${name}(${call.args}) = ${formatResult(name, c, errno, options.logSize)} (${micros.toFixed(1)}µs)`)
}
