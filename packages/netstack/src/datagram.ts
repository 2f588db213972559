/**
 * Datagram sockets: UDP over the sandbox's loopback, and Unix datagram sockets. A datagram goes
 * whole to the socket bound to its destination. Each datagram queued is charged to the
 * receiver's owner until it is read (its bytes and a fixed overhead, so that empty ones cost
 * too), and a receiver's buffer (SO_RCVBUF) bounds what waits for it, so a flood costs at most
 * that. A receive takes one datagram (cut to the length asked, and flagged truncated).
 *
 * UDP is unreliable: a datagram nobody is bound to, or that the receiver cannot hold, is dropped
 * and the send still succeeds; `connect` sets the default destination and the only source a
 * receive accepts. Unix datagrams are reliable, as Linux's: a send to a name nobody holds fails
 * (ECONNREFUSED), a send to a full receiver waits for room (EAGAIN when non-blocking), and a
 * socket connected to another takes datagrams only from it (anyone else's send is EPERM). Beyond the loopback, where the egress policy allows, datagrams go out through
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
  type SocketFamily,
  type SocketFlag,
  type SocketOps,
  type SocketOwner,
  type SocketSize,
  type SocketTimeLimit,
  type SyscallError
} from "@runsc/kernel"
import { Effect } from "effect"
import { asFamily, type IpAddress, isLoopback, isWildcard, loopbackOf, sameAddress, unnamedOf } from "./address.js"
import type { AddressSpace } from "./addressSpace.js"
import type { Egress, HostDatagrams } from "./egress.js"
import { releaseSocket } from "./heap.js"
import { limitedWait } from "./timeLimit.js"
import { SocketOptions, socketStat } from "./socketOptions.js"

/** The largest UDP payload over IPv4 (65535 less the IP and UDP headers). */
export const MAX_DATAGRAM = 65507

/**
 * The largest Unix datagram, whatever SO_SNDBUF says: near Linux's default limit (its send
 * buffer), and within one request of a guest's channel, so a send is never split in two.
 */
export const MAX_UNIX_DATAGRAM = 200 * 1024

/** How many ports a host-mode bind to port 0 tries before it gives up (EADDRINUSE). */
const HOST_BIND_TRIES = 16

/**
 * What a queued datagram costs beyond its bytes (Linux charges a buffer's overhead too): against
 * its receiver's buffer, and against its owner's memory as heap (`chargeHeap`), since its record,
 * its array's object and its sender's address live on the sentry's heap (~600 bytes measured).
 * At 256 bytes of plain memory, empty datagrams queued across a few hundred sockets filled the
 * heap while the account saw under 2 GB, and aborted the sandbox process.
 */
export const DATAGRAM_OVERHEAD = 768

interface Datagram {
  readonly data: Uint8Array
  readonly from: SocketAddress
}

export class DatagramSocket implements SocketOps {
  readonly kind = "dgram" as const
  readonly isListening = false
  local: SocketAddress | undefined
  private remote: SocketAddress | undefined
  /** A Unix socket's connected peer (by connect, or socketpair): its default destination, and its only sender. */
  private peer: DatagramSocket | undefined
  private binding = false
  private closed = false
  private readonly queue: Array<Datagram> = []
  private queued = 0
  private readonly options = new SocketOptions()
  private readonly changes = new Changes()
  /** Its host UDP socket, made when it first sends beyond the loopback. */
  private host: HostDatagrams | undefined
  readonly description: SocketDescription

  constructor(
    readonly family: SocketFamily,
    private readonly owner: SocketOwner,
    private readonly space: AddressSpace<DatagramSocket>,
    private readonly ino: bigint,
    /** Datagrams beyond the loopback, where the policy allows; without it they have no route (ENETUNREACH). */
    private readonly egress?: Egress,
    /**
     * --network=host: a bound socket is bound on the host too (its host socket, which it then
     * sends from), and a loopback datagram no socket of the sandbox's takes goes to the host's.
     */
    private readonly onHost = false
  ) {
    this.description = this.describe()
  }

  hasFlag(flag: SocketFlag): boolean {
    return this.options.has(flag)
  }

