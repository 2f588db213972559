/**
 * WASI preview1 ABI as data: enumerations, flags, rights and struct layouts (typenames.witx),
 * and the list of `wasi_snapshot_preview1` functions with the numbers the syscall channel uses.
 */

export const FileType = {
  UNKNOWN: 0,
  BLOCK_DEVICE: 1,
  CHARACTER_DEVICE: 2,
  DIRECTORY: 3,
  REGULAR_FILE: 4,
  SOCKET_DGRAM: 5,
  SOCKET_STREAM: 6,
  SYMBOLIC_LINK: 7
} as const
export type FileType = (typeof FileType)[keyof typeof FileType]

export const ClockId = { REALTIME: 0, MONOTONIC: 1, PROCESS_CPUTIME: 2, THREAD_CPUTIME: 3 } as const
export const Whence = { SET: 0, CUR: 1, END: 2 } as const
export const EventType = { CLOCK: 0, FD_READ: 1, FD_WRITE: 2 } as const
export const SubclockFlags = { ABSTIME: 1 } as const
export const EventRwFlags = { HANGUP: 1 } as const
export const OFlags = { CREAT: 1, DIRECTORY: 2, EXCL: 4, TRUNC: 8 } as const
export const LookupFlags = { SYMLINK_FOLLOW: 1 } as const
export const FstFlags = { ATIM: 1, ATIM_NOW: 2, MTIM: 4, MTIM_NOW: 8 } as const
export const FdFlags = { APPEND: 1, DSYNC: 2, NONBLOCK: 4, RSYNC: 8, SYNC: 16 } as const
export const PreopenType = { DIR: 0 } as const

/** Rights: bit n of a u64 (typenames.witx order). */
export const Rights = {
  FD_DATASYNC: 1n << 0n,
  FD_READ: 1n << 1n,
  FD_SEEK: 1n << 2n,
  FD_FDSTAT_SET_FLAGS: 1n << 3n,
  FD_SYNC: 1n << 4n,
  FD_TELL: 1n << 5n,
  FD_WRITE: 1n << 6n,
  FD_ADVISE: 1n << 7n,
  FD_ALLOCATE: 1n << 8n,
  PATH_CREATE_DIRECTORY: 1n << 9n,
  PATH_CREATE_FILE: 1n << 10n,
  PATH_LINK_SOURCE: 1n << 11n,
  PATH_LINK_TARGET: 1n << 12n,
  PATH_OPEN: 1n << 13n,
  FD_READDIR: 1n << 14n,
  PATH_READLINK: 1n << 15n,
  PATH_RENAME_SOURCE: 1n << 16n,
  PATH_RENAME_TARGET: 1n << 17n,
  PATH_FILESTAT_GET: 1n << 18n,
  PATH_FILESTAT_SET_SIZE: 1n << 19n,
  PATH_FILESTAT_SET_TIMES: 1n << 20n,
  FD_FILESTAT_GET: 1n << 21n,
  FD_FILESTAT_SET_SIZE: 1n << 22n,
  FD_FILESTAT_SET_TIMES: 1n << 23n,
  PATH_SYMLINK: 1n << 24n,
  PATH_REMOVE_DIRECTORY: 1n << 25n,
  PATH_UNLINK_FILE: 1n << 26n,
  POLL_FD_READWRITE: 1n << 27n,
  SOCK_SHUTDOWN: 1n << 28n,
  SOCK_ACCEPT: 1n << 29n
} as const

export const ALL_RIGHTS = (1n << 30n) - 1n

/** Rights that only make sense on a regular file or stream (never on a directory). */
export const FILE_RIGHTS = Rights.FD_DATASYNC | Rights.FD_READ | Rights.FD_SEEK | Rights.FD_FDSTAT_SET_FLAGS |
  Rights.FD_SYNC | Rights.FD_TELL | Rights.FD_WRITE | Rights.FD_ADVISE | Rights.FD_ALLOCATE |
  Rights.FD_FILESTAT_GET | Rights.FD_FILESTAT_SET_SIZE | Rights.FD_FILESTAT_SET_TIMES | Rights.POLL_FD_READWRITE

