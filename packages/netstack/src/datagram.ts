/**
 * Datagram sockets (UDP over the sandbox's loopback). A datagram goes whole to the socket bound
 * to its destination, or nowhere: as UDP, a datagram nobody is bound to, or that the
 * receiver's buffer (SO_RCVBUF) or its owner's memory cannot hold, is dropped and the send
 * still succeeds. Each datagram queued is charged to the receiver's owner until it is read, so
 * a flood costs at most the receiver's buffer. A receive takes one datagram (cut to the length
 * asked, and flagged truncated); `connect` sets the default destination and the only source a
 * receive accepts. Beyond the loopback, where the egress policy allows, datagrams go out through
 * a host UDP socket of the sandbox's (one per guest socket, made when it first sends), and what
 * comes back to it from an address the policy allows is delivered as any datagram is.
 */
import { Errno, FileType } from "@runsc/abi"
import {
  Changes,
  fail,
  type Accepted,
  type Received,
  type SocketAddress,
  type SocketDescription,
  type SocketFlag,
  type SocketOps,
  type SocketOwner,
  type SocketSize,
  type SyscallError
} from "@runsc/kernel"
import { Effect } from "effect"
import { asFamily, type IpAddress, isLoopback, isWildcard, loopbackOf, sameAddress, wildcardOf } from "./address.js"
import type { Egress, HostDatagrams } from "./egress.js"
import type { Ports } from "./ports.js"
import { SocketOptions, socketStat } from "./socketOptions.js"

/** The largest UDP payload over IPv4 (65535 less the IP and UDP headers). */
export const MAX_DATAGRAM = 65507

interface Datagram {
  readonly data: Uint8Array
  readonly from: IpAddress
}

export class DatagramSocket implements SocketOps {
  readonly kind = "dgram" as const
  readonly isListening = false
  local: IpAddress | undefined
  private remote: IpAddress | undefined
  private closed = false
  private readonly queue: Array<Datagram> = []
  private queued = 0
  private readonly options = new SocketOptions()
  private readonly changes = new Changes()
  /** Its host UDP socket, made when it first sends beyond the loopback. */
  private host: HostDatagrams | undefined
  readonly description: SocketDescription

  constructor(
    readonly family: "inet4" | "inet6",
    private readonly owner: SocketOwner,
    private readonly ports: Ports<DatagramSocket>,
    private readonly ino: bigint,
    /** Datagrams beyond the loopback, where the policy allows; without it they have no route (ENETUNREACH). */
    private readonly egress?: Egress
  ) {
    this.description = this.describe()
  }

  hasFlag(flag: SocketFlag): boolean {
    return this.options.has(flag)
  }

