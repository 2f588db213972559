/**
 * The socket calls (docs/socket-api.md): preview1's sock_accept, sock_recv, sock_send and
 * sock_shutdown, and WASIX's sock_open, bind, listen, connect, accept_v2, addresses and
 * options, with WASIX's numbering and layouts. A socket is an fd like any other (poll, close,
 * dup, inheritance, fdstat's filetype); the network behind it is the sandbox's
 * (KernelOptions.network). Calls on an fd that is not a socket answer ENOTSOCK, as Linux does.
 */
import {
  AddressFamily,
  AddrPort,
  Errno,
  FdFlags,
  FileType,
  OptionTimestamp,
  Rights,
  RiFlags,
  RoFlags,
  SdFlags,
  SiFlags,
  SIGPIPE,
  SockOption,
  SockProto,
  SockStatus,
  SockType
} from "@runsc/abi"
import { Effect, Either } from "effect"
import { fail, type SyscallError } from "../errors.js"
import type { FdEntry } from "../fs/fdTable.js"
import { resolveNow } from "../fs/resolve.js"
import { decodeAddrPort, encodeAddrPort } from "../net/addrPort.js"
import { isAbstract, isSocket, SOCKET_RIGHTS, type Received, type SocketAddress, type SocketDescription, type SocketFlag, type SocketKind, type SocketSize, type SocketTimeLimit, type UnixAddress } from "../net/socket.js"
import { DATA_SIZE } from "../platform/channel.js"
import { type BytesArg, args, RECV_FROM_ADDRESS_AT, results } from "../platform/syscallAbi.js"
import { eitherNow, flatMapNow, fnNow, mapNow } from "../settled.js"
import { blocking, type Handler, setPayload, type SyscallContext } from "./context.js"
import { entryWith, exists, isNonBlocking, parentOf } from "./lookup.js"

// Each call's accessors, looked up once (see platform/syscallAbi.ts).
const SockAcceptArgs = args.sock_accept
const SockAcceptResults = results.sock_accept
const SockAcceptV2Args = args.sock_accept_v2
const SockAcceptV2Results = results.sock_accept_v2
const SockRecvArgs = args.sock_recv
const SockRecvResults = results.sock_recv
const SockSendArgs = args.sock_send
const SockSendResults = results.sock_send
const SockShutdownArgs = args.sock_shutdown
const SockOpenArgs = args.sock_open
const SockOpenResults = results.sock_open
const SockBindArgs = args.sock_bind
const SockListenArgs = args.sock_listen
const SockConnectArgs = args.sock_connect
const SockRecvFromArgs = args.sock_recv_from
const SockRecvFromResults = results.sock_recv_from
const SockSendToArgs = args.sock_send_to
const SockSendToResults = results.sock_send_to
const SockAddrLocalArgs = args.sock_addr_local
const SockAddrPeerArgs = args.sock_addr_peer
const SockSetOptFlagArgs = args.sock_set_opt_flag
const SockGetOptFlagArgs = args.sock_get_opt_flag
const SockSetOptSizeArgs = args.sock_set_opt_size
const SockGetOptSizeArgs = args.sock_get_opt_size
const SockGetOptSizeResults = results.sock_get_opt_size
const SockStatusArgs = args.sock_status
const SockPairArgs = args.sock_pair
const SockPairResults = results.sock_pair
const SockSetOptTimeArgs = args.sock_set_opt_time
const SockGetOptTimeArgs = args.sock_get_opt_time

const socketEntry = (description: SocketDescription, nonBlocking: boolean): FdEntry => ({
  description,
  rightsBase: SOCKET_RIGHTS,
  rightsInheriting: 0n,
  flags: nonBlocking ? FdFlags.NONBLOCK : 0
})

/** The socket at `fd`, with `rights`; ENOTSOCK for any other open file (whatever its rights, as Linux answers). */
const socketAt = (c: SyscallContext, fd: number, rights: bigint): Effect.Effect<{ entry: FdEntry; socket: SocketDescription }, SyscallError> =>
  flatMapNow(entryWith(c, fd, 0n), (entry) => {
    if (!isSocket(entry.description)) return fail(Errno.NOTSOCK)
    if ((entry.rightsBase & rights) !== rights) return fail(Errno.NOTCAPABLE)
    return Effect.succeed({ entry, socket: entry.description })
  })

