/**
 * A sandbox's network namespace (runsc's `--network=none`: loopback only, shared by every
 * container of the sandbox, as a Kubernetes pod shares localhost): where its guests' sockets
 * are made. Stream and datagram sockets over IPv4 and IPv6 are built, each protocol with its
 * own ports; Unix sockets are not yet (EAFNOSUPPORT), nor published ports or egress.
 */
import { Errno } from "@runsc/abi"
import { fail, type Network, type SocketDescription, type SyscallError } from "@runsc/kernel"
import { Effect } from "effect"
import { isIpFamily } from "./address.js"
import { DatagramSocket } from "./datagram.js"
import { Ports } from "./ports.js"
import { StreamSocket } from "./stream.js"

export const makeLoopbackNetwork = (): Network => {
  const streamPorts = new Ports<StreamSocket>()
  const datagramPorts = new Ports<DatagramSocket>()
  return {
    open: (family, kind, owner): Effect.Effect<SocketDescription, SyscallError> => {
      if (!isIpFamily(family)) return fail(Errno.AFNOSUPPORT)
      // One inode sequence for both kinds: fstat tells any two sockets apart.
      const ino = streamPorts.nextIno()
      return Effect.succeed(
        kind === "stream"
          ? new StreamSocket(family, owner, streamPorts, ino).description
          : new DatagramSocket(family, owner, datagramPorts, ino).description
      )
    }
  }
}
