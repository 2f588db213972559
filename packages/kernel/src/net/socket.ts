/**
 * What the kernel needs of sockets, implemented elsewhere (packages/netstack): the kernel
 * serves the socket calls and keeps sockets in fd tables like any other open file, and the
 * network stack behind them is given to it (KernelOptions.network), since the netstack depends
 * on the kernel and not the reverse.
 *
 * A socket is an open file description (`SocketDescription`): read and write are recv and
 * send without flags, poll waits on its readiness, close is close(2). Addresses are plain
 * values; the guest's address structs are decoded by the syscall handlers.
 */
import { Rights } from "@runsc/abi"
import type { Effect } from "effect"
import type { SyscallError } from "../errors.js"
import type { FileDescription } from "../fs/inode.js"
import type { MemoryAccount } from "../memoryAccount.js"

export type SocketFamily = "inet4" | "inet6" | "unix"
export type SocketKind = "stream" | "dgram"

/** An IP address (4 or 16 bytes, network order) and port, or a Unix socket's name. */
export type SocketAddress =
  | { readonly family: "inet4" | "inet6"; readonly address: Uint8Array; readonly port: number }
  | UnixAddress

/**
 * A Unix socket's name: a path in the filesystem, an abstract name ("\0" then the name, in the
 * network namespace, as Linux's), or "" (unnamed). A path is the filesystem's to bind and to
 * find, so the kernel resolves it, from the calling process's root and working directory, and
 * passes what it found with the address.
 */
export interface UnixAddress {
  readonly family: "unix"
  readonly path: string
  /**
   * bind to a path: makes the socket's file there, naming `socket` (EADDRINUSE where the name is
   * taken); the socket is bound only if that succeeds.
   */
  readonly makeNode?: ((socket: object) => Effect.Effect<void, SyscallError>) | undefined
  /** connect or sendto a path: the socket its file was made for (`Inode.boundSocket`); null when it is no socket's file. */
  readonly boundSocket?: object | null | undefined
}

export const isAbstract = (address: UnixAddress): boolean => address.path.startsWith("\0")

/** Options with a yes/no value (setsockopt with an int flag). */
export type SocketFlag = "reuseAddress" | "reusePort" | "keepAlive" | "noDelay" | "broadcast" | "onlyV6" | "acceptConnections"
/** Options with a size: the receive and send buffers (bytes). */
export type SocketSize = "receiveBuffer" | "sendBuffer"
/**
 * Options with a time: how long a receive or accept (SO_RCVTIMEO), or a send (SO_SNDTIMEO),
 * may wait, in milliseconds (undefined: for ever); past it the call answers what it has, or
 * EAGAIN.
 */
export type SocketTimeLimit = "receiveTimeLimit" | "sendTimeLimit"

export interface Received {
  readonly data: Uint8Array
  /** A datagram's sender. */
  readonly from?: SocketAddress | undefined
  /** A datagram longer than asked for: its rest was dropped (RECV_DATA_TRUNCATED). */
  readonly truncated?: boolean
}

export interface Accepted {
  readonly socket: SocketDescription
  readonly peer: SocketAddress
}

/** What a socket does beyond reading and writing; every call fails with an errno as Linux's. */
export interface SocketOps {
  readonly family: SocketFamily
  readonly kind: SocketKind
  bind(address: SocketAddress): Effect.Effect<void, SyscallError>
  listen(backlog: number): Effect.Effect<void, SyscallError>
  /** Waits until connected (a stream), or sets the default peer (a datagram socket). */
  connect(address: SocketAddress, nonBlocking: boolean): Effect.Effect<void, SyscallError>
  accept(nonBlocking: boolean): Effect.Effect<Accepted, SyscallError>
  /**
   * Up to `length` bytes (a datagram: the next one, cut to `length`); `peek` leaves them queued.
   * With `into` (at least `length` long) a socket may copy the bytes straight there and answer
   * a view of it, saving a copy on the hot path.
   */
  receive(length: number, options: { readonly peek: boolean; readonly waitAll: boolean; readonly nonBlocking: boolean; readonly into?: Uint8Array }): Effect.Effect<Received, SyscallError>
  /** Sends `data` (all of it, waiting for room, unless non-blocking); to `to` for a datagram. */
  send(data: Uint8Array, options: { readonly nonBlocking: boolean; readonly to?: SocketAddress | undefined }): Effect.Effect<number, SyscallError>
  shutdown(read: boolean, write: boolean): Effect.Effect<void, SyscallError>
  readonly localAddress: Effect.Effect<SocketAddress, SyscallError>
  readonly peerAddress: Effect.Effect<SocketAddress, SyscallError>
  setFlag(option: SocketFlag, value: boolean): Effect.Effect<void, SyscallError>
  getFlag(option: SocketFlag): Effect.Effect<boolean, SyscallError>
  setSize(option: SocketSize, value: number): Effect.Effect<void, SyscallError>
  getSize(option: SocketSize): Effect.Effect<number, SyscallError>
  setTimeLimit(option: SocketTimeLimit, milliseconds: number | undefined): void
  getTimeLimit(option: SocketTimeLimit): number | undefined
  /** SO_ERROR: a non-blocking connect's failure (0: none), cleared by reading it. */
  takeError(): number
  /** WASIX sock_status: not yet connected or listening, in use, closed, or its connect failed. */
  readonly status: "opening" | "opened" | "closed" | "failed"
}

export interface SocketDescription extends FileDescription {
  readonly socket: SocketOps
}

/** What a socket's fd may do (as wasmtime grants a socket): read, write, poll, shut down, accept, fstat, set flags. */
export const SOCKET_RIGHTS = Rights.FD_READ | Rights.FD_WRITE | Rights.FD_FDSTAT_SET_FLAGS | Rights.FD_FILESTAT_GET |
  Rights.POLL_FD_READWRITE | Rights.SOCK_SHUTDOWN | Rights.SOCK_ACCEPT

export const isSocket = (description: FileDescription): description is SocketDescription =>
  (description as Partial<SocketDescription>).socket !== undefined

/** A container's network counters (events --stats), kept by its sockets. */
export class NetworkTraffic {
  /** Bytes its sockets received and sent (stream bytes, datagram payloads). */
  receivedBytes = 0
  sentBytes = 0
  /** Datagrams its sockets received and sent (one a packet; streams have none). */
  receivedDatagrams = 0
  sentDatagrams = 0
  /** Connections its listeners accepted, and connections it made (the loopback's and egress's). */
  accepted = 0
  connected = 0
  /** Connects beyond the loopback that the egress policy refused (EACCES). */
  refused = 0
}

/** Whose socket it is: what its buffers are charged to, and whose counters it adds to. */
export interface SocketOwner {
  readonly memory: MemoryAccount
  readonly traffic?: NetworkTraffic
  /** Its container, as the connection log (--debug) names it. */
  readonly containerId?: string
}

/** A sandbox's network: where its guests' sockets are made. */
export interface Network {
  open(family: SocketFamily, kind: SocketKind, owner: SocketOwner): Effect.Effect<SocketDescription, SyscallError>
  /** socketpair(2): two unnamed sockets connected to each other (Unix only: EOPNOTSUPP otherwise, as Linux). */
  pair(family: SocketFamily, kind: SocketKind, owner: SocketOwner): Effect.Effect<readonly [SocketDescription, SocketDescription], SyscallError>
  /** A name the container's /etc/hosts does not know: its addresses beyond the sandbox, if the network reaches any (ENOENT otherwise). */
  lookupHost?(name: string): Effect.Effect<ReadonlyArray<SocketAddress>, SyscallError>
}
