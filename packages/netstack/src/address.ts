/**
 * IP addresses as the sandbox's network namespace sees them: it has only a loopback interface,
 * so a socket binds the wildcard (0.0.0.0, ::) or a loopback address (127.0.0.0/8, ::1) and
 * nothing else (EADDRNOTAVAIL), and a connection reaches a listener bound to its address or to
 * the wildcard of its family (an IPv6 wildcard also takes IPv4 connections unless IPV6_V6ONLY,
 * as Linux's dual-stack sockets do).
 */
import type { SocketAddress, SocketFamily } from "@runsc/kernel"

export type IpAddress = Extract<SocketAddress, { readonly port: number }>

export const isWildcard = (a: IpAddress): boolean => a.address.every((b) => b === 0)

/** 127.0.0.0/8, or ::1. */
export const isLoopback = (a: IpAddress): boolean =>
  a.family === "inet4" ? a.address[0] === 127 : a.address.slice(0, 15).every((b) => b === 0) && a.address[15] === 1

export const sameAddress = (a: IpAddress, b: IpAddress): boolean =>
  a.family === b.family && a.address.length === b.address.length && a.address.every((x, i) => x === b.address[i])

/** The address a socket of `family` connects from: the family's loopback. */
export const loopbackOf = (family: "inet4" | "inet6", port: number): IpAddress =>
  family === "inet4"
    ? { family, address: new Uint8Array([127, 0, 0, 1]), port }
    : { family, address: Uint8Array.from({ length: 16 }, (_, i) => (i === 15 ? 1 : 0)), port }

export const wildcardOf = (family: "inet4" | "inet6", port: number): IpAddress =>
  ({ family, address: new Uint8Array(family === "inet4" ? 4 : 16), port })

/** `a` as an address of `family`: an IPv4 address seen by an IPv6 socket is v4-mapped (::ffff:a.b.c.d). */
export const asFamily = (a: IpAddress, family: "inet4" | "inet6"): IpAddress => {
  if (a.family === family) return a
  if (family === "inet6") {
    const mapped = new Uint8Array(16)
    mapped[10] = 0xff
    mapped[11] = 0xff
    mapped.set(a.address, 12)
    return { family, address: mapped, port: a.port }
  }
  return { family, address: a.address.slice(12), port: a.port }
}

export const isIpFamily = (family: SocketFamily): family is "inet4" | "inet6" => family !== "unix"

/** An unbound socket's name: the wildcard with port 0 (IP), or the empty name (Unix). */
export const unnamedOf = (family: SocketFamily): SocketAddress => (family === "unix" ? { family, path: "" } : wildcardOf(family, 0))