/** Rights of a directory descriptor (base); its inheriting rights are ALL_RIGHTS. */
export const DIRECTORY_RIGHTS = Rights.FD_FDSTAT_SET_FLAGS | Rights.FD_SYNC | Rights.FD_ADVISE |
  Rights.PATH_CREATE_DIRECTORY | Rights.PATH_CREATE_FILE | Rights.PATH_LINK_SOURCE | Rights.PATH_LINK_TARGET |
  Rights.PATH_OPEN | Rights.FD_READDIR | Rights.PATH_READLINK | Rights.PATH_RENAME_SOURCE |
  Rights.PATH_RENAME_TARGET | Rights.PATH_FILESTAT_GET | Rights.PATH_FILESTAT_SET_SIZE |
  Rights.PATH_FILESTAT_SET_TIMES | Rights.FD_FILESTAT_GET | Rights.FD_FILESTAT_SET_TIMES | Rights.PATH_SYMLINK |
  Rights.PATH_REMOVE_DIRECTORY | Rights.PATH_UNLINK_FILE | Rights.POLL_FD_READWRITE

/** Struct sizes and field offsets (bytes). */
export const Layout = {
  iovec: { sizeOf: 8, buf: 0, bufLen: 4 },
  prestat: { sizeOf: 8, tag: 0, nameLen: 4 },
  fdstat: { sizeOf: 24, filetype: 0, flags: 2, rightsBase: 8, rightsInheriting: 16 },
  dirent: { sizeOf: 24, next: 0, ino: 8, namlen: 16, type: 20 },
  filestat: { sizeOf: 64, dev: 0, ino: 8, filetype: 16, nlink: 24, size: 32, atim: 40, mtim: 48, ctim: 56 },
  event: { sizeOf: 32, userdata: 0, error: 8, type: 10, nbytes: 16, flags: 24 },
  subscription: {
    sizeOf: 48,
    userdata: 0,
    tag: 8,
    clock: { id: 16, timeout: 24, precision: 32, flags: 40 },
    fdReadWrite: { fd: 16 }
  },
  /** WASIX `option_pid`. */
  optionPid: { sizeOf: 8, tag: 0, pid: 4 },
  /** WASIX `join_status`: a tag, then (at 2) an exit code or a signal, and (at 4) a signal. */
  joinStatus: { sizeOf: 6, tag: 0, code: 2, exitSignal: 4, stopSignal: 2 }
} as const

/**
 * WASIX `addr_port` as a call reads or writes it: a tag (AddressFamily) at 0, then at 2 the
 * port, a host-order number stored little-endian (both ways: wasmer writes results big-endian,
 * but wasix-libc probes for either and Rust's std reads little-endian), then the address in
 * network order (IPv4 at 4..7, IPv6 at 4..19). Only those 20 bytes are read or written for an
 * IP address, as Rust allocates 20. A Unix address fills the whole 110-byte C struct: its path
 * at 2, up to 108 bytes and NUL-terminated when shorter; an abstract name is a NUL, then the
 * name up to the next NUL (`unixSizeOf`, `path`, `pathMax`).
 */
export const AddrPort = { sizeOf: 20, tag: 0, port: 2, address: 4, unixSizeOf: 110, path: 2, pathMax: 108 } as const

/**
 * WASIX `addr` (an address without a port), as `resolve` writes an array of them: 18 bytes each,
 * the tag (AddressFamily) at 0, then at 2 the address in network order (IPv4 at 2..5, IPv6 at
 * 2..17), as addr_port carries it.
 */
export const Addr = { sizeOf: 18, tag: 0, address: 2 } as const

/** WASIX `option_timestamp` (sock_set_opt_time, sock_get_opt_time): a tag (0 none, 1 some), then at 8 nanoseconds. */
export const OptionTimestamp = { sizeOf: 16, tag: 0, value: 8 } as const

