/**
 * Where the sockets of one kind are bound and found: IP ports (ports.ts) for IPv4 and IPv6, or
 * Unix names (unixNames.ts). Stream and datagram sockets see addresses only through it, so
 * they keep one implementation for both families.
 */
import type { Errno } from "@runsc/abi"
import type { SocketAddress, SyscallError } from "@runsc/kernel"
import type { Effect } from "effect"

export interface AddressSpace<S> {
  /** A new socket's inode number (fstat tells any two sockets apart). */
  nextIno(): bigint
  /** bind(2): `socket` at `address` (IP port 0, or an empty Unix name: one chosen for it); the address bound. */
  bind(socket: S, address: SocketAddress): Effect.Effect<SocketAddress, SyscallError>
  /**
   * The address an unbound socket gets when it listens, connects or sends: an ephemeral port
   * (IP); none for a Unix socket, which stays unnamed (and cannot listen unbound: EINVAL).
   */
  implicitBind(socket: S, purpose: "listen" | "connect" | "send"): SocketAddress | Errno | undefined
  /** Why `socket` may not listen where it is bound (another listener there), if it may not. */
  listenConflict(socket: S): Errno | undefined
  /** The socket that a connect or a datagram to `address` reaches, among those `eligible`. */
  reached(address: SocketAddress, eligible: (socket: S) => boolean): S | Errno
  /** `socket` is closed: its name is free again. */
  unbind(socket: S): void
}
