/**
 * Socket addresses in the guest's ABI (WASIX `addr_port`: a family tag, the port little-endian,
 * then 4 or 16 address bytes in network order; or a tag and a Unix path) and as people read them (127.0.0.1:80,
 * [::1]:80), for the socket calls and strace.
 */
import { AddressFamily, AddrPort, Errno } from "@runsc/abi"
import * as Net from "node:net"
import { isAbstract, type SocketAddress } from "./socket.js"

const pathDecoder = new TextDecoder("utf-8", { fatal: true })
const pathEncoder = new TextEncoder()

/**
 * The address in `bytes` (an addr_port: 20 bytes, or 110 for a Unix one); EINVAL for an unknown
 * family or a Unix path that fills all 108 bytes (no room for its NUL).
 */
export const decodeAddrPort = (bytes: Uint8Array): SocketAddress | Errno => {
  const port = bytes[AddrPort.port]! | (bytes[AddrPort.port + 1]! << 8)
  switch (bytes[AddrPort.tag]) {
    case AddressFamily.INET4:
      return { family: "inet4", address: bytes.slice(AddrPort.address, AddrPort.address + 4), port }
    case AddressFamily.INET6:
      return { family: "inet6", address: bytes.slice(AddrPort.address, AddrPort.address + 16), port }
    case AddressFamily.UNIX: {
      const path = bytes.subarray(AddrPort.path, AddrPort.path + AddrPort.pathMax)
      if (path.length < AddrPort.pathMax) return Errno.INVAL
      // An abstract name runs from after its leading NUL to the next NUL.
      const abstract = path[0] === 0 && path[1] !== 0
      const from = abstract ? 1 : 0
      const end = path.indexOf(0, from)
      if (end < 0) return Errno.INVAL
      // Abstract names are bytes (latin1 keeps each one); paths are text, as path arguments are.
      if (abstract) return { family: "unix", path: "\0" + Buffer.from(path.subarray(1, end)).toString("latin1") }
      // A path that is not UTF-8 is refused, as path arguments are: two byte strings never name one file.
      try {
        return { family: "unix", path: pathDecoder.decode(path.subarray(0, end)) }
      } catch {
        return Errno.ILSEQ
      }
    }
    default:
      return Errno.INVAL
  }
}

/** An address as the guest's `addr_port` (110 bytes for a Unix one, 20 otherwise). */
export const encodeAddrPort = (address: SocketAddress): Uint8Array => {
  if (address.family === "unix") {
    const out = new Uint8Array(AddrPort.unixSizeOf)
    out[AddrPort.tag] = AddressFamily.UNIX
    const name = isAbstract(address) ? Buffer.concat([Buffer.of(0), Buffer.from(address.path.slice(1), "latin1")]) : pathEncoder.encode(address.path)
    out.set(name.subarray(0, AddrPort.pathMax - 1), AddrPort.path)
    return out
  }
  const out = new Uint8Array(AddrPort.sizeOf)
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

/** A guest's name with its control characters (and backslashes) escaped: it cannot forge a log line. */
const escaped = (text: string): string => text.replace(/[\x00-\x1f\x7f\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)

/** For logs and errors: 127.0.0.1:80, [::1]:80, a Unix socket's path, @name for an abstract one, or "(unnamed)". */
export const formatAddress = (a: SocketAddress): string =>
  a.family === "unix"
    ? a.path === "" ? "(unnamed)" : isAbstract(a) ? `@${escaped(a.path.slice(1))}` : escaped(a.path)
    : a.family === "inet4" ? `${ipText(a)}:${a.port}` : `[${ipText(a)}]:${a.port}`

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