/** WASIX `sock_status`: what sock_status answers (one byte). */
export const SockStatus = { OPENING: 0, OPENED: 1, CLOSED: 2, FAILED: 3 } as const

/** WASIX `address_family`. */
export const AddressFamily = { UNSPEC: 0, INET4: 1, INET6: 2, UNIX: 3 } as const
/** WASIX `sock_type` (DGRAM was 0 before wasix-libc renumbered it; STREAM has always been 1). */
export const SockType = { UNUSED: 0, STREAM: 1, DGRAM: 2, RAW: 3, SEQPACKET: 4 } as const
/** WASIX `sock_proto`: IANA protocol numbers (0: the type's default). */
export const SockProto = { IP: 0, TCP: 6, UDP: 17 } as const
/** WASIX `sock_option` (wasix-libc's SO_* are these values). */
export const SockOption = {
  REUSE_PORT: 1,
  REUSE_ADDR: 2,
  NO_DELAY: 3,
  ONLY_V6: 5,
  BROADCAST: 6,
  LISTENING: 10,
  LAST_ERROR: 11,
  KEEP_ALIVE: 12,
  RECV_BUF_SIZE: 15,
  SEND_BUF_SIZE: 16,
  RECV_TIMEOUT: 19,
  SEND_TIMEOUT: 20,
  TYPE: 25,
  PROTO: 26
} as const
/** sock_recv's `ri_flags` (RECV_DONT_WAIT is WASIX's); sock_send's `si_flags` (WASIX's). */
export const RiFlags = { RECV_PEEK: 1, RECV_WAITALL: 2, RECV_DATA_TRUNCATED: 4, RECV_DONT_WAIT: 8 } as const
/** sock_recv's `ro_flags`. */
export const RoFlags = { RECV_DATA_TRUNCATED: 1 } as const
export const SiFlags = { SEND_DONT_WAIT: 1 } as const
/** sock_shutdown's `how`. */
export const SdFlags = { RD: 1, WR: 2 } as const

/** WASIX `join_flags`. */
export const JoinFlags = { NON_BLOCKING: 1, WAKE_STOPPED: 2 } as const
/** WASIX `join_status_type`. */
export const JoinStatusType = { NOTHING: 0, EXIT_NORMAL: 1, EXIT_SIGNAL: 2, STOPPED: 3 } as const

/** proc_spawn's `fds` entries (docs/process-api.md). */
export const SpawnFd = { CLOSED: -1, PIPE: -2 } as const
/** proc_spawn's `flags`. */
export const SpawnFlags = { SEARCH_PATH: 1, RESET_SIGNALS: 2 } as const

/** Every `wasi_snapshot_preview1` function, in witx order. */
const preview1 = [
  "args_get",
  "args_sizes_get",
  "environ_get",
  "environ_sizes_get",
  "clock_res_get",
  "clock_time_get",
  "fd_advise",
  "fd_allocate",
  "fd_close",
  "fd_datasync",
  "fd_fdstat_get",
  "fd_fdstat_set_flags",
  "fd_fdstat_set_rights",
  "fd_filestat_get",
  "fd_filestat_set_size",
  "fd_filestat_set_times",
  "fd_pread",
  "fd_prestat_get",
  "fd_prestat_dir_name",
  "fd_pwrite",
  "fd_read",
  "fd_readdir",
  "fd_renumber",
  "fd_seek",
  "fd_sync",
  "fd_tell",
  "fd_write",
  "path_create_directory",
  "path_filestat_get",
  "path_filestat_set_times",
  "path_link",
  "path_open",
  "path_readlink",
  "path_remove_directory",
  "path_rename",
  "path_symlink",
  "path_unlink_file",
  "poll_oneoff",
  "proc_exit",
  "proc_raise",
  "sched_yield",
  "random_get",
  "sock_accept",
  "sock_recv",
  "sock_send",
  "sock_shutdown"
] as const

