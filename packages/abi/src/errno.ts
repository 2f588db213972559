/**
 * WASI preview1 errno values (the `errno` enum of typenames.witx, in witx order) and their
 * Linux-style names, plus the mapping from Node's host error codes.
 */

export const Errno = {
  SUCCESS: 0,
  TOOBIG: 1,
  ACCES: 2,
  ADDRINUSE: 3,
  ADDRNOTAVAIL: 4,
  AFNOSUPPORT: 5,
  AGAIN: 6,
  ALREADY: 7,
  BADF: 8,
  BADMSG: 9,
  BUSY: 10,
  CANCELED: 11,
  CHILD: 12,
  CONNABORTED: 13,
  CONNREFUSED: 14,
  CONNRESET: 15,
  DEADLK: 16,
  DESTADDRREQ: 17,
  DOM: 18,
  DQUOT: 19,
  EXIST: 20,
  FAULT: 21,
  FBIG: 22,
  HOSTUNREACH: 23,
  IDRM: 24,
  ILSEQ: 25,
  INPROGRESS: 26,
  INTR: 27,
  INVAL: 28,
  IO: 29,
  ISCONN: 30,
  ISDIR: 31,
  LOOP: 32,
  MFILE: 33,
  MLINK: 34,
  MSGSIZE: 35,
  MULTIHOP: 36,
  NAMETOOLONG: 37,
  NETDOWN: 38,
  NETRESET: 39,
  NETUNREACH: 40,
  NFILE: 41,
  NOBUFS: 42,
  NODEV: 43,
  NOENT: 44,
  NOEXEC: 45,
  NOLCK: 46,
  NOLINK: 47,
  NOMEM: 48,
  NOMSG: 49,
  NOPROTOOPT: 50,
  NOSPC: 51,
  NOSYS: 52,
  NOTCONN: 53,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTRECOVERABLE: 56,
  NOTSOCK: 57,
  NOTSUP: 58,
  NOTTY: 59,
  NXIO: 60,
  OVERFLOW: 61,
  OWNERDEAD: 62,
  PERM: 63,
  PIPE: 64,
  PROTO: 65,
  PROTONOSUPPORT: 66,
  PROTOTYPE: 67,
  RANGE: 68,
  ROFS: 69,
  SPIPE: 70,
  SRCH: 71,
  STALE: 72,
  TIMEDOUT: 73,
  TXTBSY: 74,
  XDEV: 75,
  NOTCAPABLE: 76
} as const
export type Errno = (typeof Errno)[keyof typeof Errno]

const names: ReadonlyArray<string> = [
  "success", "2big", "acces", "addrinuse", "addrnotavail", "afnosupport", "again", "already", "badf", "badmsg", "busy", "canceled", "child", "connaborted", "connrefused", "connreset", "deadlk", "destaddrreq", "dom", "dquot", "exist", "fault", "fbig", "hostunreach", "idrm", "ilseq", "inprogress", "intr", "inval", "io", "isconn", "isdir", "loop", "mfile", "mlink", "msgsize", "multihop", "nametoolong", "netdown", "netreset", "netunreach", "nfile", "nobufs", "nodev", "noent", "noexec", "nolck", "nolink", "nomem", "nomsg", "noprotoopt", "nospc", "nosys", "notconn", "notdir", "notempty", "notrecoverable", "notsock", "notsup", "notty", "nxio", "overflow", "ownerdead", "perm", "pipe", "proto", "protonosupport", "prototype", "range", "rofs", "spipe", "srch", "stale", "timedout", "txtbsy", "xdev", "notcapable"
]

/** `ENOENT` for Errno.NOENT; `ESUCCESS` for 0. */
export const errnoName = (errno: number): string =>
  errno === 0 ? "ESUCCESS" : names[errno] !== undefined ? `E${names[errno]!.toUpperCase()}` : `E?${errno}`

const aliases: Record<string, Errno> = {
  EWOULDBLOCK: Errno.AGAIN,
  EOPNOTSUPP: Errno.NOTSUP,
  ENOTSUP: Errno.NOTSUP,
  // Node's permission model refusing a host path: the sentry was not granted it.
  ERR_ACCESS_DENIED: Errno.ACCES
}

/** Maps a Node/libuv error code (`err.code`, e.g. `ENOENT`) to a WASI errno; unknown codes become EIO. */
export const errnoFromHostCode = (code: string | undefined): Errno => {
  if (code === undefined) return Errno.IO
  const alias = aliases[code]
  if (alias !== undefined) return alias
  const index = code.startsWith("E") ? names.indexOf(code.slice(1).toLowerCase()) : -1
  return index > 0 ? (index as Errno) : Errno.IO
}
