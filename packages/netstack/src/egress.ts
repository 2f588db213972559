/**
 * Egress (runsc's `--network=sandbox`, and `host` with a policy that allows everything): a
 * guest's connection to an address beyond the sandbox's loopback, made through a host socket of
 * the sandbox process when the sandbox's policy allows the destination, and joined to the
 * guest's connection by a host bridge (hostBridge.ts); a guest's datagrams likewise, through a
 * host UDP socket; and the names the host's DNS gives, where the policy could reach them.
 *
 * The policy names what the guest dials (CIDRs and ports, `@runsc/spec`'s EgressRule); nothing
 * is allowed unless a rule says so, and a refused destination fails the connect with EACCES, as
 * a Landlock network rule refuses it on Linux. 10.0.2.2 stands for the host's own loopback
 * (slirp4netns's address, which podman's rootless containers use for it): the sandbox's
 * 127.0.0.1 is its own, so that is how a guest reaches a host service, when a rule allows it.
 *
 * Every connection holds a host fd in the sandbox process: at most MAX_HOST_SOCKETS are open at
 * once (ENOBUFS past it), so a guest cannot exhaust the process's fds; their buffers are
 * charged to the sandbox's memory as any connection's are.
 */
import { Errno } from "@runsc/abi"
import { fail, ipText, parseIp, type SocketDescription, type SyscallError } from "@runsc/kernel"
import type { EgressRule } from "@runsc/spec"
import { Effect, FiberSet, type Scope } from "effect"
import * as Dgram from "node:dgram"
import { promises as Dns } from "node:dns"
import * as Net from "node:net"
import type { IpAddress } from "./address.js"
import { bridge } from "./hostBridge.js"

/** The most host sockets a sandbox's egress holds at once. */
export const MAX_HOST_SOCKETS = 512

/** The address a guest dials for the host's loopback (127.0.0.1). */
export const HOST_LOOPBACK_GATEWAY = "10.0.2.2"

/** What a socket needs to reach beyond the loopback. */
export interface Egress {
  /** Whether the policy lets a guest connect to `address`. */
  allows(address: IpAddress): boolean
  /** A host socket connected to `address`, paused; fails with the errno the host's connect met. */
  dial(address: IpAddress): Effect.Effect<Net.Socket, SyscallError>
  /** Copies between `host` and the guest connection's far end until both end, in the network's scope. */
  join(host: Net.Socket, endpoint: SocketDescription): void
  /**
   * One of the sandbox's MAX_HOST_SOCKETS host sockets, for a host socket made elsewhere (a
   * --network=host listener): the function gives it back (once); undefined when none is left.
   */
  holdHostSocket(): (() => void) | undefined
  /** Runs `attempt` in the network's scope (a non-blocking connect's). */
  background(attempt: Effect.Effect<void>): void
  /**
   * A name's addresses from the host's DNS servers, only those some rule allows (any port);
   * ENOENT with no rules at all (the query itself would leave the sandbox), or none allowed.
   */
  lookupHost(name: string): Effect.Effect<ReadonlyArray<IpAddress>, SyscallError>
  /**
   * A host UDP socket for a guest's datagram socket (bound to an ephemeral host port when it
   * first sends); `receive` gets what arrives from addresses the policy allows, as the guest
   * addresses them (the host's loopback as 10.0.2.2). NOBUFS past the host socket limit.
   */
  openDatagram(family: "inet4" | "inet6", receive: (data: Uint8Array, from: IpAddress) => void): HostDatagrams | Errno
  /**
   * --network=host: a host UDP socket bound at `local` (the guest socket's own address and
   * port), so that host peers reach the guest's; EADDRINUSE (or EACCES) where the host cannot
   * give it, NOBUFS past the host socket limit.
   */
  bindDatagram(
    local: IpAddress,
    receive: (data: Uint8Array, from: IpAddress) => void,
    flags: { readonly reuseAddress: boolean; readonly onlyV6: boolean }
  ): Effect.Effect<HostDatagrams, SyscallError>
}

/** A guest datagram socket's way out (Egress.openDatagram). */
export interface HostDatagrams {
  /** Sends one datagram to `to` (allowed by the policy: the caller checked); dropped on failure, as UDP's are. */
  send(data: Uint8Array, to: IpAddress): void
  close(): void
}

/** The most DNS queries a sandbox has in flight at once (EAGAIN past it). */
export const MAX_LOOKUPS = 16

