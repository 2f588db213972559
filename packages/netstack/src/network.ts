/**
 * A sandbox's network namespace: where its guests' sockets are made. Stream and datagram
 * sockets over IPv4 and IPv6, each protocol with its own ports, on a loopback shared by every
 * container of the sandbox (as a Kubernetes pod shares localhost); and Unix stream and datagram
 * sockets, named by abstract names (the namespace's) or by files in the containers' filesystems.
 *
 * runsc's modes: `none` is the loopback alone (makeLoopbackNetwork: anything else has no route);
 * `sandbox` adds egress by policy (makeSandboxNetwork; published ports are listened on by the
 * Loader, publish.ts); `host` (makeHostNetwork) gives guests the host's network: every TCP
 * listener listens on the host too, every bound UDP socket is bound there too, and every connect
 * or datagram the sandbox's own sockets do not take goes to the host. Datagrams beyond the
 * loopback go out as egress allows (everywhere, in host mode).
 */
import { Errno } from "@runsc/abi"
import {
  fail,
  ipText,
  type Network,
  type SocketAddress,
  type SocketDescription,
  type SocketFamily,
  type SocketKind,
  type SocketOwner,
  type SyscallError,
  syscallError
} from "@runsc/kernel"
import type { EgressRule } from "@runsc/spec"
import { Effect, Exit, Scope } from "effect"
import { isIpFamily, isWildcard, loopbackOf } from "./address.js"
import { DatagramSocket } from "./datagram.js"
import { chargeSocket } from "./heap.js"
import { type EgressOptions, makeEgress } from "./egress.js"
import { Ports } from "./ports.js"
import { publishPort } from "./publish.js"
import { type StreamRoutes, StreamSocket } from "./stream.js"
import { type UnixBound, UnixNames } from "./unixNames.js"

/** The loopback and Unix sockets, and connections beyond the loopback through `routes.egress` (none without it). */
export const makeLoopbackNetwork = (routes: StreamRoutes = {}): Network => {
  const { egress } = routes
  const streamPorts = new Ports<StreamSocket>()
  const datagramPorts = new Ports<DatagramSocket>()
  // One inode sequence for every socket: fstat tells any two apart.
  const nextIno = () => streamPorts.nextIno()
  const boundToPaths = new Set<UnixBound>()
  const unixStreams = new UnixNames<StreamSocket>("stream", boundToPaths, nextIno)
  const unixDatagrams = new UnixNames<DatagramSocket>("dgram", boundToPaths, nextIno)
  /** A new socket, charged to `owner` (heap.ts); undefined when its memory refuses. */
  const make = (family: SocketFamily, kind: SocketKind, owner: SocketOwner): StreamSocket | DatagramSocket | undefined => {
    if (!chargeSocket(owner)) return undefined
    const ip = isIpFamily(family)
    return kind === "stream"
      ? new StreamSocket(family, owner, ip ? streamPorts : unixStreams, nextIno(), routes)
      : new DatagramSocket(family, owner, ip ? datagramPorts : unixDatagrams, nextIno(), egress, routes.host !== undefined)
  }
  return {
    open: (family, kind, owner): Effect.Effect<SocketDescription, SyscallError> =>
      Effect.suspend(() => {
        const socket = make(family, kind, owner)
        return socket === undefined ? fail(Errno.NOBUFS) : Effect.succeed(socket.description)
      }),
    pair: (family, kind, owner) =>
      Effect.suspend(() => {
        // As Linux: only Unix sockets come in pairs.
        if (isIpFamily(family)) return fail(Errno.NOTSUP)
        const a = make(family, kind, owner)
        const b = a === undefined ? undefined : make(family, kind, owner)
        if (a instanceof StreamSocket && b instanceof StreamSocket && StreamSocket.pair(a, b)) return Effect.succeed([a.description, b.description] as const)
        if (a instanceof DatagramSocket && b instanceof DatagramSocket) {
          DatagramSocket.pair(a, b)
          return Effect.succeed([a.description, b.description] as const)
        }
        // Closing gives back what each was charged.
        return Effect.zipRight(Effect.all([a?.description.close ?? Effect.void, b?.description.close ?? Effect.void]), fail(Errno.NOBUFS))
      }),
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

const EVERYWHERE: ReadonlyArray<EgressRule> = [
  { family: "ipv4", address: "0.0.0.0", prefix: 0, ports: { low: 1, high: 65535 } },
  { family: "ipv6", address: "::", prefix: 0, ports: { low: 1, high: 65535 } }
]

/** What a host listen's failure is to the guest's listen. */
const listenErrno = (code: string | undefined): Errno =>
  code === "EACCES" || code === "EPERM" ? Errno.ACCES : code === "EADDRNOTAVAIL" ? Errno.ADDRNOTAVAIL : Errno.ADDRINUSE

/**
 * runsc's `--network=host`, for trusted workloads: TCP and UDP as if the guests were host
 * processes. A guest's listener also listens on the host at its own address and port (each host
 * connection bridged to it, as a published port's is), a bound datagram socket is bound on the
 * host at its own address and port, and a connect or datagram that no socket of the sandbox
 * takes goes out through a host socket, to the host's loopback as to anywhere else, with no
 * policy; names resolve through the host's DNS. For the enclosing scope.
 */
export const makeHostNetwork = (options: EgressOptions & { readonly logConnections?: boolean } = {}): Effect.Effect<Network, never, Scope.Scope> =>
  Effect.gen(function*() {
    const egress = yield* makeEgress(EVERYWHERE, { ...options, sharedLoopback: true })
    const network: Network = makeLoopbackNetwork({
      egress,
      logConnections: options.logConnections ?? false,
      host: {
        listen: (local, owner) =>
          Effect.gen(function*() {
            // A host listener is a host fd of the sandbox process, as an egress connection is.
            const release = egress.holdHostSocket()
            if (release === undefined) return yield* fail(Errno.NOBUFS)
            const scope = yield* Scope.make()
            yield* Scope.addFinalizer(scope, Effect.sync(release))
            const guestAddress = isWildcard(local) ? loopbackOf(local.family, local.port) : local
            yield* publishPort(network, { hostAddress: ipText(local), hostPort: local.port, guestPort: local.port, guestAddress }, owner).pipe(
              Scope.extend(scope),
              Effect.tapError(() => Scope.close(scope, Exit.void)),
              Effect.mapError((e) => syscallError(listenErrno(e.code)))
            )
            return () => egress.background(Scope.close(scope, Exit.void))
          })
      }
    })
    return network
  })