  bind(address: SocketAddress): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => {
      if (address.family !== this.family) return fail(Errno.AFNOSUPPORT)
      if (this.local !== undefined || this.binding) return fail(Errno.INVAL)
      this.binding = true
      return this.bindHere(address, HOST_BIND_TRIES).pipe(Effect.ensuring(Effect.sync(() => {
        this.binding = false
      })))
    })
  }

  /**
   * Binds in the sandbox, and in host mode on the host too; a port the sandbox chose (port 0)
   * that the host holds is given up for another, `tries` times in all.
   */
  private bindHere(address: SocketAddress, tries: number): Effect.Effect<void, SyscallError> {
    return Effect.flatMap(this.space.bind(this, address), (bound) => {
      this.local = bound
      // Closed while its file was being made: the name is not held by a socket gone.
      if (this.closed) this.space.unbind(this)
      if (bound.family === "unix" || !this.onHost || this.egress === undefined || this.closed) return Effect.void
      const chosen = address.family !== "unix" && address.port === 0
      return Effect.catchIf(this.bindOnHost(this.egress, bound), (e) => chosen && e.errno === Errno.ADDRINUSE && tries > 1, () => this.bindHere(address, tries - 1))
    })
  }

  /** --network=host: the same address on the host, or the bind fails as the host's did and leaves the socket unbound. */
  private bindOnHost(egress: Egress, local: IpAddress): Effect.Effect<void, SyscallError> {
    const flags = { reuseAddress: this.hasFlag("reuseAddress"), onlyV6: this.hasFlag("onlyV6") }
    return Effect.matchEffect(egress.bindDatagram(local, (bytes, from) => void this.deliver(bytes, from), flags), {
      onFailure: (e) =>
        Effect.suspend(() => {
          this.space.unbind(this)
          this.local = undefined
          return fail(e.errno)
        }),
      onSuccess: (host) =>
        Effect.sync(() => {
          if (this.closed) return host.close()
          this.host = host
        })
    })
  }

  listen(): Effect.Effect<void, SyscallError> {
    return fail(Errno.NOTSUP)
  }

  accept(): Effect.Effect<Accepted, SyscallError> {
    return fail(Errno.NOTSUP)
  }

  /** The default destination, and the only source a receive takes from; binds an ephemeral port (IP). */
  connect(address: SocketAddress): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => {
      if (address.family !== this.family) return fail(Errno.AFNOSUPPORT)
      if (address.family === "unix") {
        const peer = this.space.reached(address, () => true)
        if (typeof peer === "number") return fail(peer)
        // A socket connected to another takes no one else's datagrams, nor their connects.
        if (peer.peer !== undefined && peer.peer !== this) return fail(Errno.PERM)
        this.peer = peer
        this.remote = peer.local
        return Effect.void
      }
      const beyond = this.beyondLoopback(address)
      if (beyond !== undefined) return fail(beyond)
      const bound = this.ensureBound()
      if (bound !== undefined) return fail(bound)
      this.remote = isWildcard(address) ? loopbackOf(address.family, address.port) : address
      return Effect.void
    })
  }

  /** The next datagram, waiting within SO_RCVTIMEO (EAGAIN past it). */
  receive(length: number, options: { readonly peek: boolean; readonly nonBlocking: boolean }): Effect.Effect<Received, SyscallError> {
    const wait = limitedWait(this.options.timeLimits.receiveTimeLimit)
    const attempt: Effect.Effect<Received, SyscallError> = Effect.suspend(() => {
      if (this.closed) return fail(Errno.BADF)
      const next = this.queue[0]
      if (next === undefined) {
        if (options.nonBlocking) return fail(Errno.AGAIN)
        return Effect.flatMap(wait(this.changes.next), (came) => (came ? attempt : fail(Errno.AGAIN)))
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
    return attempt
  }

  /** One datagram, whole, to `to` (or the connected peer); UDP's is dropped when nobody can take it. */
  send(data: Uint8Array, options: { readonly nonBlocking: boolean; readonly to?: SocketAddress | undefined }): Effect.Effect<number, SyscallError> {
    return Effect.suspend(() => {
      if (this.closed) return fail(Errno.BADF)
      if (this.family === "unix") return this.sendUnix(data, options)
      const to = options.to ?? this.remote
      if (to === undefined) return fail(Errno.DESTADDRREQ)
      if (to.family !== this.family) return fail(Errno.AFNOSUPPORT)
      if (data.length > MAX_DATAGRAM) return fail(Errno.MSGSIZE)
      const bound = this.ensureBound()
      if (bound !== undefined) return fail(bound)
      if (!isWildcard(to) && !isLoopback(to)) return this.sendOut(data, to)
      const receiver = this.space.reached(to, () => true)
      if (receiver === Errno.NETUNREACH || receiver === Errno.AFNOSUPPORT) return fail(receiver)
      if (receiver === Errno.CONNREFUSED && this.onHost) return this.sendOut(data, to)
      if (typeof receiver !== "number") receiver.deliver(data, this.sourceAddress())
      if (this.owner.traffic) {
        this.owner.traffic.sentDatagrams++
        this.owner.traffic.sentBytes += data.length
      }
      return Effect.succeed(data.length)
    })
  }

  /**
   * A Unix datagram, to `to` or the connected peer: refused where nobody holds the name (or the
   * peer has closed), EPERM where the receiver is connected to another socket, and waiting while
   * the receiver's buffer is full.
   */
  private sendUnix(data: Uint8Array, options: { readonly nonBlocking: boolean; readonly to?: SocketAddress | undefined }): Effect.Effect<number, SyscallError> {
    let receiver: DatagramSocket | Errno
    if (options.to !== undefined) receiver = options.to.family === "unix" ? this.space.reached(options.to, () => true) : Errno.AFNOSUPPORT
    else if (this.peer !== undefined) receiver = this.peer
    else receiver = Errno.NOTCONN
    if (typeof receiver === "number") return fail(receiver)
    if (data.length > Math.min(this.options.sendBuffer, MAX_UNIX_DATAGRAM)) return fail(Errno.MSGSIZE)
    const target = receiver
    const wait = limitedWait(this.options.timeLimits.sendTimeLimit)
    const attempt: Effect.Effect<number, SyscallError> = Effect.suspend(() => {
      if (this.closed) return fail(Errno.BADF)
      if (target.closed) {
        // As Linux: the first send to a connected peer that is gone is refused, and it is no longer the peer.
        if (target === this.peer) {
          this.peer = undefined
          this.remote = undefined
        }
        return fail(Errno.CONNREFUSED)
      }
      // Checked at every try: the receiver may have connected elsewhere while this one waited.
      if (target.peer !== undefined && target.peer !== this) return fail(Errno.PERM)
      if (!target.hasRoomFor(data.length)) {
        if (options.nonBlocking) return fail(Errno.AGAIN)
        return Effect.flatMap(wait(target.changes.next), (came) => (came ? attempt : fail(Errno.AGAIN)))
      }
      if (!target.deliver(data, this.local ?? unnamedOf(this.family))) return fail(Errno.NOBUFS)
      if (this.owner.traffic) {
        this.owner.traffic.sentDatagrams++
        this.owner.traffic.sentBytes += data.length
      }
      return Effect.succeed(data.length)
    })
    return attempt
  }

  /** Whether a datagram of `length` bytes fits in the receive buffer now (an empty buffer takes any one, as Linux's). */
  private hasRoomFor(length: number): boolean {
    return this.queued === 0 || this.queued + length + DATAGRAM_OVERHEAD <= this.options.receiveBuffer
  }

  shutdown(): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => (this.remote === undefined ? fail(Errno.NOTCONN) : Effect.void))
  }

  get localAddress(): Effect.Effect<SocketAddress, SyscallError> {
    return Effect.sync(() => this.local ?? unnamedOf(this.family))
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

  setTimeLimit(option: SocketTimeLimit, milliseconds: number | undefined): void {
    this.options.timeLimits[option] = milliseconds
  }

  getTimeLimit(option: SocketTimeLimit): number | undefined {
    return this.options.timeLimits[option]
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
      const host = this.egress!.openDatagram(to.family, (bytes, from) => void this.deliver(bytes, from))
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

  /**
   * Queues a datagram sent here, if this socket takes it: from its connected peer (UDP), within
   * its buffer and its owner's memory; whether it did.
   */
  private deliver(data: Uint8Array, from: SocketAddress): boolean {
    if (this.closed) return false
    const remote = this.remote
    if (remote !== undefined && remote.family !== "unix" && from.family !== "unix" && !(sameAddress(asFamily(from, remote.family), remote) && from.port === remote.port)) return false
    if (!this.hasRoomFor(data.length) || !this.owner.memory.chargeHeap(DATAGRAM_OVERHEAD)) return false
    if (!this.owner.memory.charge(data.length)) {
      this.owner.memory.releaseHeap(DATAGRAM_OVERHEAD)
      return false
    }
    const cost = data.length + DATAGRAM_OVERHEAD
    // Copied: the sender's bytes are its channel's, reused by its next call.
    this.queue.push({ data: data.slice(), from: from.family === "unix" ? from : asFamily(from, this.family === "inet6" ? "inet6" : "inet4") })
    this.queued += cost
    this.changes.notify()
    return true
  }

  private dequeue(): void {
    const head = this.queue.shift()
    if (head === undefined) return
    this.queued -= head.data.length + DATAGRAM_OVERHEAD
    this.owner.memory.release(head.data.length)
    this.owner.memory.releaseHeap(DATAGRAM_OVERHEAD)
    // A Unix sender may be waiting for the room.
    this.changes.notify()
  }

  /** Binds an ephemeral port on the wildcard if unbound (IP; a Unix socket sends unnamed); an errno if none is free. */
  private ensureBound(): Errno | undefined {
    if (this.local !== undefined) return undefined
    const bound = this.space.implicitBind(this, "send")
    if (typeof bound === "number") return bound
    this.local = bound
    return undefined
  }

  /** Where a UDP datagram from here comes from: the bound address, the loopback for a wildcard. */
  private sourceAddress(): IpAddress {
    const local = this.local as IpAddress
    return isWildcard(local) ? loopbackOf(local.family, local.port) : local
  }

  private closeNow(): void {
    if (this.closed) return
    // Charged at its making (heap.ts).
    releaseSocket(this.owner)
    while (this.queue.length > 0) this.dequeue()
    this.host?.close()
    this.host = undefined
    this.closed = true
    this.peer = undefined
    this.changes.notify()
    this.space.unbind(this)
  }

  /** socketpair(2) of datagram sockets: `a` and `b` connected to each other, unnamed. */
  static pair(a: DatagramSocket, b: DatagramSocket): void {
    a.peer = b
    a.remote = unnamedOf(a.family)
    b.peer = a
    b.remote = unnamedOf(b.family)
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
        // Writable unless a connected Unix peer's buffer is full.
        ready: (event) => (event === "read" ? this.queue.length > 0 || this.closed : this.peer === undefined || this.peer.closed || this.peer.hasRoomFor(1)),
        changed: Effect.suspend(() => this.changes.next)
      }
    }
  }
}