  bind(address: SocketAddress): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => {
      if (address.family !== this.family) return fail(Errno.AFNOSUPPORT)
      if (this.local !== undefined) return fail(Errno.INVAL)
      const bound = this.ports.bind(this, address)
      if (typeof bound === "number") return fail(bound)
      this.local = bound
      return Effect.void
    })
  }

  listen(): Effect.Effect<void, SyscallError> {
    return fail(Errno.NOTSUP)
  }

  accept(): Effect.Effect<Accepted, SyscallError> {
    return fail(Errno.NOTSUP)
  }

  /** The default destination, and the only source a receive takes from; binds an ephemeral port. */
  connect(address: SocketAddress): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => {
      if (address.family !== this.family) return fail(Errno.AFNOSUPPORT)
      const beyond = this.beyondLoopback(address)
      if (beyond !== undefined) return fail(beyond)
      const bound = this.ensureBound()
      if (bound !== undefined) return fail(bound)
      this.remote = isWildcard(address) ? loopbackOf(address.family, address.port) : address
      return Effect.void
    })
  }

  receive(length: number, options: { readonly peek: boolean; readonly nonBlocking: boolean }): Effect.Effect<Received, SyscallError> {
    return Effect.suspend(() => {
      if (this.closed) return fail(Errno.BADF)
      const next = this.queue[0]
      if (next === undefined) {
        if (options.nonBlocking) return fail(Errno.AGAIN)
        return Effect.zipRight(this.changes.next, this.receive(length, options))
      }
      if (!options.peek) {
        this.dequeue()
        if (this.owner.traffic) {
          this.owner.traffic.receivedDatagrams++
          this.owner.traffic.receivedBytes += next.data.length
        }
      }
      const truncated = next.data.length > length
      return Effect.succeed({ data: truncated ? next.data.slice(0, length) : next.data, from: next.from, truncated })
    })
  }

  /** One datagram, whole, to `to` (or the connected peer); dropped when nobody can take it, as UDP's are. */
  send(data: Uint8Array, options: { readonly nonBlocking: boolean; readonly to?: SocketAddress | undefined }): Effect.Effect<number, SyscallError> {
    return Effect.suspend(() => {
      if (this.closed) return fail(Errno.BADF)
      const to = options.to ?? this.remote
      if (to === undefined) return fail(Errno.DESTADDRREQ)
      if (to.family !== this.family) return fail(Errno.AFNOSUPPORT)
      if (data.length > MAX_DATAGRAM) return fail(Errno.MSGSIZE)
      const bound = this.ensureBound()
      if (bound !== undefined) return fail(bound)
      if (!isWildcard(to) && !isLoopback(to)) return this.sendOut(data, to)
      const receiver = this.ports.reached(to, () => true)
      if (receiver === Errno.NETUNREACH || receiver === Errno.AFNOSUPPORT) return fail(receiver)
      if (typeof receiver !== "number") receiver.deliver(data, this.sourceAddress())
      if (this.owner.traffic) {
        this.owner.traffic.sentDatagrams++
        this.owner.traffic.sentBytes += data.length
      }
      return Effect.succeed(data.length)
    })
  }

  shutdown(): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => (this.remote === undefined ? fail(Errno.NOTCONN) : Effect.void))
  }

  get localAddress(): Effect.Effect<SocketAddress, SyscallError> {
    return Effect.sync(() => this.local ?? wildcardOf(this.family, 0))
  }

  get peerAddress(): Effect.Effect<SocketAddress, SyscallError> {
    return Effect.suspend(() => (this.remote !== undefined ? Effect.succeed(this.remote) : fail(Errno.NOTCONN)))
  }

  setFlag(option: SocketFlag, value: boolean): Effect.Effect<void, SyscallError> {
    return this.options.setFlag(option, value)
  }

  getFlag(option: SocketFlag): Effect.Effect<boolean, SyscallError> {
    return Effect.sync(() => option !== "acceptConnections" && this.options.has(option))
  }

  setSize(option: SocketSize, value: number): Effect.Effect<void, SyscallError> {
    return this.options.setSize(option, value)
  }

  /** A datagram socket is in use from its making. */
  get status(): SocketOps["status"] {
    return this.closed ? "closed" : "opened"
  }

  /** No connect of a datagram socket waits: never an error to report. */
  takeError(): 0 {
    return 0
  }

  getSize(option: SocketSize): Effect.Effect<number, SyscallError> {
    return this.options.getSize(option)
  }

  /** Why a datagram cannot go to `to` beyond the loopback: no route (no egress), or the policy (EACCES); undefined if it can or `to` is local. */
  private beyondLoopback(to: IpAddress): Errno | undefined {
    if (isWildcard(to) || isLoopback(to)) return undefined
    if (this.egress === undefined) return Errno.NETUNREACH
    if (this.egress.allows(to)) return undefined
    if (this.owner.traffic) this.owner.traffic.refused++
    return Errno.ACCES
  }

  /** One datagram out through its host socket (made on first use), where the policy allows. */
  private sendOut(data: Uint8Array, to: IpAddress): Effect.Effect<number, SyscallError> {
    const refused = this.beyondLoopback(to)
    if (refused !== undefined) return fail(refused)
    if (this.host === undefined) {
      const host = this.egress!.openDatagram(this.family, (bytes, from) => this.deliver(bytes, from))
      if (typeof host === "number") return fail(host)
      this.host = host
    }
    // Copied: the bytes are the channel's, reused by the next call, and Node sends later.
    this.host.send(data.slice(), to)
    if (this.owner.traffic) {
      this.owner.traffic.sentDatagrams++
      this.owner.traffic.sentBytes += data.length
    }
    return Effect.succeed(data.length)
  }

  /** Queues a datagram sent here, if this socket takes it (its peer, its buffer, its owner's memory). */
  private deliver(data: Uint8Array, from: IpAddress): void {
    if (this.closed) return
    if (this.remote !== undefined && !(sameAddress(asFamily(from, this.family), this.remote) && from.port === this.remote.port)) return
    if (this.queued + data.length > this.options.receiveBuffer || !this.owner.memory.charge(data.length)) return
    // Copied: the sender's bytes are its channel's, reused by its next call.
    this.queue.push({ data: data.slice(), from: asFamily(from, this.family) })
    this.queued += data.length
    this.changes.notify()
  }

  private dequeue(): void {
    const head = this.queue.shift()
    if (head === undefined) return
    this.queued -= head.data.length
    this.owner.memory.release(head.data.length)
  }

  /** Binds an ephemeral port on the wildcard if unbound; an errno if none is free. */
  private ensureBound(): Errno | undefined {
    if (this.local !== undefined) return undefined
    const bound = this.ports.bind(this, wildcardOf(this.family, 0))
    if (typeof bound === "number") return bound
    this.local = bound
    return undefined
  }

  /** Where a datagram from here comes from: the bound address, the loopback for a wildcard. */
  private sourceAddress(): IpAddress {
    const local = this.local!
    return isWildcard(local) ? loopbackOf(local.family, local.port) : local
  }

  private closeNow(): void {
    if (this.closed) return
    while (this.queue.length > 0) this.dequeue()
    this.host?.close()
    this.host = undefined
    this.closed = true
    this.changes.notify()
    this.ports.unbind(this)
  }

  private describe(): SocketDescription {
    const stat = socketStat(this.ino, FileType.SOCKET_DGRAM)
    return {
      filetype: FileType.SOCKET_DGRAM,
      socket: this,
      read: (length, offset, nonBlocking) =>
        offset !== undefined ? fail(Errno.SPIPE) : Effect.map(this.receive(length, { peek: false, nonBlocking: nonBlocking ?? false }), (r) => r.data),
      write: (data, offset, nonBlocking) => (offset !== undefined ? fail(Errno.SPIPE) : this.send(data, { nonBlocking: nonBlocking ?? false })),
      seek: () => fail(Errno.SPIPE),
      stat,
      close: Effect.sync(() => this.closeNow()),
      readiness: {
        ready: (event) => (event === "read" ? this.queue.length > 0 || this.closed : true),
        changed: Effect.suspend(() => this.changes.next)
      }
    }
  }
}
