/**
 * WASIX `resolve` (what getaddrinfo asks): a host name to IP addresses, as the container sees
 * names. A numeric address is itself; a name is looked up in the container's own /etc/hosts
 * (read beneath its root, at most HOSTS_LIMIT bytes of it: the file is the guest's to make
 * huge), `localhost` is the loopback when that file does not name it; anything else goes to the
 * sandbox's network (Network.lookupHost: the host's resolver where the egress policy allows
 * it, otherwise ENOENT). The port is a hint that changes nothing here.
 */
import { Addr, AddressFamily, Errno } from "@runsc/abi"
import { Effect } from "effect"
import { fail, type SyscallError } from "../errors.js"
import { resolveNow } from "../fs/resolve.js"
import { parseIp } from "../net/addrPort.js"
import type { SocketAddress } from "../net/socket.js"
import { args, results } from "../platform/syscallAbi.js"
import { flatMapNow } from "../settled.js"
import { type Handler, pathArg, setPayload, type SyscallContext } from "./context.js"

const ResolveArgs = args.resolve
const ResolveResults = results.resolve

type IpAddress = Extract<SocketAddress, { readonly port: number }>

/** The most of /etc/hosts read: what a hosts file needs, and no more of a guest's 1 GiB one. */
export const HOSTS_LIMIT = 1 << 20

/** The addresses /etc/hosts gives `name` (case-insensitive), in file order. */
export const hostsLookup = (hosts: string, name: string): Array<IpAddress> => {
  const wanted = name.toLowerCase()
  const found: Array<IpAddress> = []
  for (const line of hosts.split("\n")) {
    const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/)
    if (address === undefined || !names.some((n) => n.toLowerCase() === wanted)) continue
    const ip = parseIp(address)
    if (ip !== undefined) found.push(ip)
  }
  return found
}

const LOOPBACK: ReadonlyArray<IpAddress> = [parseIp("127.0.0.1")!, parseIp("::1")!]

/** The container's /etc/hosts, its first HOSTS_LIMIT bytes; "" when it has none. */
const containerHosts = (c: SyscallContext): Effect.Effect<string> =>
  resolveNow(c.tg.root, c.tg.root, "etc/hosts", { followFinal: true, beneath: c.tg.root }).pipe(
    Effect.flatMap((dentry) =>
      Effect.acquireUseRelease(
        Effect.suspend(() => dentry.inode.open({ read: true, write: false, transient: true })),
        (file) =>
          Effect.gen(function*() {
            const decoder = new TextDecoder()
            let text = ""
            let total = 0
            while (total < HOSTS_LIMIT) {
              const chunk = yield* file.read(Math.min(64 * 1024, HOSTS_LIMIT - total))
              if (chunk.length === 0) break
              total += chunk.length
              text += decoder.decode(chunk, { stream: true })
            }
            return text
          }),
        (file) => file.close
      )
    ),
    Effect.orElseSucceed(() => "")
  )

const encode = (addresses: ReadonlyArray<SocketAddress>, room: number): Uint8Array => {
  const n = Math.min(addresses.length, Math.floor(room / Addr.sizeOf))
  const out = new Uint8Array(n * Addr.sizeOf)
  for (let i = 0; i < n; i++) {
    const a = addresses[i] as IpAddress
    out[i * Addr.sizeOf + Addr.tag] = a.family === "inet4" ? AddressFamily.INET4 : AddressFamily.INET6
    out.set(a.address, i * Addr.sizeOf + Addr.address)
  }
  return out
}

const resolve: Handler = (c) =>
  flatMapNow(pathArg(c, ResolveArgs.host), (name) => {
    // A DNS name is at most 253 characters.
    if (name.length === 0 || name.length > 253 || name.includes("\0")) return fail(Errno.INVAL)
    const room = ResolveArgs.addrs(c)
    const answer = (addresses: ReadonlyArray<SocketAddress>): Effect.Effect<void, SyscallError> => {
      if (addresses.length === 0) return fail(Errno.NOENT)
      const bytes = encode(addresses, room)
      setPayload(c, bytes)
      ResolveResults.naddrs(c, bytes.length / Addr.sizeOf)
      return Effect.void
    }
    const literal = parseIp(name)
    if (literal !== undefined) return answer([literal])
    return Effect.flatMap(containerHosts(c), (hosts) => {
      const listed = hostsLookup(hosts, name)
      if (listed.length > 0) return answer(listed)
      if (name.toLowerCase() === "localhost") return answer(LOOPBACK)
      return Effect.flatMap(c.services.lookupHost(name), answer)
    })
  })

export const resolveHandlers = { resolve } as const satisfies Record<string, Handler>