const HOST_ERRNO: Readonly<Record<string, Errno>> = {
  ECONNREFUSED: Errno.CONNREFUSED,
  ECONNRESET: Errno.CONNRESET,
  ETIMEDOUT: Errno.TIMEDOUT,
  EHOSTUNREACH: Errno.HOSTUNREACH,
  ENETUNREACH: Errno.NETUNREACH,
  EADDRNOTAVAIL: Errno.ADDRNOTAVAIL,
  EACCES: Errno.ACCES,
  EPERM: Errno.ACCES,
  EMFILE: Errno.NOBUFS,
  ENFILE: Errno.NOBUFS
}

/** Where the host finds what a guest dialled: 10.0.2.2 is the host's 127.0.0.1. */
const hostTarget = (address: IpAddress): string => {
  const text = ipText(address)
  return address.family === "inet4" && text === HOST_LOOPBACK_GATEWAY ? "127.0.0.1" : text
}

/** Whether `rule` covers `address`: its family and CIDR, and its port unless `anyPort`. */
const covers = (rule: EgressRule & { readonly subnet: Net.BlockList }, address: IpAddress, anyPort = false): boolean =>
  (rule.family === "ipv4") === (address.family === "inet4") &&
  (anyPort || (address.port >= rule.ports.low && address.port <= rule.ports.high)) &&
  rule.subnet.check(ipText(address), rule.family)

/** What c-ares answers for a name that has no address (of that family); anything else is "not now" (EAGAIN). */
const NO_SUCH_NAME = new Set(["ENOTFOUND", "ENODATA", "ENONAME", "EBADNAME"])

export interface EgressOptions {
  /** The most host sockets open at once (default MAX_HOST_SOCKETS). */
  readonly maxHostSockets?: number
  /**
   * Whether the host's loopback is the guest's own (--network=host: a datagram from the host's
   * 127.0.0.1 comes from 127.0.0.1); otherwise it is 10.0.2.2 to the guest.
   */
  readonly sharedLoopback?: boolean
  /** The DNS servers names are asked of (default: the host's, from its resolv.conf). */
  readonly dnsServers?: ReadonlyArray<string>
}

