/**
 * A sandbox's network namespace: where its guests' sockets are made. Stream and datagram
 * sockets over IPv4 and IPv6 are built, each protocol with its own ports, on a loopback shared by
 * every container of the sandbox (as a Kubernetes pod shares localhost). Unix sockets are not
 * yet (EAFNOSUPPORT).
 *
 * runsc's modes: `none` is the loopback alone (makeLoopbackNetwork: anything else has no route);
 * `sandbox` adds egress by policy (makeSandboxNetwork; published ports are listened on by the
 * Loader, publish.ts). `host` (guest sockets as host sockets) is not built.
 */
import { Errno } from "@runsc/abi"
import { fail, type Network, type SocketAddress, type SocketDescription, type SocketOwner, type SyscallError } from "@runsc/kernel"
import type { EgressRule } from "@runsc/spec"
import { Effect, type Scope } from "effect"
import { isIpFamily } from "./address.js"
import { DatagramSocket } from "./datagram.js"
import { type EgressOptions, makeEgress } from "./egress.js"
import { Ports } from "./ports.js"
import { type StreamRoutes, StreamSocket } from "./stream.js"

/** The loopback, and connections beyond it through `routes.egress` (TCP; none without it). */
export const makeLoopbackNetwork = (routes: StreamRoutes = {}): Network => {
  const { egress } = routes
  const streamPorts = new Ports<StreamSocket>()
  const datagramPorts = new Ports<DatagramSocket>()
  return {
    open: (family, kind, owner): Effect.Effect<SocketDescription, SyscallError> => {
      if (!isIpFamily(family)) return fail(Errno.AFNOSUPPORT)
      // One inode sequence for both kinds: fstat tells any two sockets apart.
      const ino = streamPorts.nextIno()
      return Effect.succeed(
        kind === "stream"
          ? new StreamSocket(family, owner, streamPorts, ino, routes).description
          : new DatagramSocket(family, owner, datagramPorts, ino).description
      )
    },
    // Names beyond the sandbox's /etc/hosts: only where egress may reach.
    ...(egress !== undefined ? { lookupHost: (name: string) => egress.lookupHost(name) } : {})
  }
}

/** runsc's `--network=sandbox`: the loopback, and TCP egress where `rules` allow it, for the enclosing scope. */
export const makeSandboxNetwork = (
  rules: ReadonlyArray<EgressRule>,
  options: EgressOptions & { readonly logConnections?: boolean } = {}
): Effect.Effect<Network, never, Scope.Scope> =>
  Effect.map(makeEgress(rules, options), (egress) => makeLoopbackNetwork({ egress, logConnections: options.logConnections ?? false }))

/**
 * A listening TCP socket of `network` at `address`, owned by `owner`: what a container's init
 * is handed at its start (LISTEN_ANNOTATION), as if it had bound and listened itself.
 */
export const listenOn = (network: Network, owner: SocketOwner, address: SocketAddress, backlog = 128): Effect.Effect<SocketDescription, SyscallError> =>
  Effect.flatMap(network.open(address.family, "stream", owner), (socket) =>
    Effect.zipRight(socket.socket.bind(address), socket.socket.listen(backlog)).pipe(
      Effect.as(socket),
      Effect.tapError(() => socket.close)
    ))