// ---- addresses: WASIX addr_port -------------------------------------------------------------

/** Decodes an `addr_port` the guest passed (a structIn field). */
const addressArg = (c: SyscallContext, arg: BytesArg): Effect.Effect<SocketAddress, SyscallError> => addressAt(c, arg.at(c))

/** Decodes the `addr_port` at `at` in the data area (110 bytes there when it is a Unix one). */
const addressAt = (c: SyscallContext, at: number): Effect.Effect<SocketAddress, SyscallError> => {
  const size = c.channel.data[at] === AddressFamily.UNIX ? AddrPort.unixSizeOf : AddrPort.sizeOf
  const address = decodeAddrPort(c.channel.data.subarray(at, at + size))
  return typeof address === "number" ? fail(address) : Effect.succeed(address)
}

// ---- Unix socket paths ------------------------------------------------------------------------
// A path names a socket file in the filesystem, which is the kernel's: it is resolved here, as
// the calling process sees its filesystem (absolute paths from its root, relative ones from its
// working directory, never out of its root), and the network gets what was found. Abstract and
// unnamed addresses are the network's alone.

const isPath = (address: SocketAddress): address is UnixAddress => address.family === "unix" && address.path !== "" && !isAbstract(address)

/**
 * bind to a path: the directory that will hold the socket file, and how to make it there
 * (EADDRINUSE where the name is taken, EROFS on a read-only tree, EOPNOTSUPP where the
 * filesystem keeps no socket files).
 */
const bindablePath = fnNow(function*(c: SyscallContext, address: UnixAddress, kind: SocketKind) {
  const { dir, name, trailingSlash } = yield* parentOf(c, c.tg.cwd, address.path, c.tg.root)
  // "dir/sock/" names a directory that is not there, as Linux's bind reads it.
  if (trailingSlash) return yield* fail(Errno.NOENT)
  if (name === "" || name === "." || name === ".." || dir.isMountPoint(name) || (yield* exists(dir, name))) return yield* fail(Errno.ADDRINUSE)
  const changes = dir.inode.changes
  if (changes === undefined) return yield* fail(Errno.ROFS)
  const bindSocket = changes.bindSocket
  if (bindSocket === undefined) return yield* fail(Errno.NOTSUP)
  const filetype = kind === "stream" ? FileType.SOCKET_STREAM : FileType.SOCKET_DGRAM
  const makeNode = (socket: object) =>
    flatMapNow(eitherNow(bindSocket(name, filetype, socket)), (made) =>
      Either.isRight(made) ? Effect.void : fail(made.left.errno === Errno.EXIST ? Errno.ADDRINUSE : made.left.errno))
  return { ...address, makeNode }
})

/** connect or sendto a path: the socket its file names (null: it is no socket's file). */
const reachablePath = (c: SyscallContext, address: UnixAddress): Effect.Effect<UnixAddress, SyscallError> =>
  mapNow(resolveNow(c.tg.root, c.tg.cwd, address.path, { followFinal: true }), (dentry) => ({ ...address, boundSocket: dentry.inode.boundSocket ?? null }))

/** `address` for a call of `socket`'s: a Unix path resolved for a bind or for reaching it; anything else as it is. */
const resolvedFor = (c: SyscallContext, socket: SocketDescription, address: SocketAddress, use: "bind" | "reach"): Effect.Effect<SocketAddress, SyscallError> => {
  if (!isPath(address) || socket.socket.family !== "unix") return Effect.succeed(address)
  return use === "bind" ? bindablePath(c, address, socket.socket.kind) : reachablePath(c, address)
}

// ---- the calls ------------------------------------------------------------------------------

const familyOf = (family: number) =>
  family === AddressFamily.INET4 ? "inet4" as const
  : family === AddressFamily.INET6 ? "inet6" as const
  : family === AddressFamily.UNIX ? "unix" as const
  : undefined