/** The egress of a sandbox whose policy is `rules`, its connections' fibers in the enclosing scope. */
export const makeEgress = (rules: ReadonlyArray<EgressRule>, options: EgressOptions = {}): Effect.Effect<Egress, never, Scope.Scope> =>
  Effect.gen(function*() {
    const fibers = yield* FiberSet.make<void, never>()
    const run = yield* FiberSet.runtime(fibers)<never>()
    const policy = rules.map((rule) => {
      const subnet = new Net.BlockList()
      subnet.addSubnet(rule.address, rule.prefix, rule.family)
      return { ...rule, subnet }
    })
    const limit = options.maxHostSockets ?? MAX_HOST_SOCKETS
    let open = 0
    let lookups = 0
    const holdHostSocket = (): (() => void) | undefined => {
      if (open >= limit) return undefined
      open++
      let holding = true
      return () => {
        if (holding) open--
        holding = false
      }
    }
    /** A guest socket's host UDP socket `socket`: what arrives from where the policy reaches is received; `release` gives its slot back at close. */
    const hostDatagrams = (socket: Dgram.Socket, family: "inet4" | "inet6", receive: (data: Uint8Array, from: IpAddress) => void, release: () => void): HostDatagrams => {
      let closed = false
      socket.on("error", () => {})
      socket.on("message", (data, info) => {
        // As the guest addresses the sender: the host's loopback is 10.0.2.2 to it, unless shared.
        const hostLoopback = family === "inet4" && info.address === "127.0.0.1" && options.sharedLoopback !== true
        const from = parseIp(hostLoopback ? HOST_LOOPBACK_GATEWAY : info.address)
        if (from === undefined) return
        const seen = { ...from, port: info.port }
        // Only from where the policy would let the guest send: replies, not strangers.
        if (policy.some((rule) => covers(rule, seen))) receive(data, seen)
      })
      return {
        send: (data, to) => {
          if (!closed) socket.send(data, to.port, hostTarget(to))
        },
        close: () => {
          if (closed) return
          closed = true
          release()
          socket.close()
        }
      }
    }
    return {
      holdHostSocket,
      allows: (address) => policy.some((rule) => covers(rule, address)),
      dial: (address) =>
        Effect.suspend(() => {
          // Its slot comes back when its connect fails, or when it closes.
          const release = holdHostSocket()
          if (release === undefined) return fail(Errno.NOBUFS)
          const target = hostTarget(address)
          return Effect.async<Net.Socket, SyscallError>((resume) => {
            const host = Net.connect({ host: target, port: address.port, allowHalfOpen: true, noDelay: true })
            host.pause()
            host.once("close", release)
            const refused = (e: NodeJS.ErrnoException) => {
              release()
              host.destroy()
              resume(fail(HOST_ERRNO[e.code ?? ""] ?? Errno.CONNREFUSED))
            }
            host.once("error", refused)
            host.once("connect", () => {
              host.off("error", refused)
              // Later errors end the bridge through `close`.
              host.on("error", () => {})
              resume(Effect.succeed(host))
            })
            // A connect interrupted (its task killed, its socket closed) drops the host socket.
            return Effect.sync(() => {
              release()
              host.destroy()
            })
          })
        }),
      openDatagram: (family, receive) => {
        const release = holdHostSocket()
        return release === undefined ? Errno.NOBUFS : hostDatagrams(Dgram.createSocket(family === "inet4" ? "udp4" : "udp6"), family, receive, release)
      },
      bindDatagram: (local, receive, flags) =>
        Effect.suspend(() => {
          const release = holdHostSocket()
          if (release === undefined) return fail(Errno.NOBUFS)
          // The guest's SO_REUSEADDR and IPV6_V6ONLY, as the host socket's own; exclusive: the
          // port is not shared with a cluster's workers.
          const socket = Dgram.createSocket({
            type: local.family === "inet4" ? "udp4" : "udp6",
            reuseAddr: flags.reuseAddress,
            ...(local.family === "inet6" ? { ipv6Only: flags.onlyV6 } : {})
          })
          return Effect.async<HostDatagrams, SyscallError>((resume) => {
            let settled = false
            const refused = (e: NodeJS.ErrnoException) => {
              settled = true
              release()
              socket.close()
              resume(fail(e.code === "EACCES" || e.code === "EPERM" ? Errno.ACCES : e.code === "EADDRNOTAVAIL" ? Errno.ADDRNOTAVAIL : Errno.ADDRINUSE))
            }
            socket.once("error", refused)
            socket.bind({ port: local.port, address: ipText(local), exclusive: true }, () => {
              settled = true
              socket.off("error", refused)
              resume(Effect.succeed(hostDatagrams(socket, local.family, receive, release)))
            })
            // A bind interrupted (its task killed) gives its host socket and slot back.
            return Effect.sync(() => {
              if (settled) return
              release()
              socket.close()
            })
          })
        }),
      join: (host, endpoint) => {
        run(bridge(host, endpoint))
      },
      background: (attempt) => {
        run(attempt)
      },
      lookupHost: (name) =>
        Effect.suspend(() => {
          if (policy.length === 0) return fail(Errno.NOENT)
          if (lookups >= MAX_LOOKUPS) return fail(Errno.AGAIN)
          lookups++
          // c-ares (not getaddrinfo on libuv's thread pool, which the sandbox's file calls
          // need): a guest's slow names never hold the pool. One resolver per lookup, so that
          // cancelling it cancels nobody else's.
          const resolver = new Dns.Resolver({ timeout: 2000, tries: 2 })
          if (options.dnsServers !== undefined) resolver.setServers(options.dnsServers)
          const query = (ask: Promise<Array<string>>) =>
            Effect.tryPromise({ try: () => ask, catch: (e) => (e as NodeJS.ErrnoException).code ?? "" }).pipe(
              Effect.catchAll((code) => (NO_SUCH_NAME.has(code) ? Effect.succeed([]) : Effect.fail(code)))
            )
          return Effect.all([query(resolver.resolve4(name)), query(resolver.resolve6(name))], { concurrency: 2 }).pipe(
            Effect.map(([v4, v6]) => [...v4, ...v6].flatMap((text) => parseIp(text) ?? []).filter((a) => policy.some((rule) => covers(rule, a, true)))),
            Effect.catchAll(() => fail(Errno.AGAIN)),
            Effect.flatMap((found) => (found.length > 0 ? Effect.succeed(found) : fail(Errno.NOENT))),
            Effect.ensuring(Effect.sync(() => lookups--)),
            // A query abandoned (its task killed) is cancelled, as far as c-ares can.
            Effect.onInterrupt(() => Effect.sync(() => resolver.cancel()))
          )
        })
    }
  })
