/**
 * A sandbox's network namespace (runsc's `--network=none`: loopback only, shared by every
 * container of the sandbox, as a Kubernetes pod shares localhost): where its guests' sockets
 * are made. Stream sockets over IPv4 and IPv6 are built; datagram and Unix sockets are not yet
 * (EAFNOSUPPORT / EPROTONOSUPPORT), nor published ports or egress.
 */
import { Errno } from "@runsc/abi"
import { fail, type Network, type SocketDescription, type SyscallError } from "@runsc/kernel"
import { Effect } from "effect"
import { isIpFamily } from "./address.js"
import { Ports } from "./ports.js"
import { StreamSocket } from "./stream.js"

export const makeLoopbackNetwork = (): Network => {
  const ports = new Ports()
  return {
    open: (family, kind, owner): Effect.Effect<SocketDescription, SyscallError> => {
      if (!isIpFamily(family)) return fail(Errno.AFNOSUPPORT)
      if (kind !== "stream") return fail(Errno.PROTONOSUPPORT)
      return Effect.succeed(new StreamSocket(family, owner, ports, ports.nextIno()).description)
    }
  }
}