/** A socket type and protocol as a kind: STREAM with TCP (or 0), DGRAM (2, or 0 as older WASIX numbered it) with UDP (or 0). */
const kindOf = (type: number, protocol: number): SocketKind | Errno => {
  if (type === SockType.STREAM) return protocol === SockProto.IP || protocol === SockProto.TCP ? "stream" : Errno.PROTONOSUPPORT
  if (type === SockType.DGRAM || type === SockType.UNUSED) return protocol === SockProto.IP || protocol === SockProto.UDP ? "dgram" : Errno.PROTONOSUPPORT
  return type === SockType.RAW || type === SockType.SEQPACKET ? Errno.PROTONOSUPPORT : Errno.INVAL
}

const sock_open: Handler = (c) => {
  const family = familyOf(SockOpenArgs.family(c))
  if (family === undefined) return fail(Errno.AFNOSUPPORT)
  // A Unix socket has no protocol but 0.
  if (family === "unix" && SockOpenArgs.protocol(c) !== SockProto.IP) return fail(Errno.PROTONOSUPPORT)
  const kind = kindOf(SockOpenArgs.type(c), SockOpenArgs.protocol(c))
  if (typeof kind === "number") return fail(kind)
  return flatMapNow(c.services.openSocket(c.tg, family, kind), (socket) =>
    mapNow(
      Effect.tapError(c.tg.fdTable.allocate(socketEntry(socket, false)), () => socket.close),
      (fd) => SockOpenResults.fd(c, fd)
    ))
}

const sock_bind: Handler = (c) =>
  flatMapNow(socketAt(c, SockBindArgs.fd(c), 0n), ({ socket }) =>
    flatMapNow(addressArg(c, SockBindArgs.addr), (address) => flatMapNow(resolvedFor(c, socket, address, "bind"), (bound) => socket.socket.bind(bound))))

/** socketpair(2): two connected sockets at two new fds. */
const sock_pair: Handler = (c) => {
  const family = familyOf(SockPairArgs.family(c))
  if (family === undefined) return fail(Errno.AFNOSUPPORT)
  if (family === "unix" && SockPairArgs.protocol(c) !== SockProto.IP) return fail(Errno.PROTONOSUPPORT)
  const kind = kindOf(SockPairArgs.type(c), SockPairArgs.protocol(c))
  if (typeof kind === "number") return fail(kind)
  return Effect.gen(function*() {
    const [one, other] = yield* c.services.pairSockets(c.tg, family, kind)
    const fds = c.tg.fdTable
    const fd1 = yield* fds.allocate(socketEntry(one, false)).pipe(Effect.tapError(() => Effect.zipRight(one.close, other.close)))
    const fd2 = yield* fds.allocate(socketEntry(other, false)).pipe(Effect.tapError(() => Effect.zipRight(fds.close(fd1).pipe(Effect.ignore), other.close)))
    SockPairResults.fd1(c, fd1)
    SockPairResults.fd2(c, fd2)
  })
}

const sock_listen: Handler = (c) =>
  flatMapNow(socketAt(c, SockListenArgs.fd(c), 0n), ({ socket }) => socket.socket.listen(SockListenArgs.backlog(c)))

const sock_connect: Handler = (c) =>
  flatMapNow(socketAt(c, SockConnectArgs.fd(c), 0n), ({ entry, socket }) =>
    flatMapNow(addressArg(c, SockConnectArgs.addr), (address) =>
      flatMapNow(resolvedFor(c, socket, address, "reach"), (to) => blocking(c, socket.socket.connect(to, isNonBlocking(entry))))))

/** accept, and the new fd (its own NONBLOCK from `flags`); the peer's address for accept_v2. */
const accept = (c: SyscallContext, fd: number, flags: number): Effect.Effect<{ fd: number; peer: SocketAddress }, SyscallError> =>
  flatMapNow(socketAt(c, fd, Rights.SOCK_ACCEPT), ({ entry, socket }) =>
    flatMapNow(blocking(c, socket.socket.accept(isNonBlocking(entry))), ({ peer, socket: accepted }) =>
      mapNow(
        Effect.tapError(c.tg.fdTable.allocate(socketEntry(accepted, (flags & FdFlags.NONBLOCK) !== 0)), () => accepted.close),
        (newFd) => ({ fd: newFd, peer })
      )))

const sock_accept: Handler = (c) =>
  mapNow(accept(c, SockAcceptArgs.fd(c), SockAcceptArgs.flags(c)), ({ fd }) => SockAcceptResults.accepted(c, fd))

