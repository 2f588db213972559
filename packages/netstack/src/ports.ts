/**
 * The ports of one protocol (stream or datagram: each has its own) in one network namespace:
 * which socket holds which address and port, the ephemeral range, and which socket a
 * connection or a datagram reaches.
 *
 * Two sockets may share a port only on different addresses of one family (neither the
 * wildcard), or when both set SO_REUSEADDR and neither listens, as on Linux; an IPv6 wildcard
 * without IPV6_V6ONLY also holds the port for IPv4.
 */
import { Errno } from "@runsc/abi"
import { fail, type SocketAddress, type SocketFamily, type SyscallError } from "@runsc/kernel"
import { Effect } from "effect"
import { type IpAddress, isLoopback, isWildcard, loopbackOf, sameAddress, wildcardOf } from "./address.js"
import type { AddressSpace } from "./addressSpace.js"

/** A socket as its ports see it (an IP one: `local` is an IpAddress whenever it is set). */
export interface Bound {
  readonly family: SocketFamily
  local: SocketAddress | undefined
  readonly isListening: boolean
  hasFlag(flag: "reuseAddress" | "onlyV6"): boolean
}

const ipOf = (socket: Bound): IpAddress => socket.local as IpAddress

/** Linux's default ephemeral range (net.ipv4.ip_local_port_range). */
const EPHEMERAL_FIRST = 32768
const EPHEMERAL_LAST = 60999

/** Whether two bindings of one port cover a common address. */
const overlap = (a: Bound, b: Bound): boolean => {
  const x = ipOf(a)
  const y = ipOf(b)
  if (x.family === y.family) return isWildcard(x) || isWildcard(y) || sameAddress(x, y)
  const dualStack = (s: Bound) => s.family === "inet6" && isWildcard(ipOf(s)) && !s.hasFlag("onlyV6")
  return dualStack(a) || dualStack(b)
}

export class Ports<S extends Bound> implements AddressSpace<S> {
  private readonly byPort = new Map<number, Set<S>>()
  private nextEphemeral = EPHEMERAL_FIRST
  private inos = 0n

  nextIno(): bigint {
    return ++this.inos
  }

  bind(socket: S, address: SocketAddress): Effect.Effect<SocketAddress, SyscallError> {
    if (address.family === "unix") return fail(Errno.AFNOSUPPORT)
    const bound = this.bindPort(socket, address)
    return typeof bound === "number" ? fail(bound) : Effect.succeed(bound)
  }

  /** An ephemeral port: on the wildcard to listen or send from, on the loopback to connect from. */
  implicitBind(socket: S, purpose: "listen" | "connect" | "send"): SocketAddress | Errno {
    const family = socket.family === "inet6" ? "inet6" : "inet4"
    return this.bindPort(socket, purpose === "connect" ? loopbackOf(family, 0) : wildcardOf(family, 0))
  }

  /** Binds `socket` to `address` (port 0: an ephemeral one); the address bound, or an errno. */
  private bindPort(socket: S, address: IpAddress): IpAddress | Errno {
    if (!isWildcard(address) && !isLoopback(address)) return Errno.ADDRNOTAVAIL
    if (address.port !== 0) {
      const bound = { ...address }
      return this.take(socket, bound) ? bound : Errno.ADDRINUSE
    }
    for (let tries = 0; tries <= EPHEMERAL_LAST - EPHEMERAL_FIRST; tries++) {
      const port = this.nextEphemeral
      this.nextEphemeral = port === EPHEMERAL_LAST ? EPHEMERAL_FIRST : port + 1
      const bound = { ...address, port }
      if (this.take(socket, bound)) return bound
    }
    return Errno.ADDRINUSE
  }

  private take(socket: S, address: IpAddress): boolean {
    const holders = this.byPort.get(address.port) ?? new Set<S>()
    socket.local = address
    for (const other of holders) {
      if (!overlap(socket, other)) continue
      if (socket.hasFlag("reuseAddress") && other.hasFlag("reuseAddress") && !other.isListening) continue
      socket.local = undefined
      return false
    }
    holders.add(socket)
    this.byPort.set(address.port, holders)
    return true
  }

  /** Whether `socket` may listen where it is bound: not while another socket listens on an address it covers. */
  listenConflict(socket: S): Errno | undefined {
    for (const other of this.byPort.get(ipOf(socket).port) ?? []) {
      if (other !== socket && other.isListening && overlap(socket, other)) return Errno.ADDRINUSE
    }
    return undefined
  }

  unbind(socket: S): void {
    const local = socket.local
    if (local === undefined || local.family === "unix") return
    const holders = this.byPort.get(local.port)
    if (holders?.delete(socket) && holders.size === 0) this.byPort.delete(local.port)
  }

  /**
   * The socket that takes what is sent to `address` among those `eligible`: one bound to that
   * address, else to its family's wildcard (or a dual-stack IPv6 one); ECONNREFUSED when none.
   * Only loopback and wildcard addresses are local (0.0.0.0 reaches the loopback, as on Linux);
   * anything else has no route.
   */
  reached(address: SocketAddress, eligible: (socket: S) => boolean): S | Errno {
    if (address.family === "unix") return Errno.AFNOSUPPORT
    if (!isWildcard(address) && !isLoopback(address)) return Errno.NETUNREACH
    const target = isWildcard(address) ? loopbackOf(address.family, address.port) : address
    let wildcard: S | undefined
    for (const socket of this.byPort.get(target.port) ?? []) {
      if (!eligible(socket)) continue
      const local = ipOf(socket)
      if (local.family === target.family && sameAddress(local, target)) return socket
      const reaches = local.family === target.family
        ? isWildcard(local)
        : local.family === "inet6" && isWildcard(local) && !socket.hasFlag("onlyV6")
      if (reaches) wildcard = socket
    }
    return wildcard ?? Errno.CONNREFUSED
  }
}