/** The WASIX calls (module `wasix_32v1`) whose meaning we implement (docs/process-api.md, docs/socket-api.md). */
const wasix = [
  "proc_id",
  "proc_parent",
  "proc_signal",
  "proc_join",
  "fd_pipe",
  "fd_dup",
  "sock_open",
  "sock_bind",
  "sock_listen",
  "sock_connect",
  "sock_accept_v2",
  "sock_addr_local",
  "sock_addr_peer",
  "sock_recv_from",
  "sock_send_to",
  "sock_set_opt_flag",
  "sock_get_opt_flag",
  "sock_set_opt_size",
  "sock_get_opt_size",
  "sock_status",
  "resolve",
  "sock_pair",
  "sock_set_opt_time",
  "sock_get_opt_time"
] as const

/** preview1's socket calls, which WASIX programs may also import from `wasix_32v1`. */
const preview1Sockets = ["sock_recv", "sock_send", "sock_shutdown"] as const

/** Our own module `runsc_proc_v1` (docs/process-api.md): process creation, groups, sessions, terminals. */
const runscProc = [
  "proc_spawn",
  "proc_setpgid",
  "proc_getpgid",
  "proc_setsid",
  "proc_getsid",
  "tty_getpgrp",
  "tty_setpgrp",
  "proc_sigignore"
] as const

/**
 * Calls that only the sentry's own worker code makes, never a guest (no import module has them):
 * `memory_grow(current, pages)` asks the sentry for `pages` more pages of guest memory before an
 * instrumented guest's memory.grow (ENOMEM: the grow returns -1).
 */
const sentryCalls = ["memory_grow"] as const

/**
 * Every syscall on the channel: the `wasi_snapshot_preview1` functions, then the process calls of
 * docs/process-api.md, then the sentry's own. The index is the syscall number on the channel
 * between a guest worker and the sentry.
 */
export const syscallNames = [...preview1, ...wasix, ...runscProc, ...sentryCalls] as const
export type SyscallName = (typeof syscallNames)[number]
/** The syscalls a guest may import (every one but the sentry's own). */
export type ImportableSyscall = Exclude<SyscallName, (typeof sentryCalls)[number]>

/** The import modules a guest may use, and the syscalls each provides. */
export const importModules: { readonly [module: string]: ReadonlyArray<SyscallName> } = {
  wasi_snapshot_preview1: preview1,
  wasix_32v1: [...wasix, ...preview1Sockets],
  runsc_proc_v1: runscProc
}

export const syscallNumber: { readonly [K in SyscallName]: number } = Object.fromEntries(
  syscallNames.map((name, i) => [name, i])
) as { [K in SyscallName]: number }

/** A function's wasm type: its parameter and result value types ("i32", "i64"). */
export interface WasmSignature {
  readonly params: ReadonlyArray<string>
  readonly results: ReadonlyArray<string>
}

/** "i32 i64 i32" → a signature returning `results` (default: an errno, i32). */
const sig = (params: string, results = "i32"): WasmSignature => ({
  params: params.length === 0 ? [] : params.split(" "),
  results: results.length === 0 ? [] : results.split(" ")
})

/**
 * The wasm type of each import a guest may use, as the witx lowers preview1 (every 64-bit
 * value an i64, every pointer, length, fd and flag set an i32, the errno the result) and as
 * docs/process-api.md declares ours. A module importing one with another type is refused at
 * load, as wasmtime refuses it: a JS host function would take any type and misread it.
 */