const sock_accept_v2: Handler = (c) =>
  mapNow(accept(c, SockAcceptV2Args.fd(c), SockAcceptV2Args.flags(c)), ({ fd, peer }) => {
    SockAcceptV2Results.accepted(c, fd)
    setPayload(c, encodeAddrPort(peer))
  })

/** A receive of up to `length` bytes into the data area, with the call's ri_flags. */
const receive = (c: SyscallContext, fd: number, length: number, flags: number): Effect.Effect<Received, SyscallError> =>
  flatMapNow(socketAt(c, fd, Rights.FD_READ), ({ entry, socket }) =>
    mapNow(
      blocking(
        c,
        socket.socket.receive(length, {
          peek: (flags & RiFlags.RECV_PEEK) !== 0,
          waitAll: (flags & RiFlags.RECV_WAITALL) !== 0,
          nonBlocking: isNonBlocking(entry) || (flags & RiFlags.RECV_DONT_WAIT) !== 0,
          // A stream copies its bytes straight into the channel.
          into: c.channel.data
        })
      ),
      (received) => {
        const data = received.data
        if (data.buffer !== c.channel.data.buffer || data.byteOffset !== c.channel.data.byteOffset) c.channel.data.set(data)
        return received
      }
    ))

const roFlagsOf = (received: Received) => (received.truncated === true ? RoFlags.RECV_DATA_TRUNCATED : 0)

const sock_recv: Handler = (c) =>
  mapNow(receive(c, SockRecvArgs.fd(c), Math.min(SockRecvArgs.iovs(c), DATA_SIZE), SockRecvArgs.flags(c)), (received) => {
    SockRecvResults.nread(c, received.data.length)
    SockRecvResults.roFlags(c, roFlagsOf(received))
  })

/** sock_recv with the sender's address, after the bytes (RECV_FROM_ADDRESS_AT); a stream's is its peer's. */
const sock_recv_from: Handler = (c) => {
  const fd = SockRecvFromArgs.fd(c)
  return flatMapNow(receive(c, fd, Math.min(SockRecvFromArgs.iovs(c), RECV_FROM_ADDRESS_AT), SockRecvFromArgs.flags(c)), (received) => {
    SockRecvFromResults.nread(c, received.data.length)
    SockRecvFromResults.roFlags(c, roFlagsOf(received))
    const from = received.from === undefined ? peerOf(c, fd) : Effect.succeed(received.from)
    return mapNow(from, (address) => void c.channel.data.set(encodeAddrPort(address), RECV_FROM_ADDRESS_AT))
  })
}

/** A stream socket's peer, for a sock_recv_from on it. */
const peerOf = (c: SyscallContext, fd: number): Effect.Effect<SocketAddress, SyscallError> =>
  flatMapNow(socketAt(c, fd, 0n), ({ socket }) => socket.socket.peerAddress)

/** A send to a peer that has gone raises SIGPIPE, as send(2) without MSG_NOSIGNAL does. */
const sock_send: Handler = (c) =>
  flatMapNow(socketAt(c, SockSendArgs.fd(c), Rights.FD_WRITE), ({ entry, socket }) => {
    const nonBlocking = isNonBlocking(entry) || (SockSendArgs.flags(c) & SiFlags.SEND_DONT_WAIT) !== 0
    const data = c.channel.data.subarray(0, SockSendArgs.iovs.length(c))
    return flatMapNow(eitherNow(blocking(c, socket.socket.send(data, { nonBlocking }))), (outcome) => {
      if (Either.isRight(outcome)) return Effect.sync(() => SockSendResults.nsent(c, outcome.right))
      const errno = outcome.left.errno
      return errno === Errno.PIPE ? Effect.zipRight(c.raise(SIGPIPE), fail(errno)) : fail(errno)
    })
  })

/**
 * One datagram to the address after its bytes (`data` field). A TCP socket ignores it, as
 * Linux's sendto does; a Unix stream socket refuses it (EISCONN when connected, else EOPNOTSUPP).
 */
