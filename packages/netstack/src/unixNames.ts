/**
 * Unix socket names in one network namespace, for one kind of socket (stream or datagram):
 *
 * - Abstract names ("\0name") live here, one socket per name, as Linux keeps them per network
 *   namespace and per socket type. An empty name binds an unused one ("\0" and five hex
 *   digits), as Linux's autobind does.
 * - A path is a file in the guest's filesystem, which the kernel makes at bind (`makeNode`) and
 *   finds at connect (`boundSocket`). The file names the socket itself, and reaches it only
 *   while the socket is open: `paths`, shared by both kinds, holds the sockets bound to a file
 *   until they close, so a file whose socket is gone refuses (ECONNREFUSED), and one whose
 *   socket is of the other kind is EPROTOTYPE, as on Linux.
 *
 * A Unix socket is never bound implicitly: it connects and sends unnamed, and cannot listen
 * unbound (EINVAL).
 */
import { Errno } from "@runsc/abi"
import { fail, isAbstract, type SocketAddress, type SocketKind, type SyscallError } from "@runsc/kernel"
import { Effect } from "effect"
import type { AddressSpace } from "./addressSpace.js"

/** A socket as its names see it. */
export interface UnixBound {
  readonly kind: SocketKind
  local: SocketAddress | undefined
}

/** How many names autobind can give (five hex digits). */
const AUTOBIND_NAMES = 1 << 20

export class UnixNames<S extends UnixBound> implements AddressSpace<S> {
  private readonly abstract = new Map<string, S>()
  private nextAutobind = 0

  constructor(
    private readonly kind: SocketKind,
    /** The sockets of both kinds bound to a path file and still open. */
    private readonly paths: Set<UnixBound>,
    readonly nextIno: () => bigint
  ) {}

  bind(socket: S, address: SocketAddress): Effect.Effect<SocketAddress, SyscallError> {
    if (address.family !== "unix") return fail(Errno.AFNOSUPPORT)
    if (address.path === "") return this.autobind(socket)
    if (isAbstract(address)) {
      if (this.abstract.has(address.path)) return fail(Errno.ADDRINUSE)
      this.abstract.set(address.path, socket)
      return Effect.succeed({ family: "unix", path: address.path })
    }
    // The kernel resolved the path and says how to make its file; without that it cannot be bound.
    const makeNode = address.makeNode
    if (makeNode === undefined) return fail(Errno.INVAL)
    return Effect.map(makeNode(socket), () => {
      this.paths.add(socket)
      return { family: "unix" as const, path: address.path }
    })
  }

  private autobind(socket: S): Effect.Effect<SocketAddress, SyscallError> {
    for (let tries = 0; tries < AUTOBIND_NAMES; tries++) {
      const path = `\0${this.nextAutobind.toString(16).padStart(5, "0")}`
      this.nextAutobind = (this.nextAutobind + 1) % AUTOBIND_NAMES
      if (this.abstract.has(path)) continue
      this.abstract.set(path, socket)
      return Effect.succeed({ family: "unix", path })
    }
    return fail(Errno.ADDRINUSE)
  }

  implicitBind(_socket: S, purpose: "listen" | "connect" | "send"): Errno | undefined {
    return purpose === "listen" ? Errno.INVAL : undefined
  }

  /** Names are exclusive from their bind: two sockets never listen on one. */
  listenConflict(): undefined {
    return undefined
  }

  reached(address: SocketAddress, eligible: (socket: S) => boolean): S | Errno {
    if (address.family !== "unix") return Errno.AFNOSUPPORT
    if (address.path === "") return Errno.INVAL
    if (isAbstract(address)) {
      const socket = this.abstract.get(address.path)
      return socket !== undefined && eligible(socket) ? socket : Errno.CONNREFUSED
    }
    const bound = address.boundSocket
    if (bound === undefined || bound === null || !this.paths.has(bound as UnixBound)) return Errno.CONNREFUSED
    if ((bound as UnixBound).kind !== this.kind) return Errno.PROTOTYPE
    const socket = bound as S
    return eligible(socket) ? socket : Errno.CONNREFUSED
  }

  unbind(socket: S): void {
    const local = socket.local
    if (local?.family !== "unix") return
    if (this.abstract.get(local.path) === socket) this.abstract.delete(local.path)
    this.paths.delete(socket)
  }
}
