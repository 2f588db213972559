/**
 * Socket addresses in the guest's ABI (WASIX `addr_port`: a family tag, the port little-endian,
 * then 4 or 16 address bytes in network order) and as people read them (127.0.0.1:80,
 * [::1]:80), for the socket calls and strace.
 */
import { AddressFamily, AddrPort, Errno } from "@runsc/abi"
import * as Net from "node:net"
import type { SocketAddress } from "./socket.js"

/** The address in `bytes` (an addr_port); EAFNOSUPPORT for a Unix one (not built yet), EINVAL for an unknown family. */
export const decodeAddrPort = (bytes: Uint8Array): SocketAddress | Errno => {
  const port = bytes[AddrPort.port]! | (bytes[AddrPort.port + 1]! << 8)
  switch (bytes[AddrPort.tag]) {
    case AddressFamily.INET4:
      return { family: "inet4", address: bytes.slice(AddrPort.address, AddrPort.address + 4), port }
    case AddressFamily.INET6:
      return { family: "inet6", address: bytes.slice(AddrPort.address, AddrPort.address + 16), port }
    case AddressFamily.UNIX:
      return Errno.AFNOSUPPORT
    default:
      return Errno.INVAL
  }
}

/** An address as the guest's `addr_port` (Unix addresses do not occur yet). */
export const encodeAddrPort = (address: SocketAddress): Uint8Array => {
  const out = new Uint8Array(AddrPort.sizeOf)
  if (address.family === "unix") {
    out[AddrPort.tag] = AddressFamily.UNIX
    return out
  }
  out[AddrPort.tag] = address.family === "inet4" ? AddressFamily.INET4 : AddressFamily.INET6
  out[AddrPort.port] = address.port & 0xff
  out[AddrPort.port + 1] = address.port >>> 8
  out.set(address.address, AddrPort.address)
  return out
}

/** An IP address alone, as Node's `net` takes it: 127.0.0.1, fd00:0:0:0:0:0:0:1. */
export const ipText = (a: Extract<SocketAddress, { readonly port: number }>): string => {
  if (a.family === "inet4") return a.address.join(".")
  const groups: Array<string> = []
  for (let i = 0; i < 16; i += 2) groups.push(((a.address[i]! << 8) | a.address[i + 1]!).toString(16))
  return groups.join(":")
}

/** For logs and errors: 127.0.0.1:80, [::1]:80, or a Unix socket's path. */
export const formatAddress = (a: SocketAddress): string =>
  a.family === "unix" ? a.path : a.family === "inet4" ? `${ipText(a)}:${a.port}` : `[${ipText(a)}]:${a.port}`

/** A numeric IPv4 or IPv6 address as bytes in network order; undefined for a name. */
export const parseIp = (text: string): Extract<SocketAddress, { readonly port: number }> | undefined => {
  const kind = Net.isIP(text)
  if (kind === 4) return { family: "inet4", address: Uint8Array.from(text.split(".").map(Number)), port: 0 }
  if (kind !== 6) return undefined
  // Expand "::", and a trailing dotted IPv4 part, into eight groups.
  const [head = "", tail] = text.split("::") as [string, string | undefined]
  const groupsOf = (part: string) =>
    part === "" ? [] : part.split(":").flatMap((g) => {
      if (!g.includes(".")) return [parseInt(g, 16)]
      const [a, b, c, d] = g.split(".").map(Number) as [number, number, number, number]
      return [(a << 8) | b, (c << 8) | d]
    })
  const first = groupsOf(head)
  const last = tail === undefined ? [] : groupsOf(tail)
  const groups = [...first, ...Array<number>(8 - first.length - last.length).fill(0), ...last]
  const address = new Uint8Array(16)
  groups.forEach((g, i) => {
    address[2 * i] = g >> 8
    address[2 * i + 1] = g & 0xff
  })
  return { family: "inet6", address, port: 0 }
}