const sock_send_to: Handler = (c) =>
  flatMapNow(socketAt(c, SockSendToArgs.fd(c), Rights.FD_WRITE), ({ entry, socket }) => {
    if (socket.socket.family === "unix" && socket.socket.kind === "stream") {
      return flatMapNow(eitherNow(socket.socket.peerAddress), (peer) => fail(Either.isRight(peer) ? Errno.ISCONN : Errno.NOTSUP))
    }
    const length = SockSendToArgs.iovs.length(c)
    const nonBlocking = isNonBlocking(entry) || (SockSendToArgs.flags(c) & SiFlags.SEND_DONT_WAIT) !== 0
    const address = flatMapNow(addressAt(c, SockSendToArgs.addr.at(c)), (to) => resolvedFor(c, socket, to, "reach"))
    return flatMapNow(address, (to) => {
      const data = c.channel.data.subarray(0, length)
      const options = socket.socket.kind === "dgram" ? { nonBlocking, to } : { nonBlocking }
      return flatMapNow(eitherNow(blocking(c, socket.socket.send(data, options))), (outcome) => {
        if (Either.isRight(outcome)) return Effect.sync(() => SockSendToResults.nsent(c, outcome.right))
        const errno = outcome.left.errno
        return errno === Errno.PIPE ? Effect.zipRight(c.raise(SIGPIPE), fail(errno)) : fail(errno)
      })
    })
  })

const sock_shutdown: Handler = (c) =>
  flatMapNow(socketAt(c, SockShutdownArgs.fd(c), Rights.SOCK_SHUTDOWN), ({ socket }) => {
    const how = SockShutdownArgs.how(c)
    if (how === 0 || (how & ~(SdFlags.RD | SdFlags.WR)) !== 0) return fail(Errno.INVAL)
    return socket.socket.shutdown((how & SdFlags.RD) !== 0, (how & SdFlags.WR) !== 0)
  })

const addressOf = (which: "localAddress" | "peerAddress", fd: (c: SyscallContext) => number): Handler => (c) =>
  flatMapNow(socketAt(c, fd(c), 0n), ({ socket }) => mapNow(socket.socket[which], (address) => setPayload(c, encodeAddrPort(address))))

const FLAG_OPTIONS: { readonly [option: number]: SocketFlag } = {
  [SockOption.REUSE_ADDR]: "reuseAddress",
  [SockOption.REUSE_PORT]: "reusePort",
  [SockOption.NO_DELAY]: "noDelay",
  [SockOption.ONLY_V6]: "onlyV6",
  [SockOption.BROADCAST]: "broadcast",
  [SockOption.KEEP_ALIVE]: "keepAlive",
  [SockOption.LISTENING]: "acceptConnections"
}

const SIZE_OPTIONS: { readonly [option: number]: SocketSize } = {
  [SockOption.RECV_BUF_SIZE]: "receiveBuffer",
  [SockOption.SEND_BUF_SIZE]: "sendBuffer"
}

const sock_set_opt_flag: Handler = (c) =>
  flatMapNow(socketAt(c, SockSetOptFlagArgs.fd(c), 0n), ({ socket }) => {
    const option = FLAG_OPTIONS[SockSetOptFlagArgs.option(c)]
    // SO_ACCEPTCONN is read-only, as on Linux.
    if (option === undefined || option === "acceptConnections") return fail(Errno.NOPROTOOPT)
    return socket.socket.setFlag(option, SockSetOptFlagArgs.flag(c) !== 0)
  })

const sock_get_opt_flag: Handler = (c) =>
  flatMapNow(socketAt(c, SockGetOptFlagArgs.fd(c), 0n), ({ socket }) => {
    const option = FLAG_OPTIONS[SockGetOptFlagArgs.option(c)]
    if (option === undefined) return fail(Errno.NOPROTOOPT)
    return mapNow(socket.socket.getFlag(option), (value) => setPayload(c, Uint8Array.of(value ? 1 : 0)))
  })

const sock_set_opt_size: Handler = (c) =>
  flatMapNow(socketAt(c, SockSetOptSizeArgs.fd(c), 0n), ({ socket }) => {
    const option = SIZE_OPTIONS[SockSetOptSizeArgs.option(c)]
    if (option === undefined) return fail(Errno.NOPROTOOPT)
    const size = SockSetOptSizeArgs.size(c)
    return socket.socket.setSize(option, size > 0x7fffffffn ? 0x7fffffff : Number(size))
  })

