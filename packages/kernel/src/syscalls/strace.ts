/**
 * strace: a line when a syscall enters the sentry and one when it leaves, with the task, the
 * decoded arguments (fds with what they name, paths, buffers escaped and cut at `logSize`), the
 * result, the errno name and the time spent. Calls served inside the worker are not seen, as
 * vDSO calls are not seen by strace on Linux; with strace on, writes are not served there.
 */
import { Errno, errnoName, type SyscallName } from "@runsc/abi"
import { Word } from "../platform/channel.js"
import type { SyscallContext } from "./context.js"
import { u32 } from "./context.js"

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

const path = (c: SyscallContext, at: number, length: number): string =>
  JSON.stringify(utf8.decode(c.channel.data.subarray(at, at + length)))

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`

/** Decodes the request now in the channel; called before the handler overwrites the data area. */
const formatArgs = (name: SyscallName, c: SyscallContext, logSize: number): string => {
  const a = (i: number) => u32(c, i)
  const w = c.channel.i64
  switch (name) {
    case "fd_write":
      return `${fdName(c, a(0))}, ${escape(c.channel.data.subarray(0, a(1)), logSize)}, ${a(1)}`
    case "fd_pwrite":
      return `${fdName(c, a(0))}, ${escape(c.channel.data.subarray(0, a(1)), logSize)}, ${a(1)}, ${w[0]}`
    case "fd_read":
      return `${fdName(c, a(0))}, ${a(1)}`
    case "fd_pread":
      return `${fdName(c, a(0))}, ${a(1)}, ${w[0]}`
    case "fd_seek":
      return `${fdName(c, a(0))}, ${w[0]}, ${a(1)}`
    case "fd_readdir":
      return `${fdName(c, a(0))}, ${a(1)}, cookie ${w[0]}`
    case "path_open":
      return `${fdName(c, a(0))}, ${path(c, 0, a(2))}, lookup ${hex(a(1))}, oflags ${hex(a(3))}, fdflags ${hex(a(4))}, rights ${hex(Number(w[0]! & 0xffffffffn))}`
    case "path_filestat_get":
      return `${fdName(c, a(0))}, ${path(c, 0, a(2))}, lookup ${hex(a(1))}`
    case "path_filestat_set_times":
      return `${fdName(c, a(0))}, ${path(c, 0, a(2))}`
    case "path_readlink":
    case "path_create_directory":
    case "path_remove_directory":
    case "path_unlink_file":
      return `${fdName(c, a(0))}, ${path(c, 0, a(1))}`
    case "path_rename":
      return `${fdName(c, a(0))}, ${path(c, 0, a(1))}, ${fdName(c, a(2))}, ${path(c, a(1), a(3))}`
    case "path_link":
      return `${fdName(c, a(0))}, ${path(c, 0, a(2))}, ${fdName(c, a(3))}, ${path(c, a(2), a(4))}`
    case "path_symlink":
      return `${path(c, 0, a(0))}, ${fdName(c, a(1))}, ${path(c, a(0), a(2))}`
    case "poll_oneoff":
      return `nsubs ${a(0)}`
    case "proc_spawn": {
      const argv = c.channel.data.subarray(a(0), a(0) + a(1))
      return `${path(c, 0, a(0))}, [${[...utf8.decode(argv).split("\0").slice(0, -1)].map((s) => JSON.stringify(s)).join(", ")}], nfds ${a(3)}, pgid ${arg32(c, 4)}, flags ${hex(a(5))}`
    }
    default: {
      const n = c.channel.words[Word.NARGS]!
      const ints = Array.from({ length: n }, (_, i) => (i === 0 && name.startsWith("fd_") ? fdName(c, a(0)) : `${arg32(c, i)}`))
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
      return `${c.channel.i64[4]}`
    case "proc_spawn":
    case "proc_join":
    case "proc_id":
    case "fd_dup":
      return `${c.channel.words[Word.RESULT0]}`
    case "fd_pipe":
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
