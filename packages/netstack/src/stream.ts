/**
 * Stream sockets (TCP over the sandbox's loopback, and Unix stream sockets), at the level of
 * connections: a connect finds a listener bound to its address (an AddressSpace: IP ports, or
 * Unix names) and queues a connected pair in its backlog
 * (the handshake completes before accept, as on Linux), and each direction of a connection is
 * a ByteQueue of the receiver's buffer size. Semantics are Linux's where a guest can see them:
 * ECONNREFUSED with no listener, EADDRINUSE, EISCONN, ENOTCONN, half-close (reads end at 0
 * after the peer's SHUT_WR; sends after our own SHUT_WR fail EPIPE), EPIPE once the peer has
 * closed, EAGAIN on a non-blocking socket that would wait.
 */
import { Errno, errnoName, FileType } from "@runsc/abi"
import {
  Changes,
  concatBytes,
  fail,
  formatAddress,
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
import { asFamily, type IpAddress, isLoopback, isWildcard, loopbackOf, unnamedOf } from "./address.js"
import type { AddressSpace } from "./addressSpace.js"
import { ByteQueue } from "./byteQueue.js"
import type { Egress } from "./egress.js"
import { CONNECTION_HEAP, chargeSocket, releaseSocket } from "./heap.js"
import { limitedWait } from "./timeLimit.js"
import { SocketOptions, socketStat } from "./socketOptions.js"

/** Where a stream socket's connections may go besides the loopback, and whether they are logged. */
export interface StreamRoutes {
  /** Connections beyond the loopback; without it they have no route (ENETUNREACH). */
  readonly egress?: Egress | undefined
  /** Log each connection (Effect.logDebug: the CLI's --debug). */
  readonly logConnections?: boolean
  /**
   * runsc's --network=host: a listener listens on the host too, at its own address and port
   * (the returned function stops that), and a loopback connect no listener of the sandbox takes
   * goes to the host's loopback through `egress`.
   */
  readonly host?: {
    readonly listen: (local: IpAddress, owner: SocketOwner) => Effect.Effect<() => void, SyscallError>
  }
}

/**
 * Where a connection to `dialed` arrives at `listener`: its own name (Unix), or for IP the
 * listener's address, or the address dialed where it listens on a wildcard (0.0.0.0 arrives at
 * the loopback), in the listener's family.
 */
const arrivalOf = (listener: StreamSocket, dialed: SocketAddress): SocketAddress => {
  const local = listener.local!
  if (local.family === "unix" || dialed.family === "unix") return local
  const arrived = isWildcard(dialed) ? loopbackOf(dialed.family, dialed.port) : dialed
  return asFamily(isWildcard(local) ? arrived : local, local.family)
}

/** `address` as a socket of `family` sees it (an IPv4 address is v4-mapped for an IPv6 socket). */
const seenBy = (family: SocketFamily, address: SocketAddress): SocketAddress =>
  address.family === "unix" || family === "unix" ? address : asFamily(address, family)

/** The longest backlog (Linux's somaxconn). */
export const MAX_BACKLOG = 4096

type State =
  | { readonly tag: "idle" }
  | { readonly tag: "listening"; readonly backlog: Array<StreamSocket>; readonly limit: number; readonly changes: Changes }
  /** A connection beyond the loopback, waiting for the host's connect (egress.ts). */
  | { readonly tag: "connecting"; readonly changes: Changes }
  | { readonly tag: "connected"; readonly incoming: ByteQueue; readonly peer: StreamSocket; readonly changes: Changes; shutWrite: boolean }
  | { readonly tag: "closed" }

export class StreamSocket implements SocketOps {
  readonly kind = "stream" as const
  private state: State = { tag: "idle" }
  /** The address it is bound to (explicitly, or when it listened or connected). */
  local: SocketAddress | undefined
  private remote: SocketAddress | undefined
  /** A bind in progress (a Unix path's file is being made). */
  private binding = false
  private options = new SocketOptions()
  /** Stops its host listener (--network=host), when it listens. */
  private stopHostListener: (() => void) | undefined
  /** A non-blocking connect's failure, until read (SO_ERROR, or the next connect). */
  private pendingError: Errno | undefined
  /** The changes of an idle socket: none come, but poll may wait on them until it is used. */
  private readonly idleChanges = new Changes()
  readonly description: SocketDescription

  constructor(
    readonly family: SocketFamily,
    readonly owner: SocketOwner,
    private readonly space: AddressSpace<StreamSocket>,
    private readonly ino: bigint,
    private readonly routes: StreamRoutes = {}
  ) {
    this.description = this.describe()
  }

  get isListening(): boolean {
    return this.state.tag === "listening"
  }

  hasFlag(flag: SocketFlag): boolean {
    return this.options.has(flag)
  }

  bind(address: SocketAddress): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => {
      if (address.family !== this.family) return fail(Errno.AFNOSUPPORT)
      if (this.state.tag === "closed") return fail(Errno.BADF)
      if (this.local !== undefined || this.binding) return fail(Errno.INVAL)
      this.binding = true
      return Effect.map(this.space.bind(this, address), (bound) => {
        this.local = bound
        // Closed while its file was being made: the name is not held by a socket gone.
        if (this.state.tag === "closed") this.space.unbind(this)
      }).pipe(Effect.ensuring(Effect.sync(() => {
        this.binding = false
      })))
    })
  }

  /** Binds the address a listen, connect or send gives an unbound socket, where its family gives one. */
  private bindImplicitly(purpose: "listen" | "connect"): Errno | undefined {
    if (this.local !== undefined) return undefined
    const bound = this.space.implicitBind(this, purpose)
    if (typeof bound === "number") return bound
    this.local = bound
    return undefined
  }

  listen(backlog: number): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => {
      const limit = Math.min(Math.max(backlog, 1), MAX_BACKLOG)
      if (this.state.tag === "listening") {
        this.state = { ...this.state, limit }
        return Effect.void
      }
      if (this.state.tag !== "idle" || this.binding) return fail(Errno.INVAL)
      const unbound = this.bindImplicitly("listen")
      if (unbound !== undefined) return fail(unbound)
      const conflict = this.space.listenConflict(this)
      if (conflict !== undefined) return fail(conflict)
      const listening: State = { tag: "listening", backlog: [], limit, changes: new Changes() }
      this.state = listening
      this.idleChanges.notify()
      const host = this.routes.host
      if (host === undefined || this.local!.family === "unix") return Effect.void
      // Listening on the host as well; if the host cannot give the port, the listen fails and
      // the socket is bound but not listening, as a failed listen(2) leaves it.
      return Effect.matchEffect(host.listen(this.local as IpAddress, this.owner), {
        onFailure: (e) =>
          Effect.suspend(() => {
            if (this.state === listening) this.state = { tag: "idle" }
            return fail(e.errno)
          }),
        onSuccess: (stop) =>
          Effect.sync(() => {
            if (this.state === listening) this.stopHostListener = stop
            else stop()
          })
      })
    })
  }

  connect(address: SocketAddress, nonBlocking: boolean): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => {
      if (address.family !== this.family) return fail(Errno.AFNOSUPPORT)
      switch (this.state.tag) {
        case "connected":
          return fail(Errno.ISCONN)
        case "connecting":
          return fail(Errno.ALREADY)
        case "listening":
          return fail(Errno.INVAL)
        case "closed":
          return fail(Errno.BADF)
      }
      const failed = this.takeError()
      if (failed !== 0) return fail(failed)
      const egress = this.routes.egress
      const ip = address.family === "unix" ? undefined : address
      if (egress !== undefined && ip !== undefined && !isWildcard(ip) && !isLoopback(ip)) return this.connectOut(egress, ip, nonBlocking)
      const listener = this.space.reached(address, (socket) => socket.isListening)
      if (typeof listener === "number") {
        // --network=host: the host's loopback, where no listener of the sandbox's takes it.
        if (listener === Errno.CONNREFUSED && this.routes.host !== undefined && egress !== undefined && ip !== undefined) return this.connectOut(egress, ip, nonBlocking)
        return fail(listener)
      }
      const waiting = listener.state
      if (waiting.tag !== "listening") return fail(Errno.CONNREFUSED)
      if (waiting.backlog.length >= waiting.limit) {
        // Linux drops the SYN and the client retries; here the connect waits for room.
        if (nonBlocking) return fail(Errno.AGAIN)
        return Effect.zipRight(waiting.changes.next, this.connect(address, nonBlocking))
      }
      const unbound = this.bindImplicitly("connect")
      if (unbound !== undefined) return fail(unbound)
      // The listener's side of the connection, made now, accepted later.
      const server = listener.spawnAccepted(arrivalOf(listener, address))
      if (server === undefined) return fail(Errno.NOBUFS)
      const changes = new Changes()
      const toServer = listener.newQueue(changes)
      const toClient = toServer === undefined ? undefined : this.newQueue(changes)
      if (toServer === undefined || toClient === undefined) {
        if (toServer !== undefined) listener.releaseQueue(toServer)
        releaseSocket(listener.owner)
        return fail(Errno.NOBUFS)
      }
      server.state = { tag: "connected", incoming: toServer, peer: this, changes, shutWrite: false }
      server.remote = seenBy(listener.family, this.local ?? unnamedOf(this.family))
      this.state = { tag: "connected", incoming: toClient, peer: server, changes, shutWrite: false }
      this.remote = seenBy(this.family, server.local!)
      if (this.owner.traffic) this.owner.traffic.connected++
      this.idleChanges.notify()
      waiting.backlog.push(server)
      waiting.changes.notify()
      return this.log(() => `connect ${formatAddress(this.local!)} -> ${formatAddress(server.local!)}${listener.owner.containerId !== this.owner.containerId ? ` (container ${listener.owner.containerId ?? "?"})` : ""}`)
    })
  }

  /**
   * A connection through a host socket: refused (EACCES) unless the policy allows `address`;
   * else connecting until the host's connect ends, which a blocking connect waits for and a
   * non-blocking one leaves to the background (EINPROGRESS; its socket turns writable then,
   * and a failure is what SO_ERROR or the next connect reports).
   */
  private connectOut(egress: Egress, address: IpAddress, nonBlocking: boolean): Effect.Effect<void, SyscallError> {
    if (!egress.allows(address)) {
      if (this.owner.traffic) this.owner.traffic.refused++
      return Effect.zipRight(this.log(() => `egress to ${formatAddress(address)} refused by the policy`), fail(Errno.ACCES))
    }
    const unbound = this.bindImplicitly("connect")
    if (unbound !== undefined) return fail(unbound)
    const connecting = { tag: "connecting", changes: new Changes() } as const
    this.state = connecting
    this.idleChanges.notify()
    const attempt = egress.dial(address).pipe(
      Effect.flatMap((host) => {
        if (this.state !== connecting) {
          // Closed meanwhile.
          host.destroy()
          return fail(Errno.BADF)
        }
        // The far end of the guest's connection, which the bridge reads and writes for the host.
        // Its buffer is charged as the guest's is; what crosses it is counted once, by the guest's socket.
        const owner = { memory: this.owner.memory }
        if (!chargeSocket(owner)) {
          host.destroy()
          return fail(Errno.NOBUFS)
        }
        const endpoint = new StreamSocket(this.family, owner, this.space, this.space.nextIno())
        endpoint.local = address
        const toEndpoint = endpoint.newQueue(connecting.changes)
        const toGuest = toEndpoint === undefined ? undefined : this.newQueue(connecting.changes)
        if (toEndpoint === undefined || toGuest === undefined) {
          if (toEndpoint !== undefined) endpoint.releaseQueue(toEndpoint)
          releaseSocket(owner)
          host.destroy()
          return fail(Errno.NOBUFS)
        }
        endpoint.state = { tag: "connected", incoming: toEndpoint, peer: this, changes: connecting.changes, shutWrite: false }
        endpoint.remote = this.local
        this.state = { tag: "connected", incoming: toGuest, peer: endpoint, changes: connecting.changes, shutWrite: false }
        this.remote = address
        if (this.owner.traffic) this.owner.traffic.connected++
        connecting.changes.notify()
        egress.join(host, endpoint.description)
        return this.log(() => `egress ${formatAddress(this.local!)} -> ${formatAddress(address)} (host ${host.remoteAddress ?? "?"}:${host.remotePort ?? "?"} from port ${host.localPort ?? "?"})`)
      }),
      Effect.tapError((e) =>
        Effect.suspend(() => {
          if (this.state !== connecting) return Effect.void
          this.state = { tag: "idle" }
          // A blocking connect reports its failure itself; a non-blocking one's waits for SO_ERROR.
          if (nonBlocking) this.pendingError = e.errno
          connecting.changes.notify()
          this.idleChanges.notify()
          return this.log(() => `egress to ${formatAddress(address)} failed: ${errnoName(e.errno)}`)
        })
      ),
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          if (this.state === connecting) this.state = { tag: "idle" }
        })
      )
    )
    if (!nonBlocking) return attempt
    egress.background(Effect.ignore(attempt))
    return fail(Errno.INPROGRESS)
  }

  /**
   * A line of the connection log, naming this socket's container, when the network keeps one
   * (--debug). Without it the call stays a settled Exit, which the syscall path answers without
   * a fiber step (a connect costs a third more otherwise).
   */
  private log(text: () => string): Effect.Effect<void> {
    return this.routes.logConnections === true ? Effect.logDebug(`net: container ${this.owner.containerId ?? "?"}: ${text()}`) : Effect.void
  }

  get status(): SocketOps["status"] {
    switch (this.state.tag) {
      case "listening":
      case "connected":
        return "opened"
      case "closed":
        return "closed"
      case "connecting":
        return "opening"
      case "idle":
        return this.pendingError !== undefined ? "failed" : "opening"
    }
  }

  /** SO_ERROR: the pending error (0: none), cleared by reading it. */
  takeError(): Errno | 0 {
    const error = this.pendingError ?? 0
    this.pendingError = undefined
    return error
  }

  /** Waits for a connection, within SO_RCVTIMEO (EAGAIN past it), as Linux's accept does. */
  accept(nonBlocking: boolean): Effect.Effect<Accepted, SyscallError> {
    const wait = limitedWait(this.options.timeLimits.receiveTimeLimit)
    const attempt: Effect.Effect<Accepted, SyscallError> = Effect.suspend(() => {
      const state = this.state
      if (state.tag !== "listening") return fail(Errno.INVAL)
      const next = state.backlog.shift()
      if (next !== undefined) {
        state.changes.notify()
        if (this.owner.traffic) this.owner.traffic.accepted++
        return Effect.succeed({ socket: next.description, peer: next.remote! })
      }
      if (nonBlocking) return fail(Errno.AGAIN)
      return Effect.flatMap(wait(state.changes.next), (came) => (came ? attempt : fail(Errno.AGAIN)))
    })
    return attempt
  }

  receive(length: number, options: { readonly peek: boolean; readonly waitAll: boolean; readonly nonBlocking: boolean; readonly into?: Uint8Array }): Effect.Effect<Received, SyscallError> {
    return Effect.suspend(() => {
      const state = this.state
      if (state.tag === "connecting") return this.afterConnect(state, options.nonBlocking, () => this.receive(length, options))
      if (state.tag !== "connected") return fail(state.tag === "closed" ? Errno.BADF : Errno.NOTCONN)
      const queue = state.incoming
      const into = options.into
      const parts: Array<Uint8Array> = []
      let got = 0
      const answer = (): Effect.Effect<Received> => {
        if (!options.peek && this.owner.traffic) this.owner.traffic.receivedBytes += got
        return Effect.succeed({ data: into !== undefined ? into.subarray(0, got) : parts.length === 1 ? parts[0]! : concatBytes(parts, got) })
      }
      // SO_RCVTIMEO: past it, what has come (MSG_WAITALL's part), or EAGAIN.
      const wait = limitedWait(this.options.timeLimits.receiveTimeLimit)
      const loop: Effect.Effect<Received, SyscallError> = Effect.suspend(() => {
        if (queue.size > 0 && got < length) {
          if (into !== undefined) {
            got += queue.takeInto(into, got, length - got, options.peek)
          } else {
            const part = queue.take(length - got, options.peek)
            parts.push(part)
            got += part.length
          }
        }
        const done = got === length || queue.ended || queue.closed || (got > 0 && (!options.waitAll || options.peek))
        if (done || (options.nonBlocking && got > 0)) return answer()
        if (options.nonBlocking) return fail(Errno.AGAIN)
        return Effect.flatMap(wait(state.changes.next), (came) => (came ? loop : got > 0 ? answer() : fail(Errno.AGAIN)))
      })
      return length === 0 ? Effect.succeed({ data: new Uint8Array(0) }) : loop
    })
  }

  send(data: Uint8Array, options: { readonly nonBlocking: boolean }): Effect.Effect<number, SyscallError> {
    return Effect.suspend(() => {
      const state = this.state
      if (state.tag === "connecting") return this.afterConnect(state, options.nonBlocking, () => this.send(data, options))
      if (state.tag !== "connected") return fail(state.tag === "closed" ? Errno.BADF : Errno.NOTCONN)
      if (state.shutWrite) return fail(Errno.PIPE)
      const queue = state.peer.state.tag === "connected" ? state.peer.state.incoming : undefined
      let sent = 0
      // SO_SNDTIMEO: past it, what went (a partial send), or EAGAIN.
      const wait = limitedWait(this.options.timeLimits.sendTimeLimit)
      const loop: Effect.Effect<number, SyscallError> = Effect.suspend(() => {
        if (queue === undefined || queue.closed || queue.refusing) return sent > 0 ? Effect.succeed(sent) : fail(Errno.PIPE)
        if (sent === data.length) return Effect.succeed(sent)
        if (queue.room === 0) {
          if (options.nonBlocking) return sent > 0 ? Effect.succeed(sent) : fail(Errno.AGAIN)
          return Effect.flatMap(wait(state.changes.next), (came) => (came ? loop : sent > 0 ? Effect.succeed(sent) : fail(Errno.AGAIN)))
        }
        const n = Math.min(queue.room, data.length - sent)
        queue.put(data.subarray(sent, sent + n))
        sent += n
        if (this.owner.traffic) this.owner.traffic.sentBytes += n
        return loop
      })
      return loop
    })
  }

  /** A read or write on a connecting socket waits for the connect's end, as Linux's does (EAGAIN when non-blocking). */
  private afterConnect<A>(state: { readonly changes: Changes }, nonBlocking: boolean, again: () => Effect.Effect<A, SyscallError>): Effect.Effect<A, SyscallError> {
    return nonBlocking ? fail(Errno.AGAIN) : Effect.zipRight(state.changes.next, Effect.suspend(again))
  }

  shutdown(read: boolean, write: boolean): Effect.Effect<void, SyscallError> {
    return Effect.suspend(() => {
      const state = this.state
      if (state.tag !== "connected") return fail(Errno.NOTCONN)
      if (write && !state.shutWrite) {
        state.shutWrite = true
        if (state.peer.state.tag === "connected") state.peer.state.incoming.end()
      }
      // Linux's TCP keeps taking data after SHUT_RD (reads just end at 0); a Unix socket's peer
      // gets EPIPE from then on.
      if (read) {
        if (this.family === "unix") state.incoming.refuse()
        else state.incoming.end()
      }
      return Effect.void
    })
  }

  get localAddress(): Effect.Effect<SocketAddress, SyscallError> {
    return Effect.sync(() => this.local ?? unnamedOf(this.family))
  }

  get peerAddress(): Effect.Effect<SocketAddress, SyscallError> {
    return Effect.suspend(() => (this.state.tag === "connected" && this.remote !== undefined ? Effect.succeed(this.remote) : fail(Errno.NOTCONN)))
  }

  setFlag(option: SocketFlag, value: boolean): Effect.Effect<void, SyscallError> {
    return this.options.setFlag(option, value)
  }

  getFlag(option: SocketFlag): Effect.Effect<boolean, SyscallError> {
    return Effect.sync(() => (option === "acceptConnections" ? this.state.tag === "listening" : this.options.has(option)))
  }

  /** Takes effect on connections made from then on (a connected pair's buffers are fixed). */
  setSize(option: SocketSize, value: number): Effect.Effect<void, SyscallError> {
    return this.options.setSize(option, value)
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

  /** socketpair(2) of stream sockets: new `a` and `b` connected to each other, unnamed; false when their buffers cannot be charged. */
  static pair(a: StreamSocket, b: StreamSocket): boolean {
    const changes = new Changes()
    const toA = a.newQueue(changes)
    if (toA === undefined) return false
    const toB = b.newQueue(changes)
    if (toB === undefined) {
      a.releaseQueue(toA)
      return false
    }
    a.state = { tag: "connected", incoming: toA, peer: b, changes, shutWrite: false }
    a.remote = unnamedOf(b.family)
    b.state = { tag: "connected", incoming: toB, peer: a, changes, shutWrite: false }
    b.remote = unnamedOf(a.family)
    return true
  }

  /** A connection accepted from this listener: bound where it was reached, owned (and charged) as the listener; undefined when its memory refuses. */
  private spawnAccepted(local: SocketAddress): StreamSocket | undefined {
    if (!chargeSocket(this.owner)) return undefined
    const socket = new StreamSocket(this.family, this.owner, this.space, this.space.nextIno(), this.routes)
    socket.local = local
    socket.options = this.options.copy()
    return socket
  }

  /** This socket's receive buffer for a new connection, charged to its owner (and its heap, heap.ts); undefined when the memory is full. */
  private newQueue(changes: Changes): ByteQueue | undefined {
    const memory = this.owner.memory
    if (!memory.chargeHeap(CONNECTION_HEAP)) return undefined
    if (!memory.charge(this.options.receiveBuffer)) {
      memory.releaseHeap(CONNECTION_HEAP)
      return undefined
    }
    return new ByteQueue(this.options.receiveBuffer, changes)
  }

  private releaseQueue(queue: ByteQueue): void {
    this.owner.memory.release(queue.capacity)
    this.owner.memory.releaseHeap(CONNECTION_HEAP)
  }

  /** close(2): a listener's pending connections are reset; a connection's peer reads to its end, then 0, and its sends fail EPIPE. */
  private closeNow(): void {
    const state = this.state
    if (state.tag === "closed") return
    this.state = { tag: "closed" }
    // Every socket was charged at its making (heap.ts).
    releaseSocket(this.owner)
    this.stopHostListener?.()
    this.stopHostListener = undefined
    if (state.tag === "listening") {
      for (const pending of state.backlog) pending.closeNow()
      state.changes.notify()
    } else if (state.tag === "connecting") {
      state.changes.notify()
    } else if (state.tag === "connected") {
      state.incoming.close()
      this.releaseQueue(state.incoming)
      if (state.peer.state.tag === "connected") state.peer.state.incoming.end()
    }
    this.idleChanges.notify()
    this.space.unbind(this)
  }

  private get changes(): Changes {
    const state = this.state
    return state.tag === "listening" || state.tag === "connected" || state.tag === "connecting" ? state.changes : this.idleChanges
  }

  private ready(event: "read" | "write"): boolean {
    const state = this.state
    switch (state.tag) {
      case "listening":
        return event === "read" && state.backlog.length > 0
      case "connecting":
        return false
      case "connected": {
        if (event === "read") return state.incoming.size > 0 || state.incoming.ended || state.incoming.closed
        const peer = state.peer.state
        return state.shutWrite || peer.tag !== "connected" || peer.incoming.closed || peer.incoming.refusing || peer.incoming.room > 0
      }
      default:
        // Linux's poll of a socket neither listening nor connected: POLLOUT | POLLHUP.
        return true
    }
  }

  private describe(): SocketDescription {
    const stat = socketStat(this.ino, FileType.SOCKET_STREAM)
    return {
      filetype: FileType.SOCKET_STREAM,
      socket: this,
      read: (length, offset, nonBlocking) =>
        offset !== undefined
          ? fail(Errno.SPIPE)
          : Effect.map(this.receive(length, { peek: false, waitAll: false, nonBlocking: nonBlocking ?? false }), (r) => r.data),
      write: (data, offset, nonBlocking) => (offset !== undefined ? fail(Errno.SPIPE) : this.send(data, { nonBlocking: nonBlocking ?? false })),
      seek: () => fail(Errno.SPIPE),
      stat,
      close: Effect.sync(() => this.closeNow()),
      readiness: {
        ready: (event) => this.ready(event),
        changed: Effect.suspend(() => this.changes.next)
      }
    }
  }
}