/** Sizes, and what wasix-libc asks through this call: SO_ERROR (a non-blocking connect's failure), SO_TYPE, SO_PROTOCOL. */
const sock_get_opt_size: Handler = (c) =>
  flatMapNow(socketAt(c, SockGetOptSizeArgs.fd(c), 0n), ({ socket }) => {
    const option = SockGetOptSizeArgs.option(c)
    const answer = (value: number) => SockGetOptSizeResults.size(c, BigInt(value))
    const size = SIZE_OPTIONS[option]
    if (size !== undefined) return mapNow(socket.socket.getSize(size), answer)
    const stream = socket.socket.kind === "stream"
    switch (option) {
      case SockOption.LAST_ERROR:
        return Effect.sync(() => answer(socket.socket.takeError()))
      case SockOption.TYPE:
        return Effect.sync(() => answer(stream ? SockType.STREAM : SockType.DGRAM))
      case SockOption.PROTO:
        // A Unix socket's protocol is 0, as Linux's.
        return Effect.sync(() => answer(socket.socket.family === "unix" ? SockProto.IP : stream ? SockProto.TCP : SockProto.UDP))
      default:
        return fail(Errno.NOPROTOOPT)
    }
  })

const TIME_OPTIONS: { readonly [option: number]: SocketTimeLimit } = {
  [SockOption.RECV_TIMEOUT]: "receiveTimeLimit",
  [SockOption.SEND_TIMEOUT]: "sendTimeLimit"
}

/**
 * SO_RCVTIMEO, SO_SNDTIMEO as WASIX sets them: an option_timestamp in nanoseconds (none, or 0:
 * no limit), kept in whole milliseconds, rounded up so that a limit never becomes none.
 */
const sock_set_opt_time: Handler = (c) =>
  flatMapNow(socketAt(c, SockSetOptTimeArgs.fd(c), 0n), ({ socket }) => {
    const option = TIME_OPTIONS[SockSetOptTimeArgs.option(c)]
    if (option === undefined) return fail(Errno.NOPROTOOPT)
    const at = SockSetOptTimeArgs.time.at(c)
    const tag = c.channel.data[at + OptionTimestamp.tag]
    if (tag !== 0 && tag !== 1) return fail(Errno.INVAL)
    const nanoseconds = c.channel.dataView.getBigUint64(at + OptionTimestamp.value, true)
    socket.socket.setTimeLimit(option, tag === 0 || nanoseconds === 0n ? undefined : Number((nanoseconds + 999_999n) / 1_000_000n))
    return Effect.void
  })

const sock_get_opt_time: Handler = (c) =>
  flatMapNow(socketAt(c, SockGetOptTimeArgs.fd(c), 0n), ({ socket }) => {
    const option = TIME_OPTIONS[SockGetOptTimeArgs.option(c)]
    if (option === undefined) return fail(Errno.NOPROTOOPT)
    const limit = socket.socket.getTimeLimit(option)
    const out = new Uint8Array(OptionTimestamp.sizeOf)
    if (limit !== undefined) {
      out[OptionTimestamp.tag] = 1
      new DataView(out.buffer).setBigUint64(OptionTimestamp.value, BigInt(limit) * 1_000_000n, true)
    }
    return Effect.sync(() => setPayload(c, out))
  })

const STATUS_CODES = { opening: SockStatus.OPENING, opened: SockStatus.OPENED, closed: SockStatus.CLOSED, failed: SockStatus.FAILED } as const

const sock_status: Handler = (c) =>
  mapNow(socketAt(c, SockStatusArgs.fd(c), 0n), ({ socket }) => setPayload(c, Uint8Array.of(STATUS_CODES[socket.socket.status])))

export const socketHandlers = {
  sock_accept,
  sock_recv,
  sock_send,
  sock_shutdown,
  sock_open,
  sock_bind,
  sock_listen,
  sock_connect,
  sock_accept_v2,
  sock_recv_from,
  sock_send_to,
  sock_addr_local: addressOf("localAddress", SockAddrLocalArgs.fd),
  sock_addr_peer: addressOf("peerAddress", SockAddrPeerArgs.fd),
  sock_set_opt_flag,
  sock_get_opt_flag,
  sock_set_opt_size,
  sock_get_opt_size,
  sock_status,
  sock_pair,
  sock_set_opt_time,
  sock_get_opt_time
} as const satisfies Record<string, Handler>