export const importSignatures: { readonly [K in ImportableSyscall]: WasmSignature } = {
  args_get: sig("i32 i32"),
  args_sizes_get: sig("i32 i32"),
  environ_get: sig("i32 i32"),
  environ_sizes_get: sig("i32 i32"),
  clock_res_get: sig("i32 i32"),
  clock_time_get: sig("i32 i64 i32"),
  fd_advise: sig("i32 i64 i64 i32"),
  fd_allocate: sig("i32 i64 i64"),
  fd_close: sig("i32"),
  fd_datasync: sig("i32"),
  fd_fdstat_get: sig("i32 i32"),
  fd_fdstat_set_flags: sig("i32 i32"),
  fd_fdstat_set_rights: sig("i32 i64 i64"),
  fd_filestat_get: sig("i32 i32"),
  fd_filestat_set_size: sig("i32 i64"),
  fd_filestat_set_times: sig("i32 i64 i64 i32"),
  fd_pread: sig("i32 i32 i32 i64 i32"),
  fd_prestat_get: sig("i32 i32"),
  fd_prestat_dir_name: sig("i32 i32 i32"),
  fd_pwrite: sig("i32 i32 i32 i64 i32"),
  fd_read: sig("i32 i32 i32 i32"),
  fd_readdir: sig("i32 i32 i32 i64 i32"),
  fd_renumber: sig("i32 i32"),
  fd_seek: sig("i32 i64 i32 i32"),
  fd_sync: sig("i32"),
  fd_tell: sig("i32 i32"),
  fd_write: sig("i32 i32 i32 i32"),
  path_create_directory: sig("i32 i32 i32"),
  path_filestat_get: sig("i32 i32 i32 i32 i32"),
  path_filestat_set_times: sig("i32 i32 i32 i32 i64 i64 i32"),
  path_link: sig("i32 i32 i32 i32 i32 i32 i32"),
  path_open: sig("i32 i32 i32 i32 i32 i64 i64 i32 i32"),
  path_readlink: sig("i32 i32 i32 i32 i32 i32"),
  path_remove_directory: sig("i32 i32 i32"),
  path_rename: sig("i32 i32 i32 i32 i32 i32"),
  path_symlink: sig("i32 i32 i32 i32 i32"),
  path_unlink_file: sig("i32 i32 i32"),
  poll_oneoff: sig("i32 i32 i32 i32"),
  proc_exit: sig("i32", ""),
  proc_raise: sig("i32"),
  sched_yield: sig(""),
  random_get: sig("i32 i32"),
  sock_accept: sig("i32 i32 i32"),
  sock_recv: sig("i32 i32 i32 i32 i32 i32"),
  sock_send: sig("i32 i32 i32 i32 i32"),
  sock_shutdown: sig("i32 i32"),
  proc_id: sig("i32"),
  proc_parent: sig("i32 i32"),
  proc_signal: sig("i32 i32"),
  proc_join: sig("i32 i32 i32"),
  fd_pipe: sig("i32 i32"),
  fd_dup: sig("i32 i32"),
  sock_open: sig("i32 i32 i32 i32"),
  sock_bind: sig("i32 i32"),
  sock_listen: sig("i32 i32"),
  sock_connect: sig("i32 i32"),
  sock_accept_v2: sig("i32 i32 i32 i32"),
  sock_addr_local: sig("i32 i32"),
  sock_addr_peer: sig("i32 i32"),
  sock_recv_from: sig("i32 i32 i32 i32 i32 i32 i32"),
  sock_send_to: sig("i32 i32 i32 i32 i32 i32"),
  sock_set_opt_flag: sig("i32 i32 i32"),
  sock_get_opt_flag: sig("i32 i32 i32"),
  sock_set_opt_size: sig("i32 i32 i64"),
  sock_get_opt_size: sig("i32 i32 i32"),
  sock_status: sig("i32 i32"),
  resolve: sig("i32 i32 i32 i32 i32 i32"),
  sock_pair: sig("i32 i32 i32 i32 i32"),
  sock_set_opt_time: sig("i32 i32 i32"),
  sock_get_opt_time: sig("i32 i32 i32"),
  proc_spawn: sig("i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32"),
  proc_setpgid: sig("i32 i32"),
  proc_getpgid: sig("i32 i32"),
  proc_setsid: sig("i32"),
  proc_getsid: sig("i32 i32"),
  tty_getpgrp: sig("i32 i32"),
  tty_setpgrp: sig("i32 i32"),
  proc_sigignore: sig("i32 i32")
}
